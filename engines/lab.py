"""Sampler lab: which sampler to use at a budget of network evaluations (NFE), decided by evidence.

On one trained model (a RUN_DIR), or on the exact score of an analytic dataset (the `exact` family:
the oracle), run every applicable sampler at several NFE budgets and score the samples with
Run.evaluate's energy_distance_x_iid (1.0 = as close to the data as fresh data is). The oracle's
curve is the ceiling: its distance from 1x is the sampler's discretization error alone, and the gap
between a model's curve and the oracle's is the model's error.

Qt-free and cancellable (`should_stop` is polled at every sampler step), so a panel can run
`run_lab` in a worker and plot `LabResult.curves()`. Command line:

    python main.py lab --run RUN_DIR --nfe 5,10,20,50 --json lab.json
    python main.py lab --exact 8gaussians --nfe 5,10,20,50 --json lab.json

The JSON is a list of rows {sampler, nfe, x_iid, seconds, source, options}; the table goes to stderr.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np

DEFAULT_NFE = (5, 10, 20, 50)
DOPRI5_TOLERANCES = (1e-1, 1e-2, 1e-3)   # adaptive: the tolerance sets the NFE, which is counted
# options the lab adds to a budget (the rest are the sampler's defaults): ddim_sigma at eta = 0 is
# euler's row, so the lab shows its stochastic end instead
LAB_OPTIONS = {"ddim_sigma": dict(eta=1.0)}


class Cancelled(Exception):
    """should_stop() said yes in the middle of a sampler run."""


@dataclass(frozen=True)
class LabRow:
    sampler: str
    nfe: int              # network (or exact-score) evaluations per sample
    x_iid: float          # Run.evaluate's energy_distance_x_iid: 1.0 = a perfect sampler
    seconds: float        # wall time of sampling n points (not of the scoring)
    source: str = "model"  # "model" or "oracle" (the exact score of the same dataset)
    options: str = ""     # the sampler options used, as JSON


@dataclass(frozen=True)
class LabCurve:
    """Quality against NFE for one sampler, sorted by NFE (what a panel plots)."""
    sampler: str
    source: str
    nfe: np.ndarray       # (K,) int
    x_iid: np.ndarray     # (K,) float
    seconds: np.ndarray   # (K,) float


@dataclass(frozen=True)
class LabResult:
    rows: tuple[LabRow, ...]
    n_samples: int
    dataset: str
    family: str
    cancelled: bool = False

    def curves(self) -> tuple[LabCurve, ...]:
        """One curve per (source, sampler); the oracle's curves are the ceiling to draw."""
        keys = sorted({(r.source, r.sampler) for r in self.rows})
        out = []
        for source, sampler in keys:
            rs = sorted((r for r in self.rows if (r.source, r.sampler) == (source, sampler)), key=lambda r: r.nfe)
            out.append(LabCurve(sampler, source, np.array([r.nfe for r in rs], dtype=int),
                                np.array([r.x_iid for r in rs]), np.array([r.seconds for r in rs])))
        return tuple(out)

    def best(self, nfe: int, source: str = "model") -> LabRow | None:
        """The best row at most `nfe` evaluations."""
        rs = [r for r in self.rows if r.source == source and r.nfe <= nfe]
        return min(rs, key=lambda r: r.x_iid) if rs else None

    def to_json(self) -> list[dict]:
        return [asdict(r) for r in self.rows]


@dataclass
class _Plan:
    sampler: str
    options: dict
    budget: int | None = None    # None: adaptive, the NFE is counted
    extra: dict = field(default_factory=dict)


def plan(family, nfes, samplers=None) -> list[_Plan]:
    """The (sampler, options) pairs to run: each applicable sampler at each budget it can meet
    (`family.budget_options`), and the adaptive PF-ODE at a few tolerances."""
    names = family.applicable_samplers() if hasattr(family, "applicable_samplers") else list(family.samplers)
    if samplers:  # those the family has (one list can serve several families); none at all is an error
        if not set(samplers) & set(names):
            raise ValueError(f"{family.name} has no applicable sampler {', '.join(samplers)}; choose from {', '.join(names)}")
        names = [s for s in names if s in samplers]
    out = []
    for name in names:
        if name == "ode_dopri5":
            out += [_Plan(name, dict(rtol=tol, atol=tol)) for tol in DOPRI5_TOLERANCES]
            continue
        budget = getattr(family, "budget_options", lambda s, n: None)
        for nfe in nfes:
            opts = budget(name, int(nfe))
            if opts is not None:
                out.append(_Plan(name, {**opts, **LAB_OPTIONS.get(name, {})}, int(nfe)))
    return out


