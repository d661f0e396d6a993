"""Run bundles: a save/open round trip is bit for bit, and crafted or damaged bundles are refused."""
import json
import os
import stat
import zipfile

import numpy as np
import pytest
import torch

from engines.bundle import BundleError, BundleLimits, open_bundle, save_bundle
from engines.config import RunConfig, TrainConfig, build
from engines.persist import MANIFEST, RunDirError
from engines.run import Run


@pytest.fixture(scope="module")
def run():
    torch.set_num_threads(1)
    cfg = RunConfig(dataset="moons", family="ddpm", options=dict(hidden=32, depth=2, T=20),
                    train=build(TrainConfig, dict(batch=64, n_data=500, warmup=5, seed=3)))
    r = Run(cfg)
    r.train(30)
    return r


@pytest.fixture(scope="module")
def bundle(run, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("b") / "run.zip")
    save_bundle(run, path, view_state=dict(field_level=0.25, panels=["field", "particles"]))
    return path


@pytest.mark.parametrize("kind", ["zip", "dir"])
def test_round_trip_gives_the_same_field_and_samples_bit_for_bit(run, bundle, tmp_path, kind):
    path = bundle if kind == "zip" else save_bundle(run, str(tmp_path / "RUN"), dict(field_level=0.25))
    opened = open_bundle(path)
    again = opened.run
    assert opened.view_state["field_level"] == 0.25 and again.step == run.step == 30
    a, b = run.field(12, level=0.25), again.field(12, level=0.25)
    assert np.array_equal(a["score"], b["score"])
    x, y = run.sample(100, "ddim", dict(steps=5), seed=11), again.sample(100, "ddim", dict(steps=5), seed=11)
    assert torch.equal(x, y)
    assert again.history_steps == run.history_steps
    assert again.history["loss"] == pytest.approx(run.history["loss"], rel=1e-12)


def _zip(path, entries, **kw):
    with zipfile.ZipFile(path, "w", compression=kw.get("compression", zipfile.ZIP_STORED)) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return str(path)


def _members(bundle):
    with zipfile.ZipFile(bundle) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


@pytest.mark.parametrize("name, message", [
    ("../evil.txt", r"climbs out"),
    ("/etc/passwd", "absolute"),
    ("C:/windows/x", "absolute"),
    ("run\\..\\config.toml", "backslash"),
    ("notes.txt", "not a file of a run"),
])
def test_a_bundle_with_a_bad_name_is_refused_before_anything_is_written(bundle, tmp_path, name, message):
    files = _members(bundle)
    files[name] = b"x"
    path = _zip(tmp_path / "evil.zip", files)
    with pytest.raises(BundleError, match=message):
        open_bundle(path)
    assert not (tmp_path / "evil.txt").exists()


def test_a_symlink_entry_is_refused(bundle, tmp_path):
    files = _members(bundle)
    link = zipfile.ZipInfo("view_state.json")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    files.pop("view_state.json")
    files[link] = "/etc/passwd"
    with pytest.raises(BundleError, match="symbolic link"):
        open_bundle(_zip(tmp_path / "link.zip", files))


def test_a_symlink_in_a_run_folder_is_refused(run, tmp_path):
    d = tmp_path / "RUN"
    save_bundle(run, str(d))
    (tmp_path / "elsewhere.csv").write_bytes((d / "losses.csv").read_bytes())
    os.remove(d / "losses.csv")
    os.symlink(tmp_path / "elsewhere.csv", d / "losses.csv")
    with pytest.raises(BundleError, match="symbolic link"):
        open_bundle(str(d))


def test_a_zip_bomb_is_refused_from_the_directory_before_inflating(bundle, tmp_path):
    files = _members(bundle)
    files["losses.csv"] = b"0" * (8 << 20)               # 8 MiB of one byte: ~1000:1
    path = _zip(tmp_path / "bomb.zip", files, compression=zipfile.ZIP_DEFLATED)
    with pytest.raises(BundleError, match="zip bomb"):
        open_bundle(path)
    with pytest.raises(BundleError, match="limit per file"):
        open_bundle(bundle, BundleLimits(max_file_bytes=1000))
    with pytest.raises(BundleError, match="limit"):
        open_bundle(bundle, BundleLimits(max_total_bytes=10_000))


