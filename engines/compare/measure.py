"""What the comparison table measures on one Run: sampling cost (network evaluations and wall
time per sample batch), quality (x iid, from Run.evaluate), NLL with its unit, parameters, and
the training time at which a target quality was first reached."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from .table import Row

# Run.evaluate's quality key, newest name first (the unbiased x-iid score of issue 8)
QUALITY_KEYS = ("x_iid", "quality_x_iid", "energy_distance_x_iid")


def quality_of(metrics: dict) -> float | None:
    """The x-iid quality in an evaluation dict (1 = as close as fresh data; lower is better)."""
    for k in QUALITY_KEYS:
        v = metrics.get(k)
        if v is not None:
            return float(v)
    return None


class NFECounter:
    """Counts network evaluations: outermost calls into any module of `net` (a forward into a
    sub-network from outside the root, as a GAN's generator or a flow's layers are called,
    counts; the nested calls inside one forward do not)."""

    def __init__(self, net: torch.nn.Module | None):
        self.calls = 0
        self._depth = 0
        self._handles = []
        self.net = net

    def _pre(self, module, args):
        if self._depth == 0:
            self.calls += 1
        self._depth += 1

    def _post(self, module, args, out):
        self._depth = max(0, self._depth - 1)

    def __enter__(self):
        self.calls, self._depth = 0, 0
        if self.net is not None:
            for m in self.net.modules():
                self._handles.append(m.register_forward_pre_hook(self._pre))
                self._handles.append(m.register_forward_hook(self._post))
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles.clear()
        return False


@dataclass(frozen=True)
class SampleMeasure:
    samples: torch.Tensor        # (n, *shape) data coordinates
    nfe: float | None            # network evaluations per sample (None: no network, no steps)
    seconds: float               # wall time for the whole batch
    metrics: dict                # Run.evaluate's dict


def measure_sampling(run, n: int, seed: int, clock=time.perf_counter) -> SampleMeasure:
    """Sample n points from the run's sampler with a shared seed; count NFE and time it.
    One batched call evaluates the network once per sample, so NFE per sample = outermost
    calls; a family with no network (the exact oracle) counts its sampler steps instead."""
    steps = [0]

    def count(_info):
        steps[0] += 1
    fam = run.family
    with NFECounter(getattr(fam, "model", None)) as counter:
        t0 = clock()
        x = run.sample(n, seed=seed, callback=count)
        dt = clock() - t0
    nfe = counter.calls or steps[0] or None
    return SampleMeasure(x, None if nfe is None else float(nfe), dt, run.evaluate(x))


def parameters(run) -> int:
    net = getattr(run.family, "net", None)
    return int(sum(p.numel() for p in net.parameters())) if net is not None else 0


POINT_UNIT = "nats per point (data units)"


def nll_of(metrics: dict) -> tuple[float | None, str]:
    """(value, unit) of the NLL in an evaluation dict (Run.evaluate's held-out report: nll_nats or
    bits_per_dim with nll_unit), or (None, "")."""
    unit = metrics.get("nll_unit")
    value = metrics.get("bits_per_dim", metrics.get("nll_nats"))
    if unit is None or value is None or not math.isfinite(float(value)):
        return None, ""
    return float(value), str(unit)


def nll(run, n: int = 256) -> tuple[float | None, str]:
    """The run's held-out NLL with its unit: the Run's own report where the family's likelihood is
    cheap (engines.likelihood, via Run.held_out_likelihood); otherwise, for point data and a family
    with any tractable likelihood (a VAE's importance-weighted bound, EM's mixture, a score SDE's
    probability-flow ODE), -log p on n held-out points by the same change of variables
    (likelihood.nll_points: + D log(scale)). (None, "") when there is none."""
    own = getattr(run, "held_out_likelihood", None)
    if own is not None:
        value, unit = nll_of(own(n))
        if value is not None:
            return value, unit
    fam = run.family
    if run.is_image or "likelihood" not in getattr(fam, "capabilities", ()):
        return None, ""
    from ..likelihood import nll_points
    ref = getattr(run, "reference", None)
    x = (ref if ref is not None else run.data)[:n]
    try:
        lp = fam.log_likelihood(run.to_norm(x).to(run.device))      # (n,) nats, normalized units
    except (NotImplementedError, RuntimeError, ValueError):
        return None, ""
    value = nll_points(torch.as_tensor(lp).detach().double(), int(x[0].numel()), run.scale)
    return (value, POINT_UNIT) if math.isfinite(value) else (None, "")


class QualityLog:
    """(training seconds, steps, quality) checkpoints of one run; the first crossing of a target."""

    def __init__(self):
        self.points: list[tuple[float, int, float]] = []

    def add(self, train_seconds: float, steps: int, quality: float | None):
        if quality is not None and math.isfinite(quality):
            self.points.append((float(train_seconds), int(steps), float(quality)))

    def seconds_to(self, target: float) -> float | None:
        for s, _, q in self.points:
            if q <= target:
                return s
        return None

    def steps_to(self, target: float) -> int | None:
        for _, k, q in self.points:
            if q <= target:
                return k
        return None


def make_row(label: str, run, measure: SampleMeasure | None, train_seconds: float, log: QualityLog,
             target: float, nll_value=None, nll_unit: str = "") -> Row:
    """A table row from a run's own numbers (nothing here is recomputed differently for the table)."""
    q = quality_of(measure.metrics) if measure is not None else None
    steps = int(run.step)
    return Row.of(label, run.cfg.family, nll_unit=nll_unit,
                  quality_x_iid=q, nll=nll_value,
                  nfe=measure.nfe if measure is not None else None,
                  sample_seconds=measure.seconds if measure is not None else None,
                  steps_per_s=(steps / train_seconds) if train_seconds > 0 and steps else None,
                  steps=steps, train_seconds=train_seconds, parameters=parameters(run) or None,  # 0: no trained net
                  seconds_to_target=log.seconds_to(target))
