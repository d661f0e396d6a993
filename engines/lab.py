"""Sampler lab: which sampler to use at a budget of network evaluations (NFE), decided by evidence.

On one trained model (a RUN_DIR), or on the exact score of an analytic dataset (the `exact` family:
the oracle), run every applicable sampler at several NFE budgets and score the samples with
Run.evaluate's energy_distance_x_iid (1.0 = as close to the data as fresh data is). The oracle's
curve is the ceiling: its distance from 1x is the sampler's discretization error alone, and the gap
between a model's curve and the oracle's is the model's error.

One x-iid reading of a perfect sampler is noisy whatever n is: it behaves like chi2_nu / nu with
nu the effective degrees of freedom of the data's distance kernel (engines/quality.py), about 4 on
2D toy data (90 % of readings in about [0.2, 2.4]). So each cell (sampler, NFE) is the mean of K
readings from K independent starting-noise seeds (seed, seed + 1, ..., seed + K - 1). For a
perfect sampler a mean of K independent chi2_nu / nu is chi2_{K nu} / (K nu), so the row's band is
quality.chi2_band(K nu): the 90 % range of the mean of K perfect readings. The model and the oracle
use the same K seeds (shared starting noise) and are scored against the same reference set (the
model's: `scorer`) at the same n, so their difference is not a difference of draws or references.

Qt-free and cancellable (`should_stop` is polled at every sampler step), so a panel can run
`run_lab` in a worker and plot `LabResult.curves()`. Command line:

    python main.py lab --run RUN_DIR --nfe 5,10,20,50 --json lab.json
    python main.py lab --exact 8gaussians --nfe 5,10,20,50 --json lab.json

The JSON is a list of rows {sampler, nfe, x_iid, seconds, source, options, x_iid_readings, band}
(x_iid: the mean of the K readings; seconds: the mean per reading); the table goes to stderr.
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
DEFAULT_READINGS = 3     # readings (starting-noise seeds) per cell: the band's width falls as 1/sqrt(K)
EVAL_N_REF, EVAL_MAX_SAMPLES = 2000, 4000   # Run.evaluate's defaults: the same reference and sizes


class Cancelled(Exception):
    """should_stop() said yes in the middle of a sampler run."""


@dataclass(frozen=True)
class LabRow:
    sampler: str
    nfe: int              # network (or exact-score) evaluations per sample
    x_iid: float          # mean over the K readings of energy_distance_x_iid: 1.0 = a perfect sampler
    seconds: float        # mean wall time of sampling n points, per reading (not of the scoring)
    source: str = "model"  # "model" or "oracle" (the exact score of the same dataset)
    options: str = ""     # the sampler options used, as JSON
    x_iid_readings: tuple[float, ...] = ()   # (K,) one reading per starting-noise seed
    band: tuple[float, float] | None = None  # 90 % range of a perfect sampler's mean of K readings


@dataclass(frozen=True)
class LabCurve:
    """Quality against NFE for one sampler, sorted by NFE (what a panel plots)."""
    sampler: str
    source: str
    nfe: np.ndarray       # (K,) int
    x_iid: np.ndarray     # (K,) float
    seconds: np.ndarray   # (K,) float
    band: tuple[float, float] | None = None   # the rows' band of a perfect sampler's mean (one K, one nu)


@dataclass(frozen=True)
class LabResult:
    rows: tuple[LabRow, ...]
    n_samples: int
    dataset: str
    family: str
    cancelled: bool = False
    readings: int = 1          # K: readings averaged per row

    def curves(self) -> tuple[LabCurve, ...]:
        """One curve per (source, sampler); the oracle's curves are the ceiling to draw."""
        keys = sorted({(r.source, r.sampler) for r in self.rows})
        out = []
        for source, sampler in keys:
            rs = sorted((r for r in self.rows if (r.source, r.sampler) == (source, sampler)), key=lambda r: r.nfe)
            band = next((r.band for r in rs if r.band is not None), None)
            out.append(LabCurve(sampler, source, np.array([r.nfe for r in rs], dtype=int),
                                np.array([r.x_iid for r in rs]), np.array([r.seconds for r in rs]), band))
        return tuple(out)

    def best(self, nfe: int, source: str = "model") -> LabRow | None:
        """The best row at most `nfe` evaluations."""
        rs = [r for r in self.rows if r.source == source and r.nfe <= nfe]
        return min(rs, key=lambda r: r.x_iid) if rs else None

    def to_json(self) -> list[dict]:
        return [asdict(r) for r in self.rows]

    def band(self) -> tuple[float, float] | None:
        """The 90 % range of a perfect sampler's mean of K readings (the rows share it)."""
        return next((r.band for r in self.rows if r.band is not None), None)


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


def reading_seeds(seed: int, readings: int) -> tuple[int, ...]:
    """The K starting-noise seeds of one cell: seed, seed + 1, ..., seed + K - 1 (the model's lab
    and the oracle's use the same ones, so their starting noise x_T is shared)."""
    if readings < 1:
        raise ValueError(f"readings must be at least 1, got {readings}")
    return tuple(seed + j for j in range(int(readings)))


def mean_band(dof: float | None, readings: int) -> tuple[float, float] | None:
    """90 % range of the mean of K perfect readings: a mean of K independent chi2_nu / nu is
    chi2_{K nu} / (K nu), whose quantiles quality.chi2_band gives (Wilson & Hilferty 1931)."""
    from .quality import chi2_band
    return None if dof is None else chi2_band(readings * dof)


