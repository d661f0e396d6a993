"""`train`: train a family on a dataset, save the RUN_DIR (a fresh runs/<family>-<dataset>-<time>
unless --out names one), score a bounded number of samples, print the metrics as one JSON object.

Evaluation after training is bounded: samples are drawn in doubling batches (a pilot first) until
--eval-n are drawn or --eval-fraction of the training time is spent, whichever comes first, so a
slow image sampler never turns a two-minute run into ten (issue 8, item 7)."""
from __future__ import annotations

import argparse
import time

import torch

from . import data as D
from . import families, likelihood, quality
from .cli import CLIError, emit_json, fresh_run_dir, parse_key_values, progress
from .cli_sample import sample_batches, sampler_names
from .config import RunConfig, TrainConfig, build, describe

# evaluation sizes suited to the family's data: (target count, pilot batch, largest batch)
EVAL_POINTS = (2000, 256, 4096)
EVAL_IMAGES = (500, 16, 128)
EVAL_FRACTION = 0.1
DEFAULT_STEPS = 2000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    devices = [d["choices"] for d in describe(TrainConfig) if d["name"] == "device"][0]
    parser.add_argument("--dataset", default="moons", metavar="NAME|PATH",
                        help="a dataset (" + ", ".join(D.names()) + ") or the path of a CSV/TSV/NPY/NPZ "
                             "file or image folder")
    parser.add_argument("--family", default="ddpm", choices=families.names(), metavar="NAME",
                        help="model family: " + ", ".join(families.names()))
    parser.add_argument("--steps", type=int, default=None,
                        help=f"training steps (default: {DEFAULT_STEPS}, or unlimited with --seconds)")
    parser.add_argument("--seconds", type=float, default=None, help="stop after this much training time (default: no limit)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: the family's)")
    parser.add_argument("--lr", type=float, default=None, help="learning rate (default: the family's)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: the family's, 0)")
    parser.add_argument("--device", default=None, choices=devices, help="where to train (default: auto)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads for this process (default: train.threads if set, else all cores but one)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a family option, or train.NAME=VALUE (repeatable; `python main.py list` names them)")
    parser.add_argument("--sampler", default=None, choices=sampler_names(), metavar="NAME",
                        help="the sampler saved with the run (default: the family's): " + ", ".join(sampler_names()))
    parser.add_argument("--sampler-set", action="append", default=[], metavar="KEY=VALUE",
                        help="an option of that sampler (repeatable)")
    parser.add_argument("--eval-n", type=int, default=None,
                        help=f"samples scored after training (default: {EVAL_POINTS[0]} points or "
                             f"{EVAL_IMAGES[0]} images, fewer if --eval-fraction runs out)")
    parser.add_argument("--eval-fraction", type=float, default=EVAL_FRACTION,
                        help="evaluation may take at most this fraction of the training time (one pilot "
                             "batch is always drawn)")
    parser.add_argument("--no-eval", action="store_true", help="skip the evaluation after training")
    parser.add_argument("--out", default=None, metavar="RUN_DIR",
                        help="where to save the run (default: a fresh runs/<family>-<dataset>-<time>)")


def run_config(args) -> RunConfig:
    sets = parse_key_values(args.set)
    train = {k[6:]: v for k, v in sets.items() if k.startswith("train.")}
    options = {k: v for k, v in sets.items() if not k.startswith("train.")}
    for flag in ("batch", "lr", "seed", "device"):
        v = getattr(args, flag)
        if v is not None:
            train[flag] = v
    return RunConfig(dataset=args.dataset, family=args.family, train=train, options=options,
                     sampler=args.sampler or "", sampler_options=parse_key_values(args.sampler_set, "--sampler-set"))


