"""`sweep`: a grid of headless runs (e.g. schedules x samplers x seeds) -> one table (CSV + JSON).

    python main.py sweep grid.toml [--out DIR] [--workers N] [--threads K] [--ray ADDRESS]

grid.toml:

    [base]                      # the RunConfig every run starts from (as in a RUN_DIR's config.toml)
    dataset = "moons"
    family = "ddpm"
    [base.options]
    T = 100
    [grid]                      # every combination of these values is one grid entry
    "options.schedule" = ["linear", "cosine"]      # keys: dataset, family, sampler,
    sampler = ["ddpm", "ddim"]                     #   options.NAME, train.NAME, sampler_options.NAME
    "train.seed" = [0, 1]
    [sweep]
    steps = 500                 # training per run (or seconds = 10)
    eval_n = 1000               # samples scored per entry
    threads = 1                 # torch threads per run; workers default to cores // threads

Entries that differ only in the sampler share one trained model (a job trains once, then
samples with each of its samplers, all from the same seeded noise). Jobs run in local
processes (concurrent.futures, spawn) within the thread budget, or on a Ray cluster with
--ray (an optional extra: pip install -e ".[sweep]"). An entry that fails (bad option, a
diverged run, a sampler error, a dead worker process) becomes a row with status "error" and
its message; the others go on. The table has the comparison view's columns
(engines.compare.table: quality x iid, NFE, sampling time, ...) plus the grid's parameters.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import itertools
import json
import os
import time
import tomllib
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

from .cli import CLIError, emit_json, progress
from .config import ConfigError

AXIS_KEYS = ("dataset", "family", "sampler")
AXIS_PREFIXES = ("options.", "train.", "sampler_options.")
MAX_ENTRIES = 1000
SAMPLE_SEED = 12345          # every entry samples from the same noise


@dataclass(frozen=True)
class SweepSettings:
    steps: int | None = None
    seconds: float | None = None
    eval_n: int = 1000
    threads: int = 1
    workers: int = 0              # 0: cores // threads
    nll: bool = False
    target_quality: float = 1.5


@dataclass(frozen=True)
class Entry:
    index: int
    params: tuple                 # ((key, value), ...) in [grid] order
    config: dict                  # the RunConfig as a dict (TOML-able)

    @property
    def label(self) -> str:
        return " ".join(f"{k.split('.')[-1]}={v}" for k, v in self.params) or "base"


@dataclass(frozen=True)
class Job:
    """One training run and the entries (samplers) evaluated on it."""
    config: dict                  # without sampler / sampler_options
    entries: tuple                # ((index, sampler, sampler_options), ...)


@dataclass(frozen=True)
class SweepRow:
    index: int
    label: str
    params: tuple
    family: str
    status: str                   # "ok" | "error"
    error: str = ""
    values: dict = field(default_factory=dict)   # engines.compare.table column key -> value
    nll_unit: str = ""


# ----------------------------------------------------------------------------- the grid

def parse_grid(text: str) -> tuple[list[Entry], SweepSettings]:
    try:
        d = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"grid file is not valid TOML: {e}") from None
    bad = set(d) - {"base", "grid", "sweep"}
    if bad:
        raise ConfigError(f"grid file: unknown table [{sorted(bad)[0]}]; use [base], [grid] and [sweep]")
    base, grid, sw = d.get("base", {}), d.get("grid", {}), d.get("sweep", {})
    from .config import RunConfig
    run_keys = {f.name for f in dataclasses.fields(RunConfig)}
    if set(base) - run_keys:
        raise ConfigError(f"[base]: unknown key {sorted(set(base) - run_keys)[0]!r}; keys: {', '.join(sorted(run_keys))}")
    known = {f for f in SweepSettings.__dataclass_fields__}
    if set(sw) - known:
        raise ConfigError(f"[sweep]: unknown key {sorted(set(sw) - known)[0]!r}; keys: {', '.join(sorted(known))}")
    settings = SweepSettings(**sw)
    if settings.steps is None and settings.seconds is None:
        raise ConfigError("[sweep]: give steps = N or seconds = S (the training of each run)")
    if settings.threads < 1 or settings.eval_n < 2:
        raise ConfigError("[sweep]: threads must be >= 1 and eval_n >= 2")
    axes = []
    for key, values in grid.items():
        if key not in AXIS_KEYS and not key.startswith(AXIS_PREFIXES):
            raise ConfigError(f"[grid]: {key!r} is not a run setting; use {', '.join(AXIS_KEYS)} or "
                              f"{', '.join(p + 'NAME' for p in AXIS_PREFIXES)}")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"[grid]: {key!r} must be a non-empty list of values")
        axes.append((key, values))
    combos = list(itertools.product(*[v for _, v in axes])) if axes else [()]
    if len(combos) > MAX_ENTRIES:
        raise ConfigError(f"[grid]: {len(combos)} entries; at most {MAX_ENTRIES}")
    entries = []
    for i, combo in enumerate(combos):
        cfg = json.loads(json.dumps(base))          # a deep copy of plain TOML values
        for (key, _), value in zip(axes, combo):
            if "." in key:
                table, name = key.split(".", 1)
                cfg.setdefault(table, {})[name] = value
            else:
                cfg[key] = value
        entries.append(Entry(i, tuple((k, v) for (k, _), v in zip(axes, combo)), cfg))
    return entries, settings


def jobs_of(entries: list[Entry]) -> list[Job]:
    """Entries whose configs differ only in the sampler share one training run."""
    groups: dict[str, list] = {}
    for e in entries:
        train_cfg = {k: v for k, v in e.config.items() if k not in ("sampler", "sampler_options")}
        key = json.dumps(train_cfg, sort_keys=True)
        groups.setdefault(key, []).append((e.index, e.config.get("sampler", ""), e.config.get("sampler_options", {})))
    return [Job(json.loads(k), tuple(v)) for k, v in groups.items()]


# ----------------------------------------------------------------------------- one job (in a worker)

def run_job(job: Job, settings: SweepSettings) -> list[dict]:
    """Train once, evaluate each entry; returns plain dicts (index, status, error, values,
    nll_unit). Never raises: a failure becomes the status of the rows it affects."""
    import torch

    from .compare import measure as M
    from .config import RunConfig
    from .run import Run
    torch.set_num_threads(settings.threads)
    try:
        cfg = dict(job.config)
        train = dict(cfg.pop("train", {}) or {})
        train["threads"] = settings.threads
        run = Run(RunConfig(train=train, **cfg))
        t0, t_train = time.perf_counter(), 0.0
        while True:
            if settings.steps is not None and run.step >= settings.steps:
                break
            if settings.seconds is not None and t_train >= settings.seconds:
                break
            k = 50 if settings.steps is None else max(1, min(50, settings.steps - run.step))
            done = run.train(k)
            t_train = time.perf_counter() - t0
            if run.diverged:
                raise RuntimeError(run.diverged)
            if done == 0:
                break
    except Exception as e:           # noqa: BLE001 - reported in the table, the sweep goes on
        return [dict(index=i, status="error", error=f"{type(e).__name__}: {e}") for i, _, _ in job.entries]
    rows = []
    for index, sampler, options in job.entries:
        try:
            run.cfg.sampler, run.cfg.sampler_options = sampler or "", dict(options or {})
            meas = M.measure_sampling(run, settings.eval_n, SAMPLE_SEED)
            log = M.QualityLog()
            log.add(t_train, run.step, M.quality_of(meas.metrics))
            value, unit = M.nll(run) if settings.nll else (None, "")
            row = M.make_row("", run, meas, t_train, log, settings.target_quality, value, unit)
            rows.append(dict(index=index, status="ok", error="", values=dict(row.values), nll_unit=row.nll_unit))
        except Exception as e:       # noqa: BLE001
            rows.append(dict(index=index, status="error", error=f"{type(e).__name__}: {e}"))
    return rows


def _thread_init(threads: int):
    import torch
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- executors

def run_local(jobs: list[Job], settings: SweepSettings, report=progress) -> list[dict]:
    """Jobs in local processes, `workers` at a time, each with `threads` torch threads."""
    cores = os.cpu_count() or 1
    workers = settings.workers or max(1, cores // settings.threads)
    workers = max(1, min(workers, len(jobs)))
    report(f"sweep: {len(jobs)} training runs in {workers} processes x {settings.threads} threads")
    out = []
    with ProcessPoolExecutor(workers, mp_context=_context(), initializer=_thread_init,
                             initargs=(settings.threads,)) as ex:
        futures = {ex.submit(run_job, job, settings): job for job in jobs}
        for fut in as_completed(futures):
            job = futures[fut]
            try:
                rows = fut.result()
            except BrokenProcessPool as e:
                rows = [dict(index=i, status="error", error=f"the worker process died ({e})") for i, _, _ in job.entries]
            out.extend(rows)
            report(f"  done {len(out)} entries" + "".join(f"; entry {r['index']}: {r['error']}"
                                                         for r in rows if r["status"] != "ok"))
    return out


def _context():
    """forkserver where there is one (Linux, macOS): a server process imports torch and the engines
    once and forks every worker from that clean state (no OpenMP threads started yet), instead of
    each spawned worker importing them again (seconds each); spawn elsewhere."""
    import multiprocessing as mp
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        # what every run imports lazily: the toy datasets' sklearn, the optimizers' torch._dynamo
        ctx.set_forkserver_preload(["engines.run", "engines.compare.measure", "sklearn.datasets", "torch._dynamo"])
        return ctx
    return mp.get_context("spawn")


def run_ray(jobs: list[Job], settings: SweepSettings, address: str, report=progress) -> list[dict]:
    """Jobs as Ray tasks on the cluster at `address` (each node needs genplayground installed)."""
    ray = import_ray()
    ray.init(address=address)
    task = ray.remote(num_cpus=settings.threads)(run_job)
    refs = [(job, task.remote(job, settings)) for job in jobs]
    report(f"sweep: {len(jobs)} training runs on Ray at {address}")
    out = []
    for job, ref in refs:
        try:
            out.extend(ray.get(ref))
        except Exception as e:       # noqa: BLE001 - a lost task is one failed job
            out.extend(dict(index=i, status="error", error=f"Ray task failed: {e}") for i, _, _ in job.entries)
    return out


def import_ray():
    try:
        import ray
    except ImportError:
        raise CLIError("--ray needs Ray, which is not installed: pip install -e \".[sweep]\" "
                       "(or run without --ray: local processes)") from None
    return ray


# ----------------------------------------------------------------------------- the table

def assemble(entries: list[Entry], results: list[dict]) -> list[SweepRow]:
    by_index = {r["index"]: r for r in results}
    rows = []
    for e in entries:
        r = by_index.get(e.index, dict(status="error", error="no result came back"))
        rows.append(SweepRow(e.index, e.label, e.params, str(e.config.get("family", "ddpm")), r["status"],
                             r.get("error", ""), r.get("values", {}), r.get("nll_unit", "")))
    return rows


def comparison_table(rows: list[SweepRow], target: float = 1.5):
    """The compare view's table (failed entries as rows without values)."""
    from .compare.table import ComparisonTable, Row
    return ComparisonTable(tuple(Row.of(r.label, r.family, r.nll_unit, **r.values) for r in rows), target)


