"""What the schedule inspector, the checkpoint timeline and the score-error plot show, computed
here (no Qt) from what a run publishes, plus the probe a session runs beside training.

  inspect_schedule(schedule, preview, family)  the run's schedule (RunInfo.schedule, the
        family's own curves) on the normalized time axis, overlaid with the standard ones,
        and its warnings for the run's data (RunInfo.preview, standardized like the Run does)
  forward_pair(a, b, data, t)  the forward process of two schedules at one t, same noise
  InspectorProbe  owned by a session: attaches LossBins to the family, offers checkpoints to a
        CheckpointRing after each training chunk, and makes an `InspectorExtras` message
        (loss strip, Fisher curve on analytic data, kept checkpoint steps) when asked
"""
from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass

import numpy as np

from .checkpoints import CheckpointRing
from .loss_bins import LossBins, LossStrip
from .schedule_inspect import (STANDARD_SPECS, ForwardSample, ScheduleCurves, ScheduleError, ScheduleSpec,
                               forward_process, schedule_curves)
from .schedule_warnings import DataGeometry, ScheduleWarning, data_geometry, schedule_warnings
from .score_error import FisherCurve, fisher_for_run


def standardize(points) -> np.ndarray:
    """(x - mean) / mean per-axis std: the Run's normalization, isotropic (engines.run)."""
    x = np.asarray(points, dtype=np.float64).reshape(len(points), -1)
    return (x - x.mean(0)) / max(float(x.std(0).mean()), 1e-6)


def spec_from_run_schedule(schedule: dict, label: str = "this run") -> ScheduleSpec | None:
    """A points spec reproducing the run's own schedule curves (Family.schedule()):
      alpha_bar over steps 0..T-1 (DDPM)            -> alpha_bar at t = (i + 1) / T
      mean_coef and std with mean^2 + std^2 = 1     -> alpha_bar = mean^2 (VP SDE), t rescaled to (0, 1]
      mean_coef and std otherwise (sub-VP, flows)   -> sigma = std / mean, a VE view
      a sigma ladder on the x axis ("level i")      -> sigma at t = i / L, ascending
    None when the family has no noise schedule."""
    if not schedule:
        return None
    if "alpha_bar" in schedule:
        x, abar = (np.asarray(v, np.float64) for v in schedule["alpha_bar"])
        T = len(abar)
        t = np.arange(1, T + 1) / T
        return ScheduleSpec("points", T, quantity="alpha_bar", points=tuple(zip(t, abar)), label=label)
    if "mean_coef" in schedule and "std" in schedule:
        x, a = (np.asarray(v, np.float64) for v in schedule["mean_coef"])
        s = np.asarray(schedule["std"][1], np.float64)
        keep = (s > 0) & (a > 0)
        x, a, s = x[keep], a[keep], s[keep]
        if len(x) < 2:
            return None
        t = (x - x[0]) / (x[-1] - x[0]) * (1 - 1 / len(x)) + 1 / len(x)     # onto [1/n, 1]
        if np.allclose(a ** 2 + s ** 2, 1, atol=1e-3):
            return ScheduleSpec("points", len(x), quantity="alpha_bar", points=tuple(zip(t, a ** 2)), label=label)
        return ScheduleSpec("points", len(x), quantity="sigma", points=tuple(zip(t, s / a)), label=label)
    for name, value in schedule.items():
        if name == "x_label":
            continue
        sig = np.sort(np.asarray(value[0], np.float64))
        if "sigma" in str(schedule.get("x_label", "")) and len(sig) >= 2 and sig[0] > 0:
            t = np.arange(1, len(sig) + 1) / len(sig)                    # the custom kinds' grid: i / L
            return ScheduleSpec("points", len(sig), quantity="sigma", points=tuple(zip(t, sig)), label=label)
        break
    return None


@functools.lru_cache(maxsize=64)
def shared_curves(spec: ScheduleSpec) -> ScheduleCurves:
    """schedule_curves, computed once per spec (the standard schedules of every report are the
    same objects, so a view can keep what it drew); the arrays are read-only."""
    c = schedule_curves(spec)
    for a in c.as_dict().values():
        a.flags.writeable = False
    return c


@dataclass(frozen=True)
class InspectorReport:
    run_spec: ScheduleSpec | None
    run_curves: ScheduleCurves | None           # drawn highlighted
    curves: tuple                                # (ScheduleCurves, ...) the standard schedules
    warnings: tuple                              # (ScheduleWarning, ...) for the run's schedule
    geometry: DataGeometry | None
    data: np.ndarray | None                      # (n, D) standardized points for the forward process
    message: str = ""                            # why something is missing