def evaluate_bounded(run, seconds: float, n: int | None = None, clock=time.perf_counter) -> dict:
    """Scores samples drawn within `seconds` (at least one pilot batch), at most n of them."""
    target, first, largest = EVAL_IMAGES if run.is_image else EVAL_POINTS
    n = target if n is None else n
    if n < 1:
        raise ValueError(f"--eval-n: at least 1 sample, got {n} (--no-eval skips the evaluation)")
    parts, t0, last = [], clock(), 0.0
    for x in sample_batches(run, n, largest, first=min(first, n), seconds=seconds, min_batch=min(first, n),
                            clock=clock):
        parts.append(x)
        now = clock() - t0
        if now - last >= 1.0:
            last = now
            progress(f"evaluating: {sum(map(len, parts))}/{n} samples ({now:.1f} s)")
    x = torch.cat(parts)
    progress(f"evaluating: scoring {len(x)} samples against held-out data")
    out = dict(run.evaluate(x))
    out.update(eval_n=len(x), eval_seconds=round(clock() - t0, 2))
    for line in quality.summary_lines(out) + [likelihood.summary_line(out)]:   # the units, for people
        if line:
            progress(line)
    return out


def train_for(r, steps: int | None, seconds: float | None, clock=time.perf_counter) -> None:
    """Trains to `steps` (absolute) or for `seconds`, with progress on stderr about every 2 s.
    One timed step first sizes the chunks between time checks to about half a second of work, so
    --seconds holds within about that much whether a step takes 10 us (2D MLP) or 1 s (U-Net)."""
    t0, last, chunk = clock(), -10.0, 1
    while steps is None or r.step < steps:
        left = None if seconds is None else seconds - (clock() - t0)
        if left is not None and left <= 0:
            return
        t = clock()
        for snap in r.iterate(steps_per_snapshot=chunk, max_steps=steps, seconds=left):
            now = clock() - t0
            if now - last >= 2 or snap.diverged:
                last = now
                losses = " ".join(f"{k}={v[-1]:.4g}" for k, v in snap.losses.items() if len(v))
                progress(f"step {snap.step:>6}  {snap.steps_per_s:7.0f} steps/s  {losses}")
            if snap.diverged:
                progress("error: " + snap.message)
                return
        if chunk > 1:
            return                       # the sized run ended at its step or time limit
        chunk = max(1, min(1000, int(0.5 / max(clock() - t, 1e-6))))   # steps per ~0.5 s


def run(args) -> int:
    from .run import Run, configure_threads
    if args.steps is None and args.seconds is None:
        args.steps = DEFAULT_STEPS
    if args.eval_fraction < 0:
        raise ValueError(f"--eval-fraction: must be >= 0, got {args.eval_fraction}")
    cfg = run_config(args)
    threads = args.threads
    if threads is None and "threads" in cfg.train:         # --set train.threads=N, checked like any option
        threads = build(TrainConfig, {"threads": cfg.train["threads"]}).threads
    if threads is not None and threads < 0:
        raise CLIError(f"--threads: 0 (all cores but one) or more, got {threads}")
    configure_threads(threads)
    r = Run(cfg)
    out = args.out or fresh_run_dir(cfg.family, cfg.dataset)
    progress(f"training {cfg.family} on {cfg.dataset}: {len(r.data)} examples, device {r.device}")
    t0 = time.perf_counter()
    train_for(r, args.steps, args.seconds)
    elapsed = time.perf_counter() - t0
    metrics = dict(family=cfg.family, dataset=cfg.dataset, steps=r.step, seconds=round(elapsed, 2),
                   steps_per_s=round(r.step / max(elapsed, 1e-9), 1), run_dir=out)
    if not r.diverged and r.family.samplers and not args.no_eval:
        try:
            metrics.update(evaluate_bounded(r, args.eval_fraction * elapsed, args.eval_n))
        except Exception as e:  # evaluation is a report, never a reason to lose the trained weights
            metrics["evaluation_error"] = str(e)
            progress(f"evaluation failed: {e}")
    r.last_metrics = metrics
    r.save(out)
    progress(f"saved the run to {out}" + (" (training diverged: the weights before the bad step)" if r.diverged else ""))
    emit_json(metrics)
    return 1 if r.diverged else 0
