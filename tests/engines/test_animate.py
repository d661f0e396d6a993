"""Sampler animations (GIF, MP4 through a pipe) and loss/sample exports."""
import os
import stat
import sys

import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence

from engines import animate
from engines.config import RunConfig, TrainConfig, build
from engines.export import ExportError, write_losses, write_samples
from engines.run import Run

T = 12


@pytest.fixture(scope="module")
def run():
    torch.set_num_threads(1)
    cfg = RunConfig(dataset="moons", family="ddpm", sampler="ddpm", options=dict(hidden=32, depth=2, T=T),
                    train=build(TrainConfig, dict(batch=64, n_data=500, warmup=5, seed=0)))
    r = Run(cfg)
    r.train(20)
    return r


def test_gif_has_one_frame_per_recorded_step_with_the_data_behind(run, tmp_path):
    traj, final = animate.record(run, 60, "ddpm", seed=4)
    assert traj.frames.shape == (T + 1, 60, 2)                 # T steps of x, then the result
    assert np.array_equal(traj.frames[-1], final)
    assert np.array_equal(final, run.sample(60, "ddpm", seed=4).numpy())   # recording changes nothing
    path = str(tmp_path / "p.gif")
    assert animate.write_gif(traj, path, size=200) == T + 1
    with Image.open(path) as im:
        frames = [f.convert("RGB") for f in ImageSequence.Iterator(im)]
    assert len(frames) == T + 1 and frames[0].size == (200, 200)
    first, last = np.asarray(frames[0]).astype(int), np.asarray(frames[-1]).astype(int)
    assert not np.array_equal(first, last)                     # the particles moved

    def near(img, rgb, tol=40):
        return int((np.abs(img - np.array(rgb)).sum(-1) < tol).sum())
    assert near(last, animate.PARTICLES) > 50
    # the faint data (DATA blended over white at DATA_ALPHA) is drawn in every frame
    faint = np.array(animate.BACKGROUND) + (np.array(animate.DATA) - animate.BACKGROUND) * animate.DATA_ALPHA / 255
    assert near(first, faint) > 50 and near(last, faint) > 20


def test_a_long_trajectory_is_thinned_to_its_byte_budget(run):
    frame_bytes = 60 * 2 * 4
    traj, _ = animate.record(run, 60, "ddpm", seed=4, max_bytes=5 * frame_bytes)
    assert len(traj.frames) <= 6 and traj.steps[-1] == T       # the result is always the last frame
    assert np.all(np.diff(traj.steps) > 0)


def test_mp4_pipes_every_frame_to_ffmpeg_or_says_it_is_missing(run, tmp_path, monkeypatch):
    traj, _ = animate.record(run, 30, "ddpm", seed=1)
    monkeypatch.setattr(animate.shutil, "which", lambda name: None)
    with pytest.raises(animate.AnimationError, match="ffmpeg on PATH"):
        animate.write_mp4(traj, str(tmp_path / "a.mp4"))
    # a stand-in ffmpeg that stores what arrives on stdin: the pipe carries every frame
    fake = tmp_path / "ffmpeg"
    fake.write_text(f"#!{sys.executable}\nimport sys\nopen(sys.argv[-1], 'wb').write(sys.stdin.buffer.read())\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    out = str(tmp_path / "a.mp4")
    assert animate.write_mp4(traj, out, size=100, ffmpeg=str(fake)) == T + 1
    assert os.path.getsize(out) == (T + 1) * 100 * 100 * 3
    with pytest.raises(animate.AnimationError, match=r"\.gif or \.mp4"):
        animate.write_animation(traj, str(tmp_path / "a.avi"))


def test_losses_and_samples_export_to_csv_and_npy(run, tmp_path):
    assert write_losses(str(tmp_path / "l.npy"), run.history_steps, run.history) == 20
    table = np.load(tmp_path / "l.npy")                        # no allow_pickle needed
    assert list(table["step"]) == run.history_steps and np.allclose(table["loss"], run.history["loss"])
    write_losses(str(tmp_path / "l.csv"), run.history_steps, run.history)
    csv = np.genfromtxt(tmp_path / "l.csv", delimiter=",", names=True)
    assert np.allclose(csv["loss"], run.history["loss"], rtol=1e-8)
    x = run.sample(40, "ddpm", seed=0).numpy()
    assert write_samples(str(tmp_path / "s.csv"), x) == (40, 2)
    assert np.allclose(np.loadtxt(tmp_path / "s.csv", delimiter=",", skiprows=1), x, rtol=1e-7)
    with pytest.raises(ExportError, match="npy"):
        write_samples(str(tmp_path / "i.csv"), np.zeros((2, 1, 8, 8)))


def test_cli_sample_animate_writes_a_gif_from_a_run_dir_or_a_zip(run, tmp_path, capsys):
    import json

    from engines.bundle import save_bundle
    from engines.cli import main as cli
    for path in (str(tmp_path / "RUN"), str(tmp_path / "run.zip")):
        save_bundle(run, path)
        gif = str(tmp_path / "p.gif")
        assert cli(["sample", "--run", path, "--n", "40", "--animate", gif]) == 0
        report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        with Image.open(gif) as im:
            assert report["frames"] == im.n_frames == T + 1
    assert cli(["sample", "--run", path, "--n", "40", "--animate", str(tmp_path / "p.avi")]) == 2
    assert "--animate" in capsys.readouterr().err
