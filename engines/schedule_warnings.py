"""Warnings about a noise schedule for a given dataset, each naming its fix.

  prior_mismatch    VP: alpha-bar_T far from 0, so x_T ~ q(x_T) is not the N(0, I) the sampler
                    starts from; the KL(q(x_T) || N(0, I)) says by how much.
  sigma_max_small   VE: sigma_max below the data's largest pairwise distance (Song & Ermon 2020,
                    "Improved Techniques for Training Score-Based Generative Models", technique 1).
  too_few_levels    VE: the ratio between neighbouring levels exceeds the gamma of technique 2 of
                    the same paper: a sample at level i must fall in the high-density shell of level
                    i-1 with probability about 1/2. It is a criterion for Langevin dynamics hopping
                    down a ladder (NCSN, Karras grids); a VP chain's ancestral steps are Gaussian
                    transitions it does not describe (in 784-D it would flag DDPM's first steps).
  sigma_min_coarse  the smallest noise level is coarser than the data's own detail (the spacing of
                    neighbouring data points), so the last denoising step blurs the data.

All measures are taken in the coordinates of the data given (pass the data the model sees: the
Run's normalized `train_data`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import optimize, special

from .data.mixture import GaussianMixture
from .schedule_inspect import LADDER_KINDS, VP_KINDS, ScheduleCurves, ScheduleSpec, schedule_curves, with_fix

PRIOR_ALPHA_BAR_MAX = 1e-2   # abar_T above this keeps sqrt(abar_T) > 10% of the data in x_T
DETAIL_POINTS = 1000         # the data's detail is measured at this many points (a fixed resolution)
DETAIL_QUANTILE = 0.9        # ... as this quantile of the nearest-neighbour distances
SHELL_OVERLAP = 0.5          # technique 2's target probability
SHELL_TAIL = 0.5 * math.erfc(3 / math.sqrt(2))  # the "3 standard deviations" shell: Phi(-3)


@dataclass(frozen=True)
class DataGeometry:
    """What the warnings need from a dataset (N, *shape), computed once."""
    dim: int
    max_pairwise: float          # largest ||x_i - x_j|| over the points
    detail: float                # DETAIL_QUANTILE of nearest-neighbour distances among DETAIL_POINTS points
    points: np.ndarray           # (n, D) float64, a fixed subsample (the empirical law for the KL)


@dataclass(frozen=True)
class ScheduleWarning:
    code: str                    # prior_mismatch | sigma_max_small | too_few_levels | sigma_min_coarse
    title: str
    detail: str                  # what was measured
    fix: str                     # what to change, with the value to use
    measured: float
    limit: float


def data_geometry(data, max_points: int = 2000, seed: int = 0) -> DataGeometry:
    """Largest pairwise distance (on up to max_points points), nearest-neighbour detail and a
    subsample of the data (N, *shape), flattened to (n, D)."""
    x = torch.as_tensor(np.asarray(data), dtype=torch.float64).reshape(len(data), -1)
    if len(x) < 2:
        raise ValueError("the data needs at least 2 points")
    g = torch.Generator().manual_seed(seed)
    sub = x[torch.randperm(len(x), generator=g)[:max_points]]                 # (n, D)
    far = max(float(torch.cdist(blk, sub).max()) for blk in sub.split(512))
    few = sub[:DETAIL_POINTS]
    d = torch.cdist(few, few)
    d.fill_diagonal_(float("inf"))
    detail = float(torch.quantile(d.min(1).values, DETAIL_QUANTILE))
    return DataGeometry(int(x.shape[1]), far, detail, sub[:DETAIL_POINTS].numpy())


# ----------------------------------------------------------------------------- prior KL

def prior_kl(points, alpha: float, std: float, prior_std: float = 1.0, n_samples: int = 4000,
             seed: int = 0) -> float:
    """KL(q(x_T) || N(0, prior_std^2 I)) in nats, where q(x_T) is the law of alpha x_0 + std z
    with x_0 drawn from the points (n, D): the mixture (1/n) sum_i N(alpha x_i, std^2 I), whose
    log-density is exact, so the Monte-Carlo estimate E_q[log q - log p] has only sampling
    error. With a single point it is the Gaussian closed form."""
    pts = torch.as_tensor(np.asarray(points), dtype=torch.float32)
    if std <= 0:
        return math.inf
    q = GaussianMixture(torch.ones(len(pts)), alpha * pts, std)
    x = q.sample(n_samples, seed=seed).double()                               # (S, D)
    d = pts.shape[1]
    log_p = -0.5 * (x ** 2).sum(1) / prior_std ** 2 - 0.5 * d * math.log(2 * math.pi * prior_std ** 2)
    return max(0.0, float((q.log_prob(x.float()).double() - log_p).mean()))


def gaussian_fit_prior_kl(points, alpha: float, std: float, prior_std: float = 1.0) -> float:
    """KL(N(alpha m, alpha^2 C + std^2 I) || N(0, prior_std^2 I)) for the data's mean m and
    covariance C: 0.5 (tr S / p^2 + |mu|^2 / p^2 - D + D log p^2 - log det S). A lower bound
    of the KL of q(x_T) itself (the Gaussian has the largest entropy for given moments)."""
    x = np.asarray(points, dtype=np.float64).reshape(len(points), -1)
    m = x.mean(0)
    lam = np.linalg.eigvalsh(np.atleast_2d(np.cov(x, rowvar=False)))
    s = alpha ** 2 * np.clip(lam, 0, None) + std ** 2                        # eigenvalues of S
    p2 = prior_std ** 2
    d = x.shape[1]
    return float(0.5 * (s.sum() / p2 + alpha ** 2 * (m ** 2).sum() / p2 - d + d * math.log(p2) - np.log(s).sum()))


# ----------------------------------------------------------------------------- technique 2

def _chi_cdf(r, dim: int):
    """P(|z| <= r) for z ~ N(0, I_dim): the regularized lower gamma P(dim/2, r^2/2)."""
    return special.gammainc(dim / 2, np.square(r) / 2)


def shell_overlap(gamma: float, dim: int) -> float:
    """P that |x| of x ~ N(0, I) lies in the central 1 - 2 Phi(-3) shell of N(0, gamma^2 I).
    Song & Ermon 2020 eq. for technique 2 with the chi law exact instead of its Gaussian
    approximation |x| ~ N(sqrt(D), 1/2), so it also holds in 2D."""
    lo = math.sqrt(2 * special.gammaincinv(dim / 2, SHELL_TAIL))
    hi = math.sqrt(2 * special.gammaincinv(dim / 2, 1 - SHELL_TAIL))
    return float(_chi_cdf(gamma * hi, dim) - _chi_cdf(gamma * lo, dim))


def max_level_ratio(dim: int) -> float:
    """The largest sigma_{i-1} / sigma_i whose shells still overlap by SHELL_OVERLAP."""
    if shell_overlap(1.0, dim) <= SHELL_OVERLAP:
        return 1.0
    return float(optimize.brentq(lambda g: shell_overlap(g, dim) - SHELL_OVERLAP, 1.0, 1e6, xtol=1e-9))


def levels_needed(sigma_min: float, sigma_max: float, dim: int) -> int:
    """Geometric levels from sigma_min to sigma_max at the largest allowed ratio."""
    return 1 + math.ceil(math.log(sigma_max / sigma_min) / math.log(max_level_ratio(dim)))


# ----------------------------------------------------------------------------- the warnings

def schedule_warnings(spec: ScheduleSpec, geometry: DataGeometry, curves: ScheduleCurves | None = None,
                      kl_samples: int = 2000) -> list[ScheduleWarning]:
    """Every warning that fires for the schedule on this data, most serious first."""
    c = curves or schedule_curves(spec)
    out = []
    sig = c.sigma
    if c.process == "vp":
        abar_T = float(c.alpha_bar[-1])
        if abar_T > PRIOR_ALPHA_BAR_MAX:
            a, s = math.sqrt(abar_T), math.sqrt(1 - abar_T)
            kl = prior_kl(geometry.points, a, s, 1.0, kl_samples)
            out.append(ScheduleWarning(
                "prior_mismatch", "prior mismatch: alpha-bar_T is far from 0",
                f"alpha-bar_T = {abar_T:.3g}: x_T keeps {a:.0%} of the data, and KL(q(x_T) || N(0, I)) = {kl:.3g} nats; "
                "sampling starts from N(0, I), which the model never saw at t = T",
                _prior_fix(spec, abar_T), abar_T, PRIOR_ALPHA_BAR_MAX))
    else:
        smax = float(sig[-1])
        if smax < geometry.max_pairwise:
            kl = prior_kl(geometry.points, 1.0, smax, smax, kl_samples)
            out.append(ScheduleWarning(
                "sigma_max_small", "sigma_max is below the data's largest pairwise distance",
                f"sigma_max = {smax:.3g} < {geometry.max_pairwise:.3g}; KL(q(x_T) || N(0, sigma_max^2 I)) = {kl:.3g} nats, "
                "and Langevin at sigma_max cannot move samples between far-apart modes",
                f"raise sigma_max to at least {geometry.max_pairwise:.3g} (Song & Ermon 2020, technique 1)",
                smax, geometry.max_pairwise))
    live = sig if c.process == "ve" else sig[:0]       # technique 2 is about VE ladders (see above)
    limit = max_level_ratio(geometry.dim)
    worst = _worst_ratio(live)
    if worst > limit:
        lo, hi = float(live[0]), float(live[-1])
        where = float(live[int(np.argmax(live[1:] / live[:-1]))])
        out.append(ScheduleWarning(
            "too_few_levels", "too few noise levels for sigma_max / sigma_min",
            f"neighbouring levels differ by x{worst:.3g} (at sigma = {where:.3g}); in {geometry.dim} dimensions a "
            f"sample at one level falls in the next level's shell with probability 1/2 only up to x{limit:.3g}",
            _levels_fix(spec, lo, hi, geometry.dim, limit) + " (Song & Ermon 2020, technique 2)", worst, limit))
    smin = float(sig[0])
    if smin > geometry.detail:
        out.append(ScheduleWarning(
            "sigma_min_coarse", "the smallest noise level is coarser than the data's detail",
            f"sigma_min = {smin:.3g} > {geometry.detail:.3g}, the spacing of neighbouring data points "
            f"({DETAIL_QUANTILE:.0%} of nearest-neighbour distances among {DETAIL_POINTS} points): samples keep that blur",
            f"lower the smallest level to at most {geometry.detail:.3g}"
            + _smallest_level_knob(spec), smin, geometry.detail))
    return out


def _worst_ratio(sigma: np.ndarray) -> float:
    return float((sigma[1:] / sigma[:-1]).max()) if len(sigma) > 1 else 1.0


def _levels_fix(spec: ScheduleSpec, lo: float, hi: float, dim: int, limit: float) -> str:
    """For a ladder, the smallest number of levels of the same kind whose worst ratio is within
    the limit (bisection on L); otherwise the geometric count."""
    if spec.kind in LADDER_KINDS:
        def ok(n):
            return _worst_ratio(schedule_curves(with_fix(spec, T=n)).sigma) <= limit
        hi_n = max(spec.T, 2)
        while not ok(hi_n) and hi_n < 100_000:
            hi_n *= 2
        lo_n = max(spec.T, 2)
        while lo_n < hi_n:
            mid = (lo_n + hi_n) // 2
            lo_n, hi_n = (lo_n, mid) if ok(mid) else (mid + 1, hi_n)
        return f"use at least {hi_n} levels (now {spec.T})"
    return f"use at least {levels_needed(lo, hi, dim)} levels, geometrically spaced from sigma {lo:.3g} to {hi:.3g}"


def _smallest_level_knob(spec: ScheduleSpec) -> str:
    if spec.kind == "cosine":
        return " (more steps T: the cosine schedule's first step shrinks as 1/T)"
    if spec.kind in VP_KINDS:
        return " (a smaller beta_start)"
    return " (sigma_min)" if spec.kind in LADDER_KINDS else " (the formula's value near t = 0)"


def _prior_fix(spec: ScheduleSpec, abar_T: float) -> str:
    """A concrete fix, with the alpha-bar_T it gives."""
    options = []
    if spec.kind in VP_KINDS and spec.kind != "cosine" and not spec.scale_betas:
        fixed = schedule_curves(with_fix(spec, scale_betas=True)).alpha_bar[-1]
        options.append(f"scale the betas by 1000/T (scale_betas; alpha-bar_T becomes {fixed:.2g})")
    if spec.kind != "cosine":
        cos = schedule_curves(ScheduleSpec("cosine", spec.T)).alpha_bar[-1]
        options.append(f"use the cosine schedule (alpha-bar_T = {cos:.2g})")
    if spec.kind in VP_KINDS and spec.kind != "cosine":
        options.append("raise beta_end")
    if spec.kind not in VP_KINDS:      # a schedule known only by its curve (a run's, a formula)
        options.insert(0, "make alpha-bar reach ~0 at t = 1: larger betas (DDPM: scale_betas multiplies them by 1000/T)")
    return "; or ".join(options) or "make alpha_bar(t) reach 0 at t = 1"
