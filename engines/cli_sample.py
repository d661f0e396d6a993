"""`sample`: draw samples from a trained RUN_DIR into .npy or .csv, in batches, so that a large
request never holds all its samples in memory; progress on stderr, metrics as one JSON object on
stdout. `sample_batches` is shared with `train`'s bounded evaluation."""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from . import families, likelihood, quality
from .cli import CLIError, emit_json, parse_key_values, progress
from .config import ConfigError, describe

# the sampler option that `--steps K` sets, by sampler
STEP_KEYS = ("steps", "n_steps", "steps_per_level")
POINT_BATCH, IMAGE_BATCH = 8192, 256     # samples per batch: (8192, 2) floats, (256, C, H, W) images
EVAL_N = 2000                            # samples scored against held-out data
ANIMATE_MAX = 2000                       # particles drawn per animation frame (Pillow draws each)


def sampler_names() -> list[str]:
    """Every sampler of every available family (the run's own family narrows this at run time)."""
    return sorted({s for f in families.available() for s in families.get(f).samplers})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, metavar="RUN_DIR", help="a RUN_DIR written by `train` (required)")
    parser.add_argument("--n", type=int, default=2000, help="number of samples")
    parser.add_argument("--sampler", default=None, choices=sampler_names(), metavar="NAME",
                        help="sampler (default: the one saved with the run, else the family's): "
                             + ", ".join(sampler_names()))
    parser.add_argument("--steps", type=int, default=None,
                        help="the sampler's step count (default: the sampler's own setting)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a sampler option (repeatable; `python main.py list` names them)")
    parser.add_argument("--seed", type=int, default=None, help="sampling seed (default: the run's seed + 1)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads for this process (default: all cores but one)")
    parser.add_argument("--batch", type=int, default=None,
                        help=f"samples drawn at once (default: {POINT_BATCH} points or {IMAGE_BATCH} images)")
    parser.add_argument("--eval-n", type=int, default=EVAL_N,
                        help="how many of the samples are scored against held-out data")
    parser.add_argument("--no-eval", action="store_true", help="write the samples without scoring them")
    parser.add_argument("--out", default=None, metavar="FILE",
                        help="output file: .npy (points or images) or .csv (points, header x,y) "
                             "(required unless --animate is given)")
    parser.add_argument("--animate", default=None, metavar="FILE",
                        help="also write the sampler as an animation, one frame per step, in data "
                             f"coordinates with the data faint behind: .gif (Pillow) or .mp4 (needs ffmpeg); "
                             f"the first {ANIMATE_MAX} samples are animated")


def sample_batches(run, n: int, batch: int, sampler=None, options=None, seed=None, seconds=None,
                   first: int | None = None, min_batch: int = 1, clock=time.perf_counter):
    """Yields sample batches (data coordinates) of at most `batch` until n are drawn.

    Batch i is drawn with seed + i (seed: the run's seed + 1 by default), so one batch of n equals
    run.sample(n, seed=seed). With `first`, batches start at that size and double up to `batch`
    (a cheap pilot, then efficient large batches). With `seconds`, the next batch is shrunk to
    what the measured rate fits in the time left, and drawing stops when fewer than min_batch
    fit; the first batch is always drawn."""
    base = run.cfg.train.seed + 1 if seed is None else seed
    size = min(first or batch, batch)
    t0, done, i, rate = clock(), 0, 0, None
    while done < n:
        k = min(size, n - done)
        if seconds is not None and rate is not None:
            k = min(k, int(rate * (seconds - (clock() - t0))))
            if k < min(min_batch, n - done):   # too little time left for a worthwhile batch
                return
        t = clock()
        x = run.sample(k, sampler, options, seed=base + i)
        rate = k / max(clock() - t, 1e-9)   # samples/s of the last batch (batches grow: a safe guess)
        yield x
        done, i, size = done + k, i + 1, min(2 * size, batch)


def sampler_options(run, sampler, steps, sets) -> tuple[str, dict]:
    fam = run.family
    sampler = sampler or run.cfg.sampler or fam.default_sampler
    if sampler not in fam.samplers:
        raise ConfigError(f"--sampler: {fam.name} has no sampler {sampler!r}; choose one of {', '.join(fam.samplers)}")
    options = dict(run.cfg.sampler_options) if sampler == run.cfg.sampler else {}
    options.update(parse_key_values(sets))
    if steps is not None:
        keys = [d["name"] for d in describe(fam.samplers[sampler]) if d["name"] in STEP_KEYS]
        if not keys:
            raise ConfigError(f"--steps: sampler {sampler} has no step count")
        options[keys[0]] = steps
    return sampler, options