def test_an_entry_that_lies_about_its_size_is_refused(bundle, tmp_path):
    path = tmp_path / "liar.zip"
    path.write_bytes(open(bundle, "rb").read())
    # shrink the declared size of losses.csv in the central directory only
    with zipfile.ZipFile(bundle) as zf:
        info = zf.getinfo("losses.csv")
    raw = bytearray(path.read_bytes())
    # find the central directory header naming losses.csv and patch its uncompressed size field
    i = raw.find(b"PK\x01\x02")
    while i >= 0:
        n = int.from_bytes(raw[i + 28:i + 30], "little")
        if raw[i + 46:i + 46 + n] == b"losses.csv":
            raw[i + 24:i + 28] = (info.file_size // 2).to_bytes(4, "little")
            break
        i = raw.find(b"PK\x01\x02", i + 4)
    assert i >= 0
    path.write_bytes(bytes(raw))
    with pytest.raises(BundleError, match="inflates past|damaged"):
        open_bundle(str(path))


@pytest.mark.parametrize("victim", ["config.toml", "losses.csv", "data.safetensors", "metrics.json",
                                    "view_state.json"])
def test_a_changed_byte_in_any_file_is_caught_by_the_manifest(bundle, tmp_path, victim):
    d = tmp_path / "RUN"
    d.mkdir()
    with zipfile.ZipFile(bundle) as zf:
        zf.extractall(d)
    raw = bytearray((d / victim).read_bytes())
    raw[len(raw) // 2] ^= 0x01                           # one bit, still parses as text/tensors
    (d / victim).write_bytes(bytes(raw))
    with pytest.raises(RunDirError, match="checksum"):
        open_bundle(str(d))


def test_a_pickle_or_a_missing_manifest_is_refused(bundle, tmp_path):
    import pickle
    files = _members(bundle)
    files["weights.safetensors"] = pickle.dumps({"net.x": 1})
    with pytest.raises(RunDirError):
        open_bundle(_zip(tmp_path / "p.zip", files))
    files = _members(bundle)
    files.pop(MANIFEST)
    with pytest.raises(BundleError, match="no manifest"):
        open_bundle(_zip(tmp_path / "m.zip", files))
    files = _members(bundle)
    m = json.loads(files[MANIFEST])
    m["files"].pop("weights.safetensors")
    files[MANIFEST] = json.dumps(m).encode()
    with pytest.raises(RunDirError, match="does not cover"):
        open_bundle(_zip(tmp_path / "u.zip", files))


def test_not_a_bundle_gives_a_clear_message(tmp_path):
    (tmp_path / "x.zip").write_bytes(b"not a zip at all")
    with pytest.raises(BundleError, match="neither a RUN_DIR"):
        open_bundle(str(tmp_path / "x.zip"))
    with pytest.raises(BundleError, match="no such file"):
        open_bundle(str(tmp_path / "nothing"))


def test_the_session_saves_its_run_and_losses_on_command(run, tmp_path):
    from engines import messages as M
    from engines.config import ConfigError
    from engines.session import Session
    s = Session(run.cfg, run=run)
    assert s.build()
    s.drain()
    s.handle(M.SaveRun(str(tmp_path / "r.zip"), dict(theme="light")))
    s.handle(M.ExportLosses(str(tmp_path / "l.csv")))
    s.handle(M.SaveRun(str(tmp_path / "nowhere" / "deeper" / "r.zip")))  # parent folders are made
    out = s.drain()
    assert [type(m) for m in out] == [M.Notice, M.Notice, M.Notice], out
    assert open_bundle(str(tmp_path / "r.zip")).view_state == dict(theme="light")
    assert (tmp_path / "l.csv").read_text().startswith("step,loss")
    with pytest.raises(ConfigError, match="should end in"):
        M.ExportLosses(str(tmp_path / "l.txt"))
