"""One scrubber for several runs' sampler trajectories, in sampler time.

Runs that sample with different step counts (DDPM at T=100 and DDIM at 10 steps, an NCSN ladder
of 10 levels x 30 steps) are aligned by noise level: every frame that carries a positive sigma
(the noise-to-signal ratio sigma = s/alpha, the variance-exploding coordinate that DDPM's
sqrt((1 - abar_t)/abar_t), NCSN's sigma_i and the SDEs' s(t)/alpha(t) share; Karras et al. 2022,
sec. 2) is placed on one log-sigma axis from the largest sigma of any run down to the smallest.
A scrubber position p in [0, 1] names the target sigma exp((1-p) log sigma_hi + p log sigma_lo);
each run shows its frame nearest to it in log sigma. Runs without noise levels (plain Langevin,
a flow's or GAN's one pass) are aligned by their own step fraction p. p = 1 is every run's final
frame. Labels speak each run's own time: t for diffusions, sigma for NCSN, the step for Langevin.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Axis:
    """How one trajectory sits on the shared scrubber: kind "sigma" (log_sigma (F,), -inf where a
    frame has no positive noise level) or "step" (frames aligned by step fraction)."""
    kind: str
    log_sigma: np.ndarray
    n_frames: int


def _arr(traj, name) -> np.ndarray:
    v = traj.get(name) if isinstance(traj, dict) else getattr(traj, name, None)
    return np.asarray([] if v is None else v, dtype=float).reshape(-1)


MARGINAL_STD_SAMPLERS = ("euler_maruyama", "pc", "ode")   # report the marginal std s(t), not s/alpha


def marginal_kind(cfg) -> str | None:
    """"vp" / "subvp" when a run's sampler reports the marginal std s(t) of a VP / sub-VP SDE (the
    reverse-SDE and probability-flow samplers of score_sde and of the exact oracle), else None."""
    fam, opts = cfg.family, dict(cfg.options or {})
    if fam == "score_sde":
        kind = opts.get("sde", "vp")
    elif fam == "exact":
        kind = opts.get("process", "vp")
    else:
        return None
    sampler = cfg.sampler or ("euler_maruyama" if fam == "score_sde" or kind in ("vp", "ve", "subvp") else "")
    return kind if kind in ("vp", "subvp") and sampler in MARGINAL_STD_SAMPLERS else None


def ve_sigma(sigma: np.ndarray, kind: str | None) -> np.ndarray:
    """The noise-to-signal ratio s/alpha from a marginal std s: VP has alpha^2 + s^2 = 1, so
    s/alpha = s / sqrt(1 - s^2); sub-VP has s = 1 - alpha^2 (Song et al. 2021, eq. 29), so
    s/alpha = s / sqrt(1 - s)."""
    sigma = np.asarray(sigma, dtype=float)
    if kind == "vp":
        return sigma / np.sqrt(np.clip(1 - sigma ** 2, 1e-300, None))
    if kind == "subvp":
        return sigma / np.sqrt(np.clip(1 - sigma, 1e-300, None))
    return sigma


def axis_of(traj, kind: str | None = None) -> Axis:
    """The scrubber axis of a trajectory (anything with i, t, sigma arrays, e.g. messages.Trajectory);
    kind: see marginal_kind."""
    sig = ve_sigma(_arr(traj, "sigma"), kind)
    frames = getattr(traj, "frames", None) if not isinstance(traj, dict) else traj.get("frames")
    n = len(frames) if frames is not None else max(len(sig), len(_arr(traj, "i")))
    pos = np.isfinite(sig) & (sig > 0)
    if pos.sum() >= 2 and np.ptp(np.log(sig[pos])) > 1e-9:
        log_sigma = np.full(n, -np.inf)
        log_sigma[: len(sig)][pos] = np.log(sig[pos])
        return Axis("sigma", log_sigma, n)
    return Axis("step", np.full(n, -np.inf), n)


class Scrubber:
    """Aligns several trajectories; `frames(p)` gives each run's frame index (None: no trajectory)."""

    def __init__(self, trajectories, kinds=None):
        self.trajectories = list(trajectories)
        kinds = list(kinds) if kinds is not None else [None] * len(self.trajectories)
        self.axes = [None if t is None else axis_of(t, k) for t, k in zip(self.trajectories, kinds)]
        finite = [a.log_sigma[np.isfinite(a.log_sigma)] for a in self.axes if a is not None and a.kind == "sigma"]
        if finite:
            self.log_hi = float(max(f.max() for f in finite))
            self.log_lo = float(min(f.min() for f in finite))
        else:
            self.log_hi = self.log_lo = math.nan

    def target_sigma(self, p: float) -> float:
        """The noise level a position names (nan when no run has noise levels)."""
        p = min(max(float(p), 0.0), 1.0)
        return math.exp((1 - p) * self.log_hi + p * self.log_lo) if math.isfinite(self.log_hi) else math.nan

    def frame(self, run: int, p: float) -> int | None:
        a = self.axes[run]
        if a is None or a.n_frames == 0:
            return None
        p = min(max(float(p), 0.0), 1.0)
        if p >= 1.0:
            return a.n_frames - 1
        if a.kind == "step":
            return int(round(p * (a.n_frames - 1)))
        target = math.log(self.target_sigma(p))
        ls = a.log_sigma
        ok = np.isfinite(ls)
        dist = np.where(ok, np.abs(ls - target), np.inf)
        return int(np.argmin(dist))

    def frames(self, p: float) -> list:
        return [self.frame(r, p) for r in range(len(self.axes))]

    def label(self, run: int, p: float) -> str:
        """The run's own sampler time at its aligned frame: t=.., sigma=.. or step k."""
        f = self.frame(run, p)
        if f is None:
            return ""
        traj = self.trajectories[run]
        t, sig, i = _arr(traj, "t"), _arr(traj, "sigma"), _arr(traj, "i")
        if f < len(t) and np.isfinite(t[f]):
            tv = t[f]
            return f"t={int(tv)}" if float(tv).is_integer() else f"t={tv:.3g}"
        if self.axes[run].kind == "sigma" and f < len(sig) and np.isfinite(sig[f]):
            return f"\u03c3={sig[f]:.3g}"
        step = int(i[f]) + 1 if f < len(i) and np.isfinite(i[f]) else f
        total = int(i[-1]) + 1 if len(i) and np.isfinite(i[-1]) else self.axes[run].n_frames
        return f"step {step}/{total}"