class SampleWriter:
    """Writes batches to FILE.partial and renames it to FILE when complete (a failed or interrupted
    run leaves no half-written FILE). .npy is a memory map of the final shape, .csv is appended."""

    def __init__(self, path: str, n: int, image: bool):
        ext = os.path.splitext(path)[1].lower()
        if ext not in (".npy", ".csv"):
            raise CLIError(f"--out: write .npy or .csv, got {path!r}")
        if ext == ".csv" and image:
            raise CLIError("--out: CSV holds points; write images to a .npy file")
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise CLIError(f"--out: no folder {folder}")
        self.path, self.tmp, self.n, self.ext, self.done = path, path + ".partial", n, ext, 0
        self.array = self.file = None

    def write(self, x: torch.Tensor):
        a = x.detach().cpu().numpy().astype(np.float32, copy=False)
        if self.ext == ".npy":
            if self.array is None:
                self.array = np.lib.format.open_memmap(self.tmp, mode="w+", dtype=np.float32,
                                                       shape=(self.n,) + a.shape[1:])
            self.array[self.done:self.done + len(a)] = a
        else:
            if self.file is None:
                self.file = open(self.tmp, "w")
                self.file.write("x,y\n")
            np.savetxt(self.file, a.astype(np.float64), fmt="%.9g", delimiter=",")
        self.done += len(a)

    def close(self, ok: bool):
        if self.array is not None:
            self.array.flush()
            del self.array
            self.array = None
        if self.file is not None:
            self.file.close()
        if ok:
            os.replace(self.tmp, self.path)
        elif os.path.exists(self.tmp):
            os.remove(self.tmp)


def run(args) -> int:
    if args.n < 1:
        raise CLIError(f"--n: at least 1 sample, got {args.n}")
    if args.batch is not None and args.batch < 1:
        raise CLIError(f"--batch: at least 1, got {args.batch}")
    if not args.out and not args.animate:
        raise CLIError("--out: name the samples' file (or ask for --animate FILE)")
    if args.animate and os.path.splitext(args.animate)[1].lower() not in (".gif", ".mp4"):
        raise CLIError(f"--animate: write a .gif or an .mp4, got {args.animate!r}")
    if args.threads is not None and args.threads < 0:
        raise CLIError(f"--threads: 0 (all cores but one) or more, got {args.threads}")
    from .run import configure_threads
    configure_threads(args.threads)
    from .bundle import open_bundle
    r = open_bundle(args.run).run          # a RUN_DIR or a zipped bundle, checked before loading
    sampler, options = sampler_options(r, args.sampler, args.steps, args.set)
    animation = _animate(r, args, sampler, options) if args.animate else {}
    if not args.out:
        emit_json(dict(n=min(args.n, ANIMATE_MAX), sampler=sampler, **animation))
        return 0
    batch = args.batch or (IMAGE_BATCH if r.is_image else POINT_BATCH)
    writer = SampleWriter(args.out, args.n, r.is_image)
    keep, kept = ([] if not args.no_eval else None), 0
    t0, last, ok = time.perf_counter(), 0.0, False
    try:
        for x in sample_batches(r, args.n, batch, sampler, options, seed=args.seed):
            writer.write(x)
            if keep is not None and kept < args.eval_n:
                keep.append(x[: args.eval_n - kept])
                kept += len(keep[-1])
            now = time.perf_counter() - t0
            if now - last >= 1.0 or writer.done == args.n:
                last = now
                progress(f"sampled {writer.done}/{args.n} with {sampler} ({now:.1f} s)")
        ok = True
    finally:
        writer.close(ok)
    dt = time.perf_counter() - t0
    shape = [args.n] + list(keep[0].shape[1:] if keep else r.data.shape[1:])
    metrics = dict(n=args.n, sampler=sampler, seconds=round(dt, 3), shape=shape, out=args.out, **animation)
    if keep:
        progress(f"scoring {kept} samples against held-out data")
        metrics.update(r.evaluate(torch.cat(keep)))
        metrics["eval_n"] = kept
        for line in quality.summary_lines(metrics) + [likelihood.summary_line(metrics)]:   # the units, for people
            if line:
                progress(line)
    emit_json(metrics)
    return 0


def _animate(r, args, sampler, options) -> dict:
    """Write --animate; an MP4 without ffmpeg is skipped with a message (the samples still come)."""
    from .animate import AnimationError, record, write_animation
    n = min(args.n, ANIMATE_MAX)
    progress(f"recording {n} particles with {sampler} for {args.animate}")
    traj, _ = record(r, n, sampler, options, seed=args.seed)
    try:
        frames = write_animation(traj, args.animate)
    except AnimationError as e:
        if not args.animate.lower().endswith(".mp4"):
            raise CLIError(f"--animate: {e}") from None
        progress(f"--animate: skipped: {e}")
        return dict(animation_skipped=str(e))
    progress(f"wrote {args.animate}: {frames} frames")
    return dict(animation=args.animate, frames=frames)
