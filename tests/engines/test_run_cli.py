"""Run, RUN_DIR persistence and the headless CLI."""
import json
import os

import numpy as np
import pytest
import torch

from engines.cli import main as cli
from engines.config import ConfigError, RunConfig, TrainConfig, build
from engines.persist import RunDirError
from engines.run import Run


def small_cfg(**train):
    t = dict(batch=64, n_data=2000, warmup=10)
    t.update(train)
    return RunConfig(dataset="moons", family="ddpm", options=dict(hidden=32, depth=2, T=50),
                     train=build(TrainConfig, t))


def test_cli_round_trip_writes_samples_in_data_coordinates(tmp_path, capsys):
    run_dir, out = str(tmp_path / "run"), str(tmp_path / "s.npy")
    assert cli(["train", "--dataset", "moons", "--family", "ddpm", "--steps", "150", "--seed", "0",
                "--set", "hidden=32", "--out", run_dir]) == 0
    for f in ("config.toml", "weights.safetensors", "losses.csv", "metrics.json", "data.safetensors"):
        assert os.path.exists(os.path.join(run_dir, f))
    assert cli(["sample", "--run", run_dir, "--n", "300", "--sampler", "ddim", "--steps", "10", "--out", out]) == 0
    x = np.load(out)
    assert x.shape == (300, 2)
    # moons live in [-1, 2] x [-0.5, 1]: samples must be in data units, not standardized ones
    assert -1.5 < x[:, 0].mean() < 2.0 and x[:, 0].max() - x[:, 0].min() > 1.5
    lines = open(os.path.join(run_dir, "losses.csv")).read().splitlines()
    assert lines[0].startswith("step,loss") and len(lines) == 151
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["shape"] == [300, 2] and report["energy_distance"] > 0


def test_loaded_run_samples_like_the_original(tmp_path):
    run = Run(small_cfg())
    run.train(100)
    run.save(str(tmp_path))
    again = Run.load(str(tmp_path))
    a = run.sample(200, "ddim", dict(steps=5), seed=3)
    b = again.sample(200, "ddim", dict(steps=5), seed=3)
    assert torch.allclose(a, b, atol=1e-5)
    assert again.step == 100


def test_tampered_and_truncated_weights_are_refused(tmp_path):
    run = Run(small_cfg())
    run.train(5)
    run.save(str(tmp_path))
    w = tmp_path / "weights.safetensors"
    raw = bytearray(w.read_bytes())
    raw[-10] ^= 0xFF  # flip bits inside the tensor data: still parses, checksum catches it
    w.write_bytes(bytes(raw))
    with pytest.raises(RunDirError, match="checksum"):
        Run.load(str(tmp_path))
    w.write_bytes(bytes(raw[: len(raw) // 2]))
    with pytest.raises(RunDirError, match="truncated or corrupted"):
        Run.load(str(tmp_path))
    import pickle
    w.write_bytes(pickle.dumps({"net.x": 1}))  # a pickle is never unpickled
    with pytest.raises(RunDirError):
        Run.load(str(tmp_path))


def test_same_seed_same_run_bit_for_bit():
    a, b = Run(small_cfg(seed=5)), Run(small_cfg(seed=5))
    a.train(30)
    b.train(30)
    for p, q in zip(a.family.net.parameters(), b.family.net.parameters()):
        assert torch.equal(p, q)
    assert a.history["loss"] == b.history["loss"]
    c = Run(small_cfg(seed=6))
    c.train(30)
    assert c.history["loss"] != a.history["loss"]


def test_nan_loss_pauses_the_run_with_a_message():
    run = Run(small_cfg())
    run.train(3)
    run.family.loss = lambda batch, generator=None: (torch.tensor(float("nan"), requires_grad=True), {})
    before = [p.clone() for p in run.family.net.parameters()]
    assert run.train(10) == 0
    assert "nan" in run.diverged.lower() and "learning rate" in run.diverged
    assert run.step == 3
    for p, q in zip(before, run.family.net.parameters()):
        assert torch.equal(p, q)  # the bad step changed nothing
    snap = run.snapshot()
    assert snap.diverged and snap.message


def test_bad_options_give_clear_errors(capsys):
    with pytest.raises(ConfigError, match="lr"):
        build(TrainConfig, dict(lr=1e3))
    with pytest.raises(ConfigError, match="unknown option 'nope'"):
        Run(RunConfig(family="ddpm", options=dict(nope=1)))
    with pytest.raises(ConfigError, match="schedule"):
        Run(RunConfig(family="ddpm", options=dict(schedule="wiggly")))
    assert cli(["train", "--set", "T=abc", "--steps", "1"]) == 2
    assert "T: expected an integer" in capsys.readouterr().err


def test_run_trains_on_a_user_file_and_snapshot_views(tmp_path):
    from engines.data.files import save_points_csv
    pts = np.random.default_rng(0).normal(size=(500, 2)) * [3.0, 0.5] + [10.0, -4.0]
    path = str(tmp_path / "mine.csv")
    save_points_csv(path, pts)
    cfg = small_cfg()
    cfg.dataset = path
    run = Run(cfg)
    assert run.data.shape == (500, 2)
    run.train(20)
    snap = run.snapshot(dict(field=dict(resolution=8, level=10), samples=dict(n=200)))
    assert snap.field["score"].shape == (8, 8, 2) and snap.samples.shape == (200, 2)
    assert snap.loss_steps.tolist() == list(range(1, 21))
    assert abs(snap.samples[:, 0].mean() - 10.0) < 3.0  # back in the file's own coordinates
    assert run.snapshot().loss_steps.size == 0           # losses are sent once


def test_true_score_overlay_on_a_mixture_matches_the_analytic_score():
    cfg = small_cfg()
    cfg.dataset = "gmm"
    run = Run(cfg)
    f = run.field(resolution=6, level=5)
    assert f["true_score"].shape == (6, 6, 2) and np.isfinite(f["true_score"]).all()


def test_list_names_every_family(capsys):
    from engines import families
    assert cli(["list"]) == 0
    out = capsys.readouterr().out
    for name in families.names():
        assert name in out
