"""Headless commands: list, train, sample, bench (see DESIGN.md, "Command line")."""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time

import numpy as np

from . import data as D
from . import families
from .config import ConfigError, RunConfig, TrainConfig, build, describe

PRESET_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "resources", "presets")


def _kv(pairs) -> dict:
    out = {}
    for p in pairs or []:
        if "=" not in p:
            raise ConfigError(f"--set expects key=value, got {p!r}")
        k, v = p.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def cmd_list(args) -> int:
    print("datasets:  " + ", ".join(D.names()) + "  (or the path of a CSV/TSV/NPY/NPZ file)")
    print("families:")
    for name in families.names():
        try:
            cls = families.get(name)
        except (ImportError, AttributeError) as e:
            print(f"  {name:<20} (unavailable: {e})")
            continue
        opts = ", ".join(d["name"] for d in describe(cls.Config))
        print(f"  {name:<20} {cls.title or name}; samplers: {', '.join(cls.samplers) or '-'}; options: {opts or '-'}")
    presets = sorted(os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(PRESET_DIR, "*.toml")))
    print("presets:   " + (", ".join(presets) or "-"))
    print("train options (--set train.NAME=V or flags): " + ", ".join(d["name"] for d in describe(TrainConfig)))
    return 0


def _train_config(args) -> RunConfig:
    sets = _kv(args.set)
    train = {k[6:]: v for k, v in sets.items() if k.startswith("train.")}
    fam = {k: v for k, v in sets.items() if not k.startswith("train.")}
    for flag in ("batch", "lr", "seed", "device"):
        v = getattr(args, flag)
        if v is not None:
            train[flag] = v
    return RunConfig(dataset=args.dataset, family=args.family, train=train, options=fam,
                     sampler=args.sampler or "", sampler_options=_kv(args.sampler_set))


def cmd_train(args) -> int:
    from .run import Run
    if args.steps is None and args.seconds is None:
        args.steps = 2000
    cfg = _train_config(args)
    run = Run(cfg)
    print(f"training {cfg.family} on {cfg.dataset}: {len(run.data)} examples, device {run.device}", flush=True)
    t0, last = time.perf_counter(), 0.0
    for snap in run.iterate(steps_per_snapshot=50, max_steps=args.steps, seconds=args.seconds):
        now = time.perf_counter() - t0
        if now - last >= 2 or snap.diverged:
            last = now
            losses = " ".join(f"{k}={v[-1]:.4g}" for k, v in snap.losses.items() if len(v))
            print(f"step {snap.step:>6}  {snap.steps_per_s:7.0f} steps/s  {losses}", flush=True)
        if snap.diverged:
            print("error: " + snap.message, file=sys.stderr)
    elapsed = time.perf_counter() - t0
    metrics = dict(steps=run.step, seconds=round(elapsed, 2), steps_per_s=round(run.step / max(elapsed, 1e-9), 1))
    if not run.diverged and run.family.samplers:
        try:
            metrics.update(run.evaluate(run.sample(min(2000, args.eval_n))))
        except Exception as e:  # evaluation is a report, never a reason to lose the trained weights
            metrics["evaluation_error"] = str(e)
    run.last_metrics = metrics
    if args.out:
        run.save(args.out)
        print(f"saved {args.out}")
    print(json.dumps(metrics, default=float))
    return 1 if run.diverged else 0


# sampler option that "--steps K" sets, by sampler
STEP_KEYS = ("steps", "n_steps", "steps_per_level")


def cmd_sample(args) -> int:
    from .run import Run
    run = Run.load(args.run)
    fam = run.family
    sampler = args.sampler or run.cfg.sampler or fam.default_sampler
    if sampler not in fam.samplers:
        raise ConfigError(f"{fam.name} has no sampler {sampler!r}; choose one of {', '.join(fam.samplers)}")
    options = dict(run.cfg.sampler_options) if sampler == run.cfg.sampler else {}
    options.update(_kv(args.set))
    if args.steps is not None:
        keys = [d["name"] for d in describe(fam.samplers[sampler]) if d["name"] in STEP_KEYS]
        if not keys:
            raise ConfigError(f"sampler {sampler} has no step count to set with --steps")
        options[keys[0]] = args.steps
    t0 = time.perf_counter()
    x = run.sample(args.n, sampler, options, seed=args.seed)
    dt = time.perf_counter() - t0
    arr = x.numpy()
    out = args.out
    if out.endswith(".csv"):
        if arr.ndim != 2:
            raise ConfigError("CSV output holds points; write images to a .npy file")
        from .data.files import save_points_csv
        save_points_csv(out, arr)
    else:
        np.save(out, arr)
    metrics = dict(n=args.n, sampler=sampler, seconds=round(dt, 3), shape=list(arr.shape))
    metrics.update(run.evaluate(x))
    print(json.dumps(metrics, default=float))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="main.py", description="Generative-model playground, headless commands")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="datasets, families, samplers, presets")
    t = sub.add_parser("train", help="train a family on a dataset and save RUN_DIR")
    t.add_argument("--dataset", default="moons", help="a dataset name or the path of a user file")
    t.add_argument("--family", default="ddpm")
    t.add_argument("--steps", type=int)
    t.add_argument("--seconds", type=float)
    t.add_argument("--batch", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--seed", type=int)
    t.add_argument("--device")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="a family option, or train.NAME=V")
    t.add_argument("--sampler", help="the sampler saved with the run")
    t.add_argument("--sampler-set", action="append", metavar="KEY=VALUE")
    t.add_argument("--eval-n", type=int, default=2000)
    t.add_argument("--out", help="RUN_DIR to write")
    s = sub.add_parser("sample", help="draw samples from a trained RUN_DIR")
    s.add_argument("--run", required=True)
    s.add_argument("--n", type=int, default=2000)
    s.add_argument("--sampler")
    s.add_argument("--steps", type=int)
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="a sampler option")
    s.add_argument("--seed", type=int)
    s.add_argument("--out", required=True, help=".npy or .csv")
    b = sub.add_parser("bench", help="the benchmark table")
    b.add_argument("--json", default="bench.json")
    b.add_argument("--quick", action="store_true", help="a short run (for tests)")
    b.add_argument("--families", help="comma-separated subset")
    args = p.parse_args(argv)
    try:
        if args.cmd == "list":
            return cmd_list(args)
        if args.cmd == "train":
            return cmd_train(args)
        if args.cmd == "sample":
            return cmd_sample(args)
        from .bench import main as bench_main
        return bench_main(args)
    except (ConfigError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
