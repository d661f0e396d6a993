"""Noise schedules on one normalized time axis, and the forward process they define.

Every schedule becomes a `ScheduleCurves`: its levels at normalized times t in (0, 1] with four
curves, so that a DDPM beta schedule, an NCSN sigma ladder and the Karras grid can be overlaid:

  VP (DDPM, Ho et al. 2020 eq. 4):  q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)
  VE (NCSN / Karras et al. 2022):    q(x_t | x_0) = N(x_0, sigma_t^2 I)
  log-SNR  lambda_t = log(abar_t / (1 - abar_t)) = -2 log sigma_t      (Kingma et al. 2021)
  sigma_t  = sqrt((1 - abar_t) / abar_t): x_t / sqrt(abar_t) = x_0 + sigma_t eps, the VE view
             of a VP process (Karras et al. 2022, sec. 2; Song et al. 2021 appendix B)

A VE schedule gets the alpha-bar and beta of the VP process with the same SNR,
abar = 1 / (1 + sigma^2), beta_i = 1 - abar_i / abar_{i-1}; a VP schedule gets its sigma.
Discrete VP schedules put step i = 1..T at t = i / T; ladders of L levels run from the
smallest sigma at t = 0 to the largest at t = 1.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from . import schedules as sch
from .safe_expr import ExpressionError, evaluate

VP_KINDS = ("linear", "scaled_linear", "quadratic", "cosine", "sigmoid")
LADDER_KINDS = ("ve_geometric", "karras")
CUSTOM_KINDS = ("formula", "points")
SCHEDULE_KINDS = VP_KINDS + LADDER_KINDS + CUSTOM_KINDS
QUANTITIES = ("alpha_bar", "beta", "log_snr", "sigma")   # what a custom formula / points give
_ABAR_CLIP = 1e-12   # custom alpha-bar kept in [1e-12, 1 - 1e-12] so log-SNR stays finite


class ScheduleError(ValueError):
    """A schedule that cannot be built; the message names the field and a usable value."""


@dataclass(frozen=True)
class ScheduleSpec:
    """One schedule to inspect. `T` is the number of steps (VP kinds, custom) or of levels (ladders)."""
    kind: str = "linear"
    T: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    scale_betas: bool = False     # the DDPM family's beta -> beta * 1000 / T (keeps abar_T tiny for small T)
    sigma_min: float = 0.01
    sigma_max: float = 50.0
    rho: float = 7.0              # Karras et al. 2022 eq. 5
    formula: str = ""             # kind "formula": an expression in t (and T), see engines/safe_expr.py
    quantity: str = "alpha_bar"   # what the formula or the points give, one of QUANTITIES
    points: tuple = ()            # kind "points": ((t, value), ...), t in [0, 1]
    label: str = ""

    @property
    def name(self) -> str:
        if self.label:
            return self.label
        if self.kind in VP_KINDS:
            return f"{self.kind} T={self.T}" + (" scaled" if self.scale_betas else "")
        if self.kind in LADDER_KINDS:
            return f"{self.kind} L={self.T} [{self.sigma_min:g}, {self.sigma_max:g}]"
        return f"{self.kind}: {self.formula or self.quantity}"

    @property
    def process(self) -> str:
        """'ve' (x_t = x_0 + sigma z) for ladders and custom sigmas; 'vp' otherwise."""
        if self.kind in LADDER_KINDS or (self.kind in CUSTOM_KINDS and self.quantity == "sigma"):
            return "ve"
        return "vp"


@dataclass(frozen=True)
class ScheduleCurves:
    """A schedule's levels on normalized time; arrays (n,), t ascending in (0, 1]."""
    label: str
    process: str             # "vp" or "ve"
    t: np.ndarray
    beta: np.ndarray
    alpha_bar: np.ndarray
    log_snr: np.ndarray
    sigma: np.ndarray        # noise-to-signal sigma_t (VE: the level itself)

    def alpha_std(self, t: float) -> tuple[float, float]:
        """(alpha, std) of x_t = alpha x_0 + std z at normalized time t: log-SNR interpolated
        linearly between levels, t = 0 is the clean data."""
        if t <= 0:
            return 1.0, 0.0
        lam = float(np.interp(t, self.t, self.log_snr))
        if self.process == "ve":
            return 1.0, math.exp(-lam / 2)
        abar = 1.0 / (1.0 + math.exp(-lam))
        return math.sqrt(abar), math.sqrt(1.0 - abar)

    def as_dict(self) -> dict:
        return dict(t=self.t, beta=self.beta, alpha_bar=self.alpha_bar, log_snr=self.log_snr, sigma=self.sigma)