def read_table(json_path: str):
    """A sweep's JSON table as the compare view's ComparisonTable (its table widget shows it)."""
    from .compare.table import COLUMN_KEYS, ComparisonTable, Row
    try:
        with open(json_path) as f:
            doc = json.load(f)
        rows = tuple(Row.of(r["label"], r["family"], r.get("nll_unit", ""),
                            **{k: r.get(k) for k in COLUMN_KEYS}) for r in doc["runs"])
        return ComparisonTable(rows, float(doc.get("target_quality", 1.5)))
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ConfigError(f"{json_path}: not a sweep or comparison table ({type(e).__name__}: {e})") from None


def write_table(rows: list[SweepRow], settings: SweepSettings, csv_path: str, json_path: str) -> dict:
    table = comparison_table(rows, settings.target_quality)
    doc = table.to_json()
    for run, r in zip(doc["runs"], rows):
        run.update(index=r.index, status=r.status, error=r.error, params={k: v for k, v in r.params})
    doc["sweep"] = dict(entries=len(rows), failed=sum(r.status != "ok" for r in rows),
                        settings=dataclasses.asdict(settings))
    param_keys = list(dict.fromkeys(k for r in rows for k, _ in r.params))
    from .compare.table import COLUMN_KEYS
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "label", "family", "status", "error"] + param_keys + list(COLUMN_KEYS) + ["nll_unit"])
        for r in rows:
            p = dict(r.params)
            w.writerow([r.index, r.label, r.family, r.status, r.error] + [p.get(k, "") for k in param_keys]
                       + ["" if r.values.get(k) is None else r.values[k] for k in COLUMN_KEYS] + [r.nll_unit])
    with open(json_path, "w") as f:
        json.dump(doc, f, indent=1, default=float)
    return doc