def run_lab(run, nfes=DEFAULT_NFE, n_samples: int = 2000, samplers=None, seed: int = 0, source: str = "model",
            should_stop=None, progress=None, readings: int = DEFAULT_READINGS, scorer=None) -> LabResult:
    """Every applicable sampler of `run.family` at each NFE budget, each cell the mean of `readings`
    x-iid readings from the starting-noise seeds reading_seeds(seed, readings).
    scorer: the Run whose reference set scores the samples (default: run; the oracle's lab passes
    the model's, so both are scored against the same points), at Run.evaluate's sizes.
    should_stop(): polled at every sampler step; progress(done, total, row) after each row."""
    should_stop = should_stop or (lambda: False)
    seeds = reading_seeds(seed, readings)
    todo = plan(run.family, nfes, samplers)
    ref = (scorer or run).quality_reference()
    band = mean_band(ref.dof, len(seeds))
    rows: list[LabRow] = []

    def finish(cancelled=False):
        return LabResult(tuple(rows), n_samples, str(run.cfg.dataset), run.cfg.family, cancelled, len(seeds))

    for k, p in enumerate(todo):
        counted = [0]

        def cb(info, counted=counted):
            if should_stop():
                raise Cancelled
            counted[0] = max(counted[0], int(info.get("nfe") or 0))

        scores, times = [], []
        for s in seeds:
            if should_stop():
                return finish(True)
            t0 = time.perf_counter()
            try:
                x = run.sample(n_samples, p.sampler, dict(p.options), seed=s, callback=cb)
            except Cancelled:
                return finish(True)
            times.append(time.perf_counter() - t0)
            score = ref.score(x, EVAL_N_REF, EVAL_MAX_SAMPLES).x_iid
            scores.append(float("nan") if score is None else float(score))
        # what the sampler spent: the grid's count (heun, rk4 and snapped grids spend a little under
        # the budget), the callbacks' count for the adaptive solver, else the budget
        spent = getattr(run.family, "nfe_of", lambda s, o: None)(p.sampler, run.family.sampler_options(p.sampler, p.options)[1])
        nfe = spent if spent is not None else (p.budget if p.budget is not None else counted[0])
        row = LabRow(p.sampler, int(nfe), float(np.mean(scores)), round(float(np.mean(times)), 4), source,
                     json.dumps(p.options, sort_keys=True), tuple(scores), band)
        rows.append(row)
        if progress is not None:
            progress(k + 1, len(todo), row)
    return finish()


def oracle_run(dataset: str, options: dict | None = None, seed: int = 0):
    """A Run of the `exact` family on an analytic dataset (8gaussians, 25gaussians, gmm)."""
    from .config import RunConfig
    from .run import Run
    return Run(RunConfig(dataset=dataset, family="exact", options=dict(options or {}), train=dict(seed=seed)))


def format_table(result: LabResult) -> str:
    k = result.readings
    lines = [f"sampler lab: {result.family} on {result.dataset}, {result.n_samples} samples per reading, "
             f"x_iid = mean of {k} reading{'s' if k != 1 else ''} (seeds) per row "
             f"(energy distance / a perfect sampler's; 1.0 = as good as fresh data)",
             f"{'source':<7} {'sampler':<18} {'nfe':>5} {'x_iid':>9} {'readings':<24} {'s/reading':>9}"]
    for r in sorted(result.rows, key=lambda r: (r.source, r.sampler, r.nfe)):
        each = " ".join(f"{v:.2f}" for v in r.x_iid_readings)
        lines.append(f"{r.source:<7} {r.sampler:<18} {r.nfe:>5} {r.x_iid:>9.2f} {each:<24} {r.seconds:>9.3f}")
    band = result.band()
    if band is not None:
        lines.append(f"a perfect sampler's mean of {k} reads {band[0]:.2f}-{band[1]:.2f} x iid (90 %): "
                     f"rows inside it are as good as fresh data, within the noise")
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
    p.add_argument("--seed", type=int, default=0, help="first starting-noise seed (default: %(default)s)")
    p.add_argument("--readings", type=int, default=DEFAULT_READINGS,
                   help="readings (starting-noise seeds seed..seed+K-1) averaged per row; the model and "
                        "the oracle share them (default: %(default)s)")
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

    if args.readings < 1:
        raise ValueError(f"--readings expects a positive integer, got {args.readings}")
    if args.exact:
        result = run_lab(oracle_run(args.exact, sets, args.seed), nfes, args.n, samplers, args.seed, "oracle",
                         progress=progress, readings=args.readings)
    else:
        from .run import Run
        model = Run.load(args.run)
        result = run_lab(model, nfes, args.n, samplers, args.seed, "model", progress=progress,
                         readings=args.readings)
        ds = model.cfg.dataset
        if args.oracle == "auto" and isinstance(ds, str) and mixture(ds) is not None:
            # the model's data seed, and scored against the model's reference set: same points
            ref = oracle_run(ds, sets, model.cfg.train.seed)
            subset = [s for s in samplers if s in ref.family.applicable_samplers()] if samplers else None
            oracle = run_lab(ref, nfes, args.n, subset, args.seed, "oracle", progress=progress,
                             readings=args.readings, scorer=model)
            result = LabResult(result.rows + oracle.rows, result.n_samples, result.dataset, result.family,
                               readings=result.readings)
    print(format_table(result), file=sys.stderr)
    text = json.dumps(result.to_json(), indent=1)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    print(text)
    return 0