def run_lab(run, nfes=DEFAULT_NFE, n_samples: int = 2000, samplers=None, seed: int = 0, source: str = "model",
            should_stop=None, progress=None) -> LabResult:
    """Every applicable sampler of `run.family` at each NFE budget, scored by run.evaluate.
    should_stop(): polled at every sampler step; progress(done, total, row) after each row."""
    should_stop = should_stop or (lambda: False)
    todo = plan(run.family, nfes, samplers)
    rows: list[LabRow] = []
    for k, p in enumerate(todo):
        counted = [0]

        def cb(info, counted=counted):
            if should_stop():
                raise Cancelled
            counted[0] = max(counted[0], int(info.get("nfe") or 0))

        if should_stop():
            return LabResult(tuple(rows), n_samples, str(run.cfg.dataset), run.cfg.family, cancelled=True)
        t0 = time.perf_counter()
        try:
            x = run.sample(n_samples, p.sampler, dict(p.options), seed=seed, callback=cb)
        except Cancelled:
            return LabResult(tuple(rows), n_samples, str(run.cfg.dataset), run.cfg.family, cancelled=True)
        dt = time.perf_counter() - t0
        # what the sampler spent: the grid's count (heun, rk4 and snapped grids spend a little under
        # the budget), the callbacks' count for the adaptive solver, else the budget
        spent = getattr(run.family, "nfe_of", lambda s, o: None)(p.sampler, run.family.sampler_options(p.sampler, p.options)[1])
        nfe = spent if spent is not None else (p.budget if p.budget is not None else counted[0])
        ev = run.evaluate(x)
        score = ev.get("energy_distance_x_iid")
        row = LabRow(p.sampler, int(nfe), float("nan") if score is None else float(score), round(dt, 4), source,
                     json.dumps(p.options, sort_keys=True))
        rows.append(row)
        if progress is not None:
            progress(k + 1, len(todo), row)
    return LabResult(tuple(rows), n_samples, str(run.cfg.dataset), run.cfg.family)


def oracle_run(dataset: str, options: dict | None = None, seed: int = 0):
    """A Run of the `exact` family on an analytic dataset (8gaussians, 25gaussians, gmm)."""
    from .config import RunConfig
    from .run import Run
    return Run(RunConfig(dataset=dataset, family="exact", options=dict(options or {}), train=dict(seed=seed)))


def format_table(result: LabResult) -> str:
    lines = [f"sampler lab: {result.family} on {result.dataset}, {result.n_samples} samples per row "
             f"(x_iid: energy distance / a perfect sampler's; 1.0 = as good as fresh data)",
             f"{'source':<7} {'sampler':<18} {'nfe':>5} {'x_iid':>9} {'seconds':>8}"]
    for r in sorted(result.rows, key=lambda r: (r.source, r.sampler, r.nfe)):
        lines.append(f"{r.source:<7} {r.sampler:<18} {r.nfe:>5} {r.x_iid:>9.2f} {r.seconds:>8.3f}")
    if result.cancelled:
        lines.append("(cancelled: the rows above are those finished)")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- command line


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", metavar="RUN_DIR", help="a trained run to test the samplers on")
    src.add_argument("--exact", metavar="DATASET", help="the exact-score oracle of an analytic dataset "
                     "(8gaussians, 25gaussians, gmm)")
    p.add_argument("--nfe", default=",".join(map(str, DEFAULT_NFE)),
                   help="comma-separated budgets of network evaluations (default: %(default)s)")
    p.add_argument("--n", type=int, default=2000, help="samples per row (default: %(default)s)")
    p.add_argument("--samplers", default="", help="comma-separated subset (default: every applicable sampler)")
    p.add_argument("--oracle", choices=("auto", "off"), default="auto",
                   help="with --run on an analytic dataset, also run the exact-score oracle as the ceiling "
                        "(default: %(default)s)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="an option of the exact oracle, e.g. process=ddpm (default: the family's)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default: %(default)s)")
    p.add_argument("--json", metavar="FILE", help="also write the rows as JSON to this file (stdout always has them)")


def _parse_nfe(text: str) -> list[int]:
    try:
        nfes = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--nfe expects comma-separated integers, got {text!r}") from None
    if not nfes or min(nfes) < 1:
        raise ValueError(f"--nfe expects positive integers, got {text!r}")
    return nfes


def run(args: argparse.Namespace) -> int:
    from .data import mixture
    nfes = _parse_nfe(args.nfe)
    sets = dict(kv.split("=", 1) for kv in (args.set or []) if "=" in kv)
    samplers = [s for s in args.samplers.split(",") if s] or None

    def progress(done, total, row):
        print(f"[{done}/{total}] {row.source} {row.sampler} nfe={row.nfe} x_iid={row.x_iid:.2f}",
              file=sys.stderr, flush=True)

    if args.exact:
        result = run_lab(oracle_run(args.exact, sets, args.seed), nfes, args.n, samplers, args.seed, "oracle",
                         progress=progress)
    else:
        from .run import Run
        model = Run.load(args.run)
        result = run_lab(model, nfes, args.n, samplers, args.seed, "model", progress=progress)
        ds = model.cfg.dataset
        if args.oracle == "auto" and isinstance(ds, str) and mixture(ds) is not None:
            ref = oracle_run(ds, sets, args.seed)
            subset = [s for s in samplers if s in ref.family.applicable_samplers()] if samplers else None
            oracle = run_lab(ref, nfes, args.n, subset, args.seed, "oracle", progress=progress)
            result = LabResult(result.rows + oracle.rows, result.n_samples, result.dataset, result.family)
    print(format_table(result), file=sys.stderr)
    text = json.dumps(result.to_json(), indent=1)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    print(text)
    return 0
