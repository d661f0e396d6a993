"""The CLI behaves like a Unix tool (issue 8, item 8) with a bounded evaluation and batched sampling
(item 7): progress on stderr, one JSON object on stdout, one-line errors with a non-zero status,
help/default/choices for every option, --version, a fresh runs/ folder, and the command registry."""
import argparse
import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest
import torch

from engines import cli
from engines.cli_sample import sample_batches
from engines.cli_train import EVAL_IMAGES, EVAL_POINTS, evaluate_bounded
from engines.config import RunConfig, TrainConfig, build
from engines.resources import version
from engines.run import Run

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = ["--set", "hidden=16", "--set", "depth=1", "--set", "T=20", "--set", "train.n_data=500"]


def subparsers(parser):
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def test_help_lists_every_command_and_the_window_options(capsys):
    from app.main import add_arguments
    assert cli.main(["--help"], window_options=add_arguments) == 0
    out = capsys.readouterr().out
    for c in cli.COMMANDS:
        assert c.name in out and c.help.split()[0] in out
    assert "--preset" in out and "--quit-after" in out and "--version" in out


def test_version_comes_from_pyproject_and_main_py_dispatches_it():
    import tomllib
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        expected = tomllib.load(f)["project"]["version"]
    assert version() == expected
    p = subprocess.run([sys.executable, "main.py", "--version"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.strip().endswith(expected) and p.stderr == ""
    p = subprocess.run([sys.executable, "main.py", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and all(name in p.stdout for name in cli.names())


CORE = ("list", "train", "sample", "bench")   # the other rows' authors word their own defaults


@pytest.mark.parametrize("command", cli.names())
def test_every_option_has_help_and_a_stated_default(command):
    parser = subparsers(cli.build_parser(load=command))[command]
    text = parser.format_help()
    for a in parser._actions:
        if isinstance(a, argparse._HelpAction):
            continue
        name = a.option_strings[0] if a.option_strings else a.dest
        assert a.help and len(a.help) > 8, f"{command} {name}: no help text"
        if a.default not in (None, False, []) and a.option_strings:
            assert "(default:" in parser._get_formatter()._expand_help(a) or "default" in a.help, name
        elif (command in CORE and a.option_strings
              and not isinstance(a, (argparse._StoreTrueAction, argparse._AppendAction))):
            # None: the help says in words what leaving it out means, or the option is required
            # ("also write ... FILE" is an extra output, off unless given)
            assert a.required or "default" in a.help or "required" in a.help or a.help.startswith("also"), \
                f"{command} {name}: default None, unexplained"
    assert text.startswith("usage:")


def test_finite_options_have_choices():
    train = subparsers(cli.build_parser(load="train"))["train"]
    sample = subparsers(cli.build_parser(load="sample"))["sample"]
    by = lambda p: {a.dest: a for a in p._actions}
    from engines import families
    assert set(by(train)["family"].choices) == set(families.names())
    assert set(by(train)["device"].choices) == {"auto", "cpu", "cuda", "mps"}
    assert "ddim" in by(train)["sampler"].choices and "ddim" in by(sample)["sampler"].choices


def test_train_writes_a_fresh_run_dir_progress_on_stderr_one_json_on_stdout(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "--steps", "30", "--no-eval"] + TINY) == 0
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert len(lines) == 1
    report = json.loads(lines[0])
    run_dir = report["run_dir"]
    assert run_dir.startswith(os.path.join("runs", "ddpm-moons-")) and os.path.isfile(os.path.join(run_dir, "config.toml"))
    assert f"saved the run to {run_dir}" in err and "training ddpm on moons" in err
    assert "energy_distance" not in report and report["steps"] == 30     # --no-eval
    # a second run in the same second gets its own folder
    assert cli.main(["train", "--steps", "5", "--no-eval"] + TINY) == 0
    second = json.loads(capsys.readouterr().out)["run_dir"]
    assert second != run_dir and os.path.isdir(second)


def test_fresh_run_dir_names():
    assert cli.fresh_run_dir("vae", "/data/my points.csv", root="r", now=0).startswith(os.path.join("r", "vae-my_points-"))


def test_train_evaluation_is_reported_and_capped(tmp_path, capsys):
    out_dir = str(tmp_path / "run")
    assert cli.main(["train", "--steps", "20", "--eval-n", "300", "--eval-fraction", "100", "--out", out_dir] + TINY) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["run_dir"] == out_dir and 0 < report["eval_n"] <= 300
    assert report["energy_distance"] > 0 and report["eval_seconds"] >= 0


class FakeRun:
    """A run whose sampler costs `cost` seconds per sample on a fake clock."""

    def __init__(self, cost, image=False):
        self.now, self.cost, self.is_image, self.calls = 0.0, cost, image, []
        self.cfg = types.SimpleNamespace(train=types.SimpleNamespace(seed=0))

    def clock(self):
        return self.now

    def sample(self, k, sampler=None, options=None, seed=None):
        self.calls.append((k, seed))
        self.now += k * self.cost
        return torch.zeros(k, 1, 8, 8) if self.is_image else torch.full((k, 2), float(seed))

    def evaluate(self, x):
        return dict(scored=len(x))


def test_bounded_sampling_stays_within_its_time_budget():
    fast = FakeRun(cost=1e-4)   # 10 000 samples/s
    got = sum(len(x) for x in sample_batches(fast, 100_000, 4096, first=256, seconds=1.0, min_batch=256,
                                             clock=fast.clock))
    assert fast.now <= 1.0 + 1e-9 and got >= 9000          # uses the budget, never exceeds it
    assert [k for k, _ in fast.calls[:4]] == [256, 512, 1024, 2048]   # a pilot, then doubling batches
    assert [s for _, s in fast.calls] == list(range(1, len(fast.calls) + 1))  # seed + i per batch
    slow = FakeRun(cost=0.01)   # the pilot alone overruns: nothing more is drawn
    assert sum(len(x) for x in sample_batches(slow, 2000, 4096, first=256, seconds=1.0, min_batch=256,
                                              clock=slow.clock)) == 256


def test_evaluation_count_suits_the_family():
    points, images = FakeRun(cost=0.0), FakeRun(cost=0.0, image=True)
    assert evaluate_bounded(points, 10.0, clock=points.clock)["eval_n"] == EVAL_POINTS[0]
    assert evaluate_bounded(images, 10.0, clock=images.clock)["eval_n"] == EVAL_IMAGES[0] < EVAL_POINTS[0]
    assert images.calls[0][0] == EVAL_IMAGES[1] and max(k for k, _ in images.calls) <= EVAL_IMAGES[2]
    slow = FakeRun(cost=0.5, image=True)  # 2 images/s, 12 s of training: 1.2 s of evaluation
    r = evaluate_bounded(slow, 0.1 * 12.0, clock=slow.clock)
    assert r["eval_n"] == EVAL_IMAGES[1] and r["scored"] == EVAL_IMAGES[1]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    cfg = RunConfig(dataset="moons", family="ddpm", options=dict(hidden=16, depth=1, T=20),
                    train=build(TrainConfig, dict(batch=64, n_data=500, warmup=0)))
    run = Run(cfg)
    run.train(20)
    path = str(tmp_path_factory.mktemp("run"))
    run.save(path)
    return path


def test_sample_is_batched_and_the_file_is_whole(run_dir, tmp_path, monkeypatch, capsys):
    sizes = []
    real = Run.sample

    def spy(self, n, *a, **k):
        sizes.append(n)
        return real(self, n, *a, **k)
    monkeypatch.setattr(Run, "sample", spy)
    out = str(tmp_path / "s.npy")
    assert cli.main(["sample", "--run", run_dir, "--n", "1000", "--batch", "300", "--eval-n", "200",
                     "--sampler", "ddim", "--steps", "5", "--out", out]) == 0
    assert sizes == [300, 300, 300, 100]
    x = np.load(out)
    assert x.shape == (1000, 2) and np.isfinite(x).all() and not os.path.exists(out + ".partial")
    stdout, err = capsys.readouterr()
    report = json.loads(stdout)
    assert report["shape"] == [1000, 2] and report["eval_n"] == 200 and "sampled 1000/1000" in err
    # one batch of n is exactly run.sample(n, seed) (batch i uses seed + i)
    csv = str(tmp_path / "s.csv")
    assert cli.main(["sample", "--run", run_dir, "--n", "300", "--seed", "4", "--sampler", "ddim", "--steps", "5",
                     "--no-eval", "--out", csv]) == 0
    assert "energy_distance" not in json.loads(capsys.readouterr().out)
    again = Run.load(run_dir).sample(300, "ddim", dict(steps=5), seed=4).numpy()
    assert np.allclose(np.loadtxt(csv, delimiter=",", skiprows=1), again, atol=1e-6)


def test_a_failed_sample_leaves_no_file(run_dir, tmp_path, monkeypatch, capsys):
    calls = []
    real = Run.sample

    def failing(self, n, *a, **k):
        calls.append(n)
        if len(calls) == 2:
            raise RuntimeError("boom")
        return real(self, n, *a, **k)
    monkeypatch.setattr(Run, "sample", failing)
    out = tmp_path / "s.npy"
    assert cli.main(["sample", "--run", run_dir, "--n", "100", "--batch", "50", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) >= 1 and err[-1].startswith("error: RuntimeError: boom")
    assert not out.exists() and not (tmp_path / "s.npy.partial").exists()


@pytest.mark.parametrize("argv, status, words", [
    (["sample", "--run", "/no/such/run", "--out", "x.npy"], 2, "/no/such/run"),
    (["train", "--set", "T=abc", "--steps", "1"], 2, "T: expected an integer"),
    (["train", "--set", "oops"], 2, "KEY=VALUE"),
    (["train", "--family", "nope"], 2, "invalid choice"),
    (["train", "--bogus"], 2, "--bogus"),
])
def test_errors_are_one_line_and_non_zero(argv, status, words, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == status
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert out == "" and len(lines) == 1 and words in lines[0] and "Traceback" not in err


def test_error_through_main_py_is_one_line_without_traceback(tmp_path):
    p = subprocess.run([sys.executable, os.path.join(ROOT, "main.py"), "sample", "--run", str(tmp_path / "none"),
                        "--out", str(tmp_path / "x.npy")], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stdout == "" and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_a_new_command_is_one_registry_row(monkeypatch, capsys):
    mod = types.ModuleType("fake_cmd")
    mod.add_arguments = lambda p: p.add_argument("--times", type=int, default=2, help="how many times to greet")
    mod.run = lambda args: cli.emit_json(dict(hello=args.times)) or 0
    monkeypatch.setitem(sys.modules, "fake_cmd", mod)
    monkeypatch.setattr(cli, "COMMANDS", cli.COMMANDS + (cli.Command("greet", "fake_cmd", "say hello"),))
    import main as entry
    assert entry.main(["greet", "--times", "3"]) == 0
    assert json.loads(capsys.readouterr().out) == {"hello": 3}
    mod.run = lambda args: 1 / 0
    assert entry.main(["greet"]) == 1
    assert capsys.readouterr().err.startswith("error: ZeroDivisionError")


class FakeTrainer:
    """Run.iterate's contract on a fake clock: chunks of steps, each costing `cost` seconds."""

    def __init__(self, cost):
        self.now, self.cost, self.step = 0.0, cost, 0

    def clock(self):
        return self.now

    def iterate(self, steps_per_snapshot, max_steps=None, seconds=None):
        start = self.now
        while True:
            k = steps_per_snapshot if max_steps is None else min(steps_per_snapshot, max_steps - self.step)
            if k <= 0:
                return
            self.step += k
            self.now += k * self.cost
            yield types.SimpleNamespace(step=self.step, steps_per_s=1 / self.cost, losses={}, diverged=False)
            if seconds is not None and self.now - start >= seconds:
                return


@pytest.mark.parametrize("cost", [1.0, 0.2, 1e-3, 1e-5])
def test_train_seconds_hold_for_slow_and_fast_steps(cost):
    """`train --seconds 5` ends within about half a second of 5 s, whether a step takes 1 s (a
    U-Net on a slow CPU) or 10 us: the chunk between time checks is sized from one timed step."""
    from engines.cli_train import train_for
    t = FakeTrainer(cost)
    train_for(t, None, 5.0, clock=t.clock)
    assert 5.0 <= t.now <= 5.0 + max(0.5, cost) + 1e-9 and t.step >= int(4.5 / cost)
    t = FakeTrainer(cost)
    train_for(t, 7, None, clock=t.clock)
    assert t.step == 7
