"""Headless comparison: train the runs on one shared dataset, in turn (one process, the most-behind
run trains next) or in parallel processes (the cores split among them), then measure each run
the same way and build the table. Used by `python main.py compare`; tested with a fake clock."""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from dataclasses import dataclass

import numpy as np
import torch

from . import measure as M
from .fair import FairShare, concurrent_slots, run_in_turn, thread_budgets
from .spec import Comparison, run_configs, shared_data
from .table import ComparisonTable, Row


@dataclass(frozen=True)
class Budget:
    """seconds: training wall time of the whole comparison (time mode: split equally per run;
    steps mode: the runs take equal steps until it is spent). steps: per-run step cap."""
    seconds: float | None = None
    steps: int | None = None

    def __post_init__(self):
        if self.seconds is None and self.steps is None:
            raise ValueError("a comparison needs --seconds or --steps (or both)")
        if self.seconds is not None and not self.seconds > 0:
            raise ValueError(f"--seconds must be positive, got {self.seconds}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"--steps must be at least 1, got {self.steps}")


@dataclass(frozen=True)
class Settings:
    chunk: int = 200           # most steps per turn
    slice_seconds: float = 0.5  # a turn lasts about this long (sized by the run's measured speed)
    checkpoints: int = 6       # quality checks per run during training (for time to target)
    n_eval: int = 256          # samples per quality check
    n_final: int = 2000        # samples for the table's quality, NFE and sampling time
    eval_fraction: float = 0.5  # quality checks may take at most this share of the training time
    nll_n: int = 256


def _per_run_budget(comp: Comparison, budget: Budget, n: int) -> float | None:
    if comp.fair == "time":
        return None if budget.seconds is None else budget.seconds / n
    return budget.steps


def train_in_turn(comp: Comparison, budget: Budget, settings: Settings = Settings(), clock=time.perf_counter,
                  should_stop=None, report=None, make_run=None) -> tuple[ComparisonTable, list]:
    """Train every run in one process, one chunk at a time, fairly; returns (table, runs).
    make_run(cfg, data) builds a run (tests pass fakes); report(text) gets progress lines."""
    if make_run is None:
        from ..run import Run as make_run
    n = len(comp.runs)
    data = shared_data(comp)
    cfgs = run_configs(comp, threads=thread_budgets(n, slots=1))
    runs = [make_run(cfg, data) for cfg in cfgs]
    share = FairShare(n, comp.fair, slots=1, budget=_per_run_budget(comp, budget, n))
    logs = [M.QualityLog() for _ in runs]
    # checkpoint spacing in the fairness unit (steps or seconds of one run's training)
    per_run = share.budget if share.budget is not None else (budget.seconds or 0) / n
    every = max(per_run / max(settings.checkpoints, 1), 1e-9) if per_run else None
    next_check = [0.0] * n

    spent = [0.0]

    def check(i, force=True):
        # checks are not training time; past eval_fraction of it, only the first and last are made
        if not force and spent[0] > settings.eval_fraction * sum(share.seconds):
            return
        t0 = time.perf_counter()
        q = M.quality_of(runs[i].evaluate(runs[i].sample(settings.n_eval, seed=comp.sample_seed)))
        logs[i].add(share.seconds[i], runs[i].step, q)
        spent[0] += time.perf_counter() - t0

    for i in range(n):                # quality before training: an exact oracle is at target at 0 s
        check(i)
        next_check[i] = every or float("inf")
    last = [clock()]

    def on_chunk(i, done, dt):
        if every is not None and share.progress(i) >= next_check[i]:
            check(i, force=False)
            next_check[i] += every
        if report is not None and clock() - last[0] >= 2.0:
            last[0] = clock()
            report("  ".join(f"{r.label}: {s} steps {t:.1f}s" for r, s, t in
                             zip(comp.runs, share.steps, share.seconds)))

    def stop():
        if should_stop is not None and should_stop():
            return True
        if comp.fair == "steps" and budget.seconds is not None:
            return sum(share.seconds) >= budget.seconds
        return False
    run_in_turn(runs, share, settings.chunk, clock, stop, on_chunk, settings.slice_seconds)
    rows = []
    for i, (spec, run) in enumerate(zip(comp.runs, runs)):
        rows.append(final_row(spec.label, run, share.seconds[i], logs[i], comp, settings))
    return ComparisonTable(tuple(rows), comp.target_quality), runs


def final_row(label, run, train_seconds, log, comp, settings) -> Row:
    try:
        meas = M.measure_sampling(run, settings.n_final, comp.sample_seed)
        log.add(train_seconds, run.step, M.quality_of(meas.metrics))
    except NotImplementedError:       # a family that cannot sample gets no sampling columns
        meas = None
    value, unit = M.nll(run, settings.nll_n)
    return M.make_row(label, run, meas, train_seconds, log, comp.target_quality, value, unit)


# ---------------------------------------------------------------------------------- parallel


def _child(index: int, cfg_toml: str, data_path: str, budget_kind: str, amount: float, sample_seed: int,
           target: float, settings: dict, out_path: str):
    """One run in its own process: train for its budget, measure, write its row as JSON."""
    from ..config import RunConfig
    from ..run import Run
    cfg = RunConfig.from_toml(cfg_toml)
    data = torch.from_numpy(np.load(data_path, allow_pickle=False))
    run = Run(cfg, data=data)
    st = Settings(**settings)
    log = M.QualityLog()
    t_train, checks = 0.0, max(st.checkpoints, 1)
    every = amount / checks
    nxt = 0.0
    while True:
        prog = run.step if budget_kind == "steps" else t_train
        if prog >= nxt:
            log.add(t_train, run.step, M.quality_of(run.evaluate(run.sample(st.n_eval, seed=sample_seed))))
            nxt += every
        if prog >= amount:
            break
        k = 5 if t_train <= 0 else max(1, min(st.chunk, int(run.step / t_train * st.slice_seconds)))
        if budget_kind == "steps":
            k = max(1, min(k, int(amount - run.step)))
        t0 = time.perf_counter()
        done = run.train(k)
        t_train += time.perf_counter() - t0
        if done == 0:
            break
    comp = _Lite(sample_seed, target)
    row = final_row(cfg.family, run, t_train, log, comp, st)
    with open(out_path, "w") as f:
        json.dump(dict(index=index, values=dict(row.values), nll_unit=row.nll_unit), f)


@dataclass(frozen=True)
class _Lite:
    sample_seed: int
    target_quality: float


def train_parallel(comp: Comparison, budget: Budget, settings: Settings = Settings(), cores: int | None = None,
                   report=None) -> ComparisonTable:
    """One process per run, each with its thread budget, started at once. Equal wall time per
    run (time mode: --seconds each) or equal steps (steps mode: --steps each)."""
    import multiprocessing as mp
    n = len(comp.runs)
    if comp.fair == "steps" and budget.steps is None:
        raise ValueError("parallel runs with equal steps need --steps (or use --fair time)")
    kind, amount = ("steps", float(budget.steps)) if comp.fair == "steps" else ("time", float(budget.seconds))
    threads = thread_budgets(n, cores, slots=concurrent_slots(n, cores))
    cfgs = run_configs(comp, threads=threads)
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="compare-") as tmp:
        data_path = os.path.join(tmp, "data.npy")
        np.save(data_path, shared_data(comp).numpy())
        procs, outs = [], []
        for i, cfg in enumerate(cfgs):
            out = os.path.join(tmp, f"row{i}.json")
            p = ctx.Process(target=_child, args=(i, cfg.to_toml(), data_path, kind, amount, comp.sample_seed,
                                                 comp.target_quality, dataclasses.asdict(settings), out))
            p.start()
            procs.append(p)
            outs.append(out)
        if report is not None:
            report(f"{n} processes, threads {threads}")
        for p in procs:
            p.join()
        rows = []
        for spec, out, p in zip(comp.runs, outs, procs):
            if not os.path.exists(out):
                raise RuntimeError(f"run {spec.label!r} failed in its process (exit code {p.exitcode})")
            with open(out) as f:
                d = json.load(f)
            rows.append(Row.of(spec.label, spec.cfg.family, nll_unit=d["nll_unit"], **d["values"]))
    return ComparisonTable(tuple(rows), comp.target_quality)