def inspect_schedule(schedule: dict | None, preview=None, label: str = "this run",
                     extra_specs: tuple = STANDARD_SPECS, run_spec: ScheduleSpec | None = None) -> InspectorReport:
    """The inspector's content for a run: RunInfo.schedule and RunInfo.preview (data coordinates)."""
    spec = run_spec or spec_from_run_schedule(schedule or {}, label)
    curves = tuple(shared_curves(s) for s in extra_specs)
    data = geom = None
    if preview is not None and np.asarray(preview).ndim == 2 and len(preview) >= 2:
        data = standardize(preview)
        geom = data_geometry(data) if spec is not None else None     # only the warnings need it
    if spec is None:
        return InspectorReport(None, None, curves, (), geom, data, "this family has no noise schedule")
    try:
        rc = schedule_curves(spec)
    except ScheduleError as e:
        return InspectorReport(spec, None, curves, (), geom, data, str(e))
    warns = tuple(schedule_warnings(spec, geom, rc)) if geom is not None else ()
    return InspectorReport(spec, rc, curves, warns, geom, data,
                           "" if geom is not None else "warnings need point data (not images)")


def forward_pair(a: ScheduleCurves, b: ScheduleCurves, data, t: float, seed: int = 0) -> tuple[ForwardSample, ForwardSample]:
    """x_t under two schedules from the same data and the same noise z."""
    return forward_process(a, data, t, seed), forward_process(b, data, t, seed)


# ----------------------------------------------------------------------------- beside training

@dataclass(frozen=True)
class InspectorExtras:
    """A message for the inspector panels (what a session sends beside its Snapshots)."""
    step: int
    strip: LossStrip | None
    fisher: FisherCurve | None
    checkpoint_steps: tuple
    run_id: int = 0


class InspectorProbe:
    """Loss-per-t bins, checkpoints and the score error of one run. A session calls
    `after_train(run)` after each training chunk and `extras(run)` when the panels want a frame."""

    def __init__(self, run, ring: CheckpointRing | None = None, bins: LossBins | None = None,
                 fisher_every_s: float = 2.0, clock=time.perf_counter):
        self.ring = ring or CheckpointRing()
        self.bins = (bins or LossBins()).attach(run.family)
        self.fisher_every_s = fisher_every_s      # the Fisher curve costs ~12 network calls on 256 points
        self.clock = clock
        self._fisher = None
        self._fisher_step = -1
        self._fisher_at = -math.inf
        self.ring.offer(run, force=True)         # step 0: the untrained model

    def after_train(self, run) -> None:
        if self.ring.due(run.step):
            self.ring.offer(run)

    def extras(self, run, fisher: bool = True, run_id: int = 0) -> InspectorExtras:
        self.bins.close_row(run.step)
        now = self.clock()
        if fisher and run.step != self._fisher_step and now - self._fisher_at >= self.fisher_every_s:
            self._fisher, self._fisher_step, self._fisher_at = fisher_for_run(run, n=256), run.step, now
        return InspectorExtras(run.step, self.bins.strip(), self._fisher, tuple(self.ring.steps), run_id)

    def close(self, run) -> None:
        LossBins.detach(run.family)


def custom_spec(kind: str, text: str, quantity: str = "alpha_bar", T: int = 100) -> ScheduleSpec:
    """A schedule the user typed: kind "formula" (an expression in t and T, engines/safe_expr.py)
    or "points" ("t:value, t:value, ..." with t in [0, 1]). Raises ScheduleError with the reason."""
    text = (text or "").strip()
    if kind == "formula":
        spec = ScheduleSpec("formula", int(T), formula=text, quantity=quantity, label=f"{quantity} = {text}")
    elif kind == "points":
        pts = []
        for item in filter(None, (p.strip() for p in text.replace(";", ",").split(","))):
            if ":" not in item:
                raise ScheduleError(f"points: {item!r} is not t:value (e.g. 0:0.01, 1:10)")
            a, b = item.split(":", 1)
            try:
                pts.append((float(a), float(b)))
            except ValueError:
                raise ScheduleError(f"points: {item!r} is not two numbers t:value") from None
        if any(not 0 <= t <= 1 for t, _ in pts):
            raise ScheduleError("points: t must lie in [0, 1]")
        spec = ScheduleSpec("points", int(T), quantity=quantity, points=tuple(pts), label=f"{quantity} points")
    else:
        raise ScheduleError(f"custom kind {kind!r}: formula or points")
    schedule_curves(spec)             # refuse it now, with the reason, rather than when drawn
    return spec