def sweep(grid_text: str, out_prefix: str, ray_address: str | None = None, workers: int | None = None,
          threads: int | None = None, report=progress) -> dict:
    entries, settings = parse_grid(grid_text)
    if workers is not None or threads is not None:
        settings = dataclasses.replace(settings, **{**({"workers": workers} if workers is not None else {}),
                                                     **({"threads": threads} if threads is not None else {})})
    jobs = jobs_of(entries)
    t0 = time.perf_counter()
    results = run_ray(jobs, settings, ray_address, report) if ray_address else run_local(jobs, settings, report)
    rows = assemble(entries, results)
    doc = write_table(rows, settings, out_prefix + ".csv", out_prefix + ".json")
    report(comparison_table(rows, settings.target_quality).to_text())
    report(f"sweep: {len(rows)} entries, {doc['sweep']['failed']} failed, {time.perf_counter() - t0:.1f} s; "
           f"wrote {out_prefix}.csv and {out_prefix}.json")
    return doc


# ----------------------------------------------------------------------------- command line

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("grid", metavar="GRID.toml", help="the grid: [base] run config, [grid] axes, [sweep] settings")
    parser.add_argument("--out", default=None, metavar="PREFIX",
                        help="write PREFIX.csv and PREFIX.json (default: the grid file's path without .toml)")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes at once (default: [sweep] workers, else cores // threads)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per run (default: [sweep] threads, 1)")
    parser.add_argument("--ray", default=None, metavar="ADDRESS",
                        help="run on the Ray cluster at ADDRESS (needs the [sweep] extra; default: local processes)")


def run(args) -> int:
    if args.ray:
        import_ray()                 # fail in one line before any work
    if not os.path.exists(args.grid):
        raise CLIError(f"{args.grid}: no such grid file")
    with open(args.grid) as f:
        text = f.read()
    out = args.out or os.path.splitext(args.grid)[0]
    doc = sweep(text, out, args.ray, args.workers, args.threads)
    n, failed = doc["sweep"]["entries"], doc["sweep"]["failed"]
    emit_json(dict(csv=out + ".csv", json=out + ".json", entries=n, failed=failed))
    return 1 if failed == n else 0   # some failed entries are results (in the table); all failed is a failure