def _from_alpha_bar(spec, t, abar) -> ScheduleCurves:
    abar = np.asarray(abar, dtype=np.float64)
    prev = np.concatenate([[1.0], abar[:-1]])
    beta = 1.0 - abar / prev
    lam = np.log(abar) - np.log1p(-abar)
    return ScheduleCurves(spec.name, spec.process, np.asarray(t, np.float64), beta, abar, lam, np.exp(-lam / 2))


def _from_sigma(spec, t, sigma) -> ScheduleCurves:
    sigma = np.asarray(sigma, dtype=np.float64)
    return _from_alpha_bar(spec, t, 1.0 / (1.0 + sigma ** 2))


def _vp_betas(spec: ScheduleSpec) -> torch.Tensor:
    scale = 1000.0 / spec.T if spec.scale_betas else 1.0
    return sch.betas(spec.kind, spec.T, spec.beta_start * scale, min(spec.beta_end * scale, 0.999))


def _custom_values(spec: ScheduleSpec, t: np.ndarray) -> np.ndarray:
    if spec.kind == "formula":
        try:
            v = evaluate(spec.formula, t=t, T=float(spec.T))
        except ExpressionError as e:
            raise ScheduleError(f"formula: {e}") from None
        v = np.broadcast_to(v, t.shape).astype(np.float64)
    else:
        pts = np.asarray(spec.points, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 2:
            raise ScheduleError("points: give at least two (t, value) pairs")
        pts = pts[np.argsort(pts[:, 0])]
        if spec.quantity == "sigma":  # a ladder is drawn in log-sigma
            if (pts[:, 1] <= 0).any():
                raise ScheduleError("points: sigma values must be positive")
            v = np.exp(np.interp(t, pts[:, 0], np.log(pts[:, 1])))
        else:
            v = np.interp(t, pts[:, 0], pts[:, 1])
    bad = ~np.isfinite(v)
    if bad.any():
        raise ScheduleError(f"{spec.quantity}(t) is not finite at t = {t[bad][0]:.3g}; change the formula")
    return v


def _custom_curves(spec: ScheduleSpec) -> ScheduleCurves:
    t = np.arange(1, spec.T + 1, dtype=np.float64) / spec.T                  # (T,)
    v = _custom_values(spec, t)
    q = spec.quantity
    if q == "sigma":
        if (v <= 0).any():
            raise ScheduleError(f"sigma(t) must be positive; it is {v.min():.3g} at t = {t[v.argmin()]:.3g}")
        return _from_sigma(spec, t, v)
    if q == "beta":
        if ((v <= 0) | (v >= 1)).any():
            raise ScheduleError("beta(t) must lie in (0, 1) at every step")
        abar = np.cumprod(1.0 - v)
    elif q == "log_snr":
        abar = 1.0 / (1.0 + np.exp(-v))
    elif q == "alpha_bar":
        abar = v
        out = (abar < 0) | (abar > 1)
        if out.any():
            i = int(np.argmax(out))
            raise ScheduleError(f"alpha_bar(t) must lie in [0, 1]; it is {abar[i]:.3g} at t = {t[i]:.3g}")
    else:
        raise ScheduleError(f"quantity {q!r}: choose one of {', '.join(QUANTITIES)}")
    abar = np.clip(abar, _ABAR_CLIP, 1 - _ABAR_CLIP)
    rise = np.diff(abar) > 1e-12
    if rise.any():
        raise ScheduleError(f"alpha_bar(t) must not increase with t; it rises after t = {t[int(np.argmax(rise))]:.3g}")
    return _from_alpha_bar(spec, t, abar)


def schedule_curves(spec: ScheduleSpec) -> ScheduleCurves:
    """The four curves of a schedule on normalized time (see the module docstring)."""
    if spec.kind not in SCHEDULE_KINDS:
        raise ScheduleError(f"kind {spec.kind!r}: choose one of {', '.join(SCHEDULE_KINDS)}")
    if not (1 <= int(spec.T) <= 100_000):
        raise ScheduleError(f"T = {spec.T}: use between 1 and 100000 steps or levels")
    if spec.kind in VP_KINDS:
        if spec.kind != "cosine" and not (0 < spec.beta_start < spec.beta_end < 1):
            raise ScheduleError(f"need 0 < beta_start < beta_end < 1, got {spec.beta_start:g} and {spec.beta_end:g}")
        b = _vp_betas(spec)
        t = np.arange(1, spec.T + 1, dtype=np.float64) / spec.T
        return _from_alpha_bar(spec, t, sch.alphas_cumprod(b).numpy())
    if spec.kind in LADDER_KINDS:
        if not (0 < spec.sigma_min < spec.sigma_max):
            raise ScheduleError(f"need 0 < sigma_min < sigma_max, got {spec.sigma_min:g} and {spec.sigma_max:g}")
        if spec.T < 2:
            raise ScheduleError("a ladder needs at least 2 levels")
        if spec.kind == "ve_geometric":
            s = sch.geometric_sigmas(spec.sigma_max, spec.sigma_min, spec.T)
        else:
            s = sch.karras_sigmas(spec.T, spec.sigma_min, spec.sigma_max, spec.rho)[:-1]  # drop the final 0
        sigma = s.double().numpy()[::-1].copy()                                         # ascending in t
        return _from_sigma(spec, np.linspace(0.0, 1.0, spec.T), sigma)
    return _custom_curves(spec)


STANDARD_SPECS = (
    ScheduleSpec("linear", 1000),
    ScheduleSpec("scaled_linear", 1000, beta_start=8.5e-4, beta_end=0.012),
    ScheduleSpec("cosine", 1000),
    ScheduleSpec("sigmoid", 1000, beta_end=0.02),
    ScheduleSpec("ve_geometric", 20, sigma_min=0.01, sigma_max=50.0),
    ScheduleSpec("karras", 40, sigma_min=0.002, sigma_max=80.0),
)
"""The overlay's reference schedules, each at the settings its paper uses (Ho et al. 2020;
Stable Diffusion's scaled-linear; Nichol & Dhariwal 2021; GeoDiff's sigmoid; NCSN ladder;
Karras et al. 2022 with sigma in [0.002, 80])."""


def with_fix(spec: ScheduleSpec, **changes) -> ScheduleSpec:
    """The same schedule with some fields changed (warnings propose these)."""
    return replace(spec, label="", **changes)


# ----------------------------------------------------------------------------- forward process

@dataclass(frozen=True)
class ForwardSample:
    """x_t = alpha x_0 + std z for every data point, at one normalized time."""
    t: float
    alpha: float
    std: float
    x: np.ndarray            # (N, *data_shape), the coordinates of the data given


def forward_process(curves: ScheduleCurves, data, t: float, seed: int = 0) -> ForwardSample:
    """Noise the data to normalized time t with the schedule (the same z for the same seed,
    so two schedules side by side differ only by their alpha and std)."""
    x0 = torch.as_tensor(np.asarray(data), dtype=torch.float64)
    g = torch.Generator().manual_seed(int(seed))
    z = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    a, s = curves.alpha_std(float(t))
    return ForwardSample(float(t), a, s, (a * x0 + s * z).numpy())


# ----------------------------------------------------------------------------- from a family

def spec_from_family(family) -> ScheduleSpec | None:
    """The schedule a noise-based family trains with, or None when it has no schedule
    (one fixed sigma, or no noise). Read from the family's config fields by name."""
    cfg = getattr(family, "cfg", None)
    name = getattr(family, "name", "")
    if cfg is None:
        return None
    if hasattr(cfg, "schedule") and hasattr(cfg, "T") and cfg.schedule in VP_KINDS:
        return ScheduleSpec(cfg.schedule, int(cfg.T), float(getattr(cfg, "beta_start", 1e-4)),
                            float(getattr(cfg, "beta_end", 0.02)), bool(getattr(cfg, "scale_betas", False)),
                            label=f"{name} (this run)")
    if hasattr(cfg, "n_levels") and hasattr(cfg, "sigma_min") and hasattr(cfg, "sigma_max"):
        return ScheduleSpec("ve_geometric", int(cfg.n_levels), sigma_min=float(cfg.sigma_min),
                            sigma_max=float(cfg.sigma_max), label=f"{name} (this run)")
    sde = getattr(cfg, "sde", None)
    if sde == "vp":
        # the VP SDE is DDPM's chain in the limit: beta_i = beta(i/N) / N for N = 1000 steps
        # (Song et al. 2021 appendix B); linear in t, so the linear kind with these ends
        n = 1000
        return ScheduleSpec("linear", n, cfg.beta_min / n, cfg.beta_max / n, label=f"{name} VP SDE (this run)")
    if sde == "ve":
        return ScheduleSpec("ve_geometric", 1000, sigma_min=float(cfg.sigma_min), sigma_max=float(cfg.sigma_max),
                            label=f"{name} VE SDE (this run)")
    return None
