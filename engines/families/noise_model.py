"""One adapter from every noise-based family to denoiser / score / eps at a noise level
(the idea of k-diffusion's `external.py`; Karras et al. 2022, sec. 2 and Table 1).

Each family noises data its own way, x_t = alpha(t) x0 + s(t) z on its own time axis t (DDPM's
integer steps, an SDE's t in [eps, 1], NCSN's sigma, flow matching's t in [0, 1]), and its network
reads (x_t, t) and predicts eps, the score, x0 or a velocity. Dividing by alpha puts all of them
in one variance-exploding (VE) coordinate system:

    x = x_t / alpha = x0 + sigma z,        sigma = s(t) / alpha(t)

with the same z, so a family only declares its `Process` (alpha, s and the inverse t(sigma)) and
`native_eps(x_t, t)`. From these `NoiseModel` derives, once for all families,

    eps(x, sigma)     = native_eps(alpha x, t(sigma))
    denoise(x, sigma) = x - sigma eps                  (Tweedie: E[x0 | x], Karras eq. 3)
    score(x, sigma)   = -eps / sigma                   (grad log p_sigma(x))

and the samplers written against a denoiser (euler, heun, dpmpp_2m, ddim_sigma, the probability-flow
ODE by RK4 or dopri5) run on every such family. `sample`, `field`, `schedule`, `level_alpha_sigma`
and the sigma grids are implemented here; a family adds only its own samplers (`sample_native`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .. import samplers as S
from .. import schedules as sch
from ..config import opt
from .base import Family


# ----------------------------------------------------------------------------- forward processes


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear interpolation of (xp, fp) at x (xp increasing), clamped to the ends."""
    x = x.clamp(float(xp[0]), float(xp[-1]))
    i = torch.searchsorted(xp, x.contiguous()).clamp(1, len(xp) - 1)
    x0, x1, f0, f1 = xp[i - 1], xp[i], fp[i - 1], fp[i]
    w = (x - x0) / (x1 - x0).clamp(min=1e-300)
    return f0 + w * (f1 - f0)


class Process:
    """x_t = alpha(t) x0 + s(t) z on a native time t in [t_min, t_max], sigma(t) = s/alpha increasing.
    nodes: the sigmas a model was trained at, ascending, when only those (DDPM's integer steps, an
    NCSN ladder): its conditioning was never seen in between, so the model is read at the nearest one
    (k-diffusion's quantize) and sigma grids are snapped to them."""

    axis = "time t"
    nodes: torch.Tensor | None = None

    def __init__(self, t_min: float, t_max: float):
        self.t_min, self.t_max = float(t_min), float(t_max)

    def alpha_s(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def t_of_sigma(self, sigma: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        a, s = self.alpha_s(t)
        return s / a

    def sigma_range(self) -> tuple[float, float]:
        """(sigma_min, sigma_max): the VE levels of t_min and t_max."""
        sig = self.sigma(torch.tensor([self.t_min, self.t_max], dtype=torch.float64))
        return float(sig[0]), float(sig[1])

    def native_times(self, n: int, t_top: float | None = None) -> torch.Tensor:
        """n times from t_top (default t_max) down to t_min, spaced as the family's own samplers space
        them (float64)."""
        return torch.linspace(self.t_max if t_top is None else t_top, self.t_min, n, dtype=torch.float64)

    def prior_std(self, sigma: float | None = None) -> float:
        """std of the start x = x0 + sigma z at sigma (default: the largest level) for standardized data
        (unit variance per coordinate): sqrt(sigma^2 + 1). For VP processes this is exactly their own
        N(0, I) prior (x_t / alpha with 1/alpha^2 = 1 + sigma^2); for VE and the linear path it adds the
        data's variance that sigma z alone leaves out."""
        sigma = self.sigma_range()[1] if sigma is None else float(sigma)
        return math.sqrt(sigma ** 2 + 1.0)

    def snap(self, sigma: torch.Tensor) -> torch.Tensor:
        """The nearest node (in log sigma) to each sigma; sigma itself when the model is continuous."""
        if self.nodes is None:
            return sigma
        nodes = self.nodes.to(device=sigma.device, dtype=torch.float64)
        i = (torch.log(sigma.double()).reshape(-1, 1) - torch.log(nodes).reshape(1, -1)).abs().argmin(1)
        return nodes[i].reshape(sigma.shape).to(sigma.dtype)


class DiscreteVP(Process):
    """DDPM's chain (Ho et al. 2020): x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) z at integer t = 0..T-1,
    sigma_t = sqrt((1 - abar_t) / abar_t). Between integers log sigma is interpolated linearly in t
    (k-diffusion's DiscreteSchedule), so t may be fractional."""

    axis = "step t"

    def __init__(self, abar: torch.Tensor, quantize: bool = True):
        abar = torch.as_tensor(abar, dtype=torch.float64)
        super().__init__(0.0, len(abar) - 1)
        self.log_sigmas = 0.5 * torch.log((1 - abar) / abar)               # (T,) increasing
        self.ts = torch.arange(len(abar), dtype=torch.float64)
        # a net trained at integer steps only (quantize) is read at the nearest one: measured on the
        # moons DDPM, fractional steps through its sinusoidal embedding cost 5-10x iid
        self.nodes = torch.exp(self.log_sigmas) if quantize else None

    def alpha_s(self, t):
        sigma = torch.exp(_interp(t.double(), self.ts, self.log_sigmas))
        a = 1 / torch.sqrt(1 + sigma ** 2)
        return a, sigma * a

    def t_of_sigma(self, sigma):
        return _interp(torch.log(sigma.double()), self.log_sigmas, self.ts)


class SDEProcess(Process):
    """The marginals of a VP, sub-VP or VE SDE (Song et al. 2021, eqs. 29-33) on t in [eps, T], with
    sigma(t) inverted in closed form: VE sigma = smin (smax/smin)^t; VP sigma^2 = e^{B(t)} - 1;
    sub-VP sigma = 2 sinh(B(t)/2), where B(t) = beta_min t + (beta_max - beta_min) t^2 / 2."""

    def __init__(self, sde: sch.SDE, eps: float):
        super().__init__(eps, sde.T)
        self.sde = sde

    def alpha_s(self, t):
        t = t.double()
        mean, std = self.sde.marginal_prob(torch.ones(t.shape[0], 1, dtype=t.dtype), t)
        return mean[:, 0], torch.as_tensor(std, dtype=t.dtype).expand(t.shape[0])

    def t_of_sigma(self, sigma):
        sigma = sigma.double()
        sde = self.sde
        if isinstance(sde, sch.VESDE):
            t = torch.log(sigma / sde.sigma_min) / math.log(sde.sigma_max / sde.sigma_min)
        else:
            B = 2 * torch.asinh(sigma / 2) if isinstance(sde, sch.SubVPSDE) else torch.log1p(sigma ** 2)
            b0, db = sde.beta_min, sde.beta_max - sde.beta_min
            t = 2 * B / (b0 + torch.sqrt(b0 ** 2 + 2 * db * B))   # root of b0 t + db t^2 / 2 = B, stable form
        return t.clamp(self.t_min, self.t_max)


class Ladder(Process):
    """NCSN's perturbation x0 + sigma z (Song & Ermon 2019): the native time is sigma itself,
    geometric between sigma_min and sigma_max."""

    axis = "noise level sigma"

    def alpha_s(self, t):
        return torch.ones_like(t, dtype=torch.float64), t.double()

    def t_of_sigma(self, sigma):
        return sigma.double().clamp(self.t_min, self.t_max)

    def native_times(self, n, t_top=None):
        top = self.t_max if t_top is None else t_top
        return torch.exp(torch.linspace(math.log(top), math.log(self.t_min), n, dtype=torch.float64))


class FixedLevel(Ladder):
    """One noise level (DSM, noisy score matching): every sigma reads the model at that level, so
    only samplers that stay at one level (Langevin) apply."""

    def __init__(self, sigma: float):
        super().__init__(sigma, sigma)


class LinearPath(Process):
    """Flow matching / rectified flow's path x_t = (1 - t) x0 + t z (Lipman et al. 2023; Liu et al.
    2023): alpha = 1 - t, s = t, so sigma = t / (1 - t) and t = sigma / (1 + sigma)."""

    def alpha_s(self, t):
        t = t.double()
        return 1 - t, t

    def t_of_sigma(self, sigma):
        sigma = sigma.double()
        return (sigma / (1 + sigma)).clamp(self.t_min, self.t_max)


# ----------------------------------------------------------------------------- generic sampler options


# The default cap on a grid's first sigma, in standardized units: well above the largest distance
# between two points of the playground's data (2D toys, 8x8 digits), which is all a start needs
# (Song & Ermon 2020, technique 1), while steps spent above it are wasted and a model's x0 error
# grows with sigma. EDM's 80 is for 64x64 images; on the 8gaussians oracle at 10 NFE, starting at 20
# instead of 80 takes dpmpp_2m from 3.0x to 2.0x iid and euler from 4.1x to 2.9x (python main.py lab).
SIGMA_MAX = 20.0
SIGMA_MAX_HELP = ("largest sigma to start from (at most the family's own); above the data's largest pairwise "
                  "distance the start is pure noise anyway, while steps spent there are wasted")


@dataclass
class GridOptions:
    """A sampler on a sigma grid between the family's smallest and largest noise level."""
    steps: int = opt(20, "number of steps (grid points before the final sigma = 0)", lo=1, hi=100000)
    sigma_max: float = opt(SIGMA_MAX, SIGMA_MAX_HELP, "sigma_0 = min(sigma_max, the family's largest sigma)",
                           lo=1e-3, hi=1e6, log=True)
    grid: str = opt("karras", "sigma grid: Karras et al. 2022 eq. 5 (rho = 7, dense at small sigma), equal steps "
                    "in log-SNR (log sigma), or the family's own spacing of its time axis",
                    "karras: sigma_i = (smax^(1/rho) + i/(n-1) (smin^(1/rho) - smax^(1/rho)))^rho;  "
                    "logsnr: log sigma_i evenly spaced", choices=("karras", "logsnr", "native"))


@dataclass
class DPMSolverOptions(GridOptions):
    """DPM-Solver++ on equal log-SNR steps (the "logSNR" step type of Lu et al.'s code): on the
    exact score of 8gaussians and gmm at 5-10 NFE it beats the Karras grid (python main.py lab)."""
    grid: str = opt("logsnr", "sigma grid: Karras et al. 2022 eq. 5, equal steps in log-SNR (log sigma), or the "
                    "family's own spacing of its time axis", "logsnr: log sigma_i evenly spaced",
                    choices=("karras", "logsnr", "native"))


@dataclass
class DDIMSigmaOptions(GridOptions):
    eta: float = opt(0.0, "stochasticity eta: 0 deterministic DDIM, 1 DDPM-like",
                     "sigma_up = eta sqrt(s'^2 (s^2 - s'^2) / s^2) (DDIM eq. 16 in VE coordinates)", lo=0.0, hi=1.0)


@dataclass
class RK4Options(GridOptions):
    steps: int = opt(5, "RK4 steps (4 network calls each, plus one final denoising call)", lo=1, hi=100000)


@dataclass
class Dopri5Options:
    sigma_max: float = opt(SIGMA_MAX, SIGMA_MAX_HELP, lo=1e-3, hi=1e6, log=True)
    rtol: float = opt(1e-3, "relative tolerance (sets the number of network calls)", lo=1e-8, hi=1.0, log=True)
    atol: float = opt(1e-3, "absolute tolerance", lo=1e-8, hi=1.0, log=True)


# the samplers every family with a range of noise levels gets, name -> options
GENERIC_SAMPLERS = {
    "euler": GridOptions,
    "heun": GridOptions,
    "dpmpp_2m": DPMSolverOptions,
    "ddim_sigma": DDIMSigmaOptions,
    "ode_rk4": RK4Options,
    "ode_dopri5": Dopri5Options,
}


def steps_for_nfe(name: str, nfe: int) -> int | None:
    """Steps of a generic grid sampler that spend at most `nfe` network calls (None: it cannot)."""
    if name == "heun":                        # 2 n - 1
        n = (nfe + 1) // 2
    elif name == "ode_rk4":                   # 4 n + 1: n RK4 intervals, then the final denoising call
        n = (nfe - 1) // 4
    else:
        n = nfe
    return n if n >= 1 else None


class NoiseModel(Family):
    """Base of the noise-based families. A subclass sets `self.process` (a Process) in __init__ and
    implements `native_eps(x_t, t)`; it lists its own samplers in `native_samplers` and runs them in
    `sample_native`. `samplers` = native + the generic ones when the family spans a range of levels."""

    native_samplers: dict = {}
    process: Process

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if "native_samplers" in cls.__dict__ and "samplers" not in cls.__dict__:
            cls.samplers = {**cls.native_samplers, **GENERIC_SAMPLERS}

    # ---------------------------------------------------------------- the family's side
    def native_eps(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The model's noise prediction at native time t (N,) for x_t (N, *shape)."""
        raise NotImplementedError

    def sample_native(self, name, options, n, generator=None, callback=None) -> torch.Tensor:
        raise NotImplementedError(f"{self.name} has no sampler {name!r}")

    # ---------------------------------------------------------------- the adapter
    def eps(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """eps-hat for x = x0 + sigma z (VE coordinates), sigma (N,); a model trained at discrete levels
        is read at the nearest one (Process.snap)."""
        sigma = torch.as_tensor(sigma, device=x.device).reshape(-1).expand(x.shape[0])
        t = self.process.t_of_sigma(self.process.snap(sigma))               # (N,) float64
        a, _ = self.process.alpha_s(t)
        a = sch.append_dims(a.to(device=x.device, dtype=x.dtype), x.ndim)
        return self.native_eps(a * x, t.to(device=x.device, dtype=x.dtype))

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """x0-hat = E[x0 | x0 + sigma z = x] = x - sigma eps-hat (Tweedie; Karras et al. 2022, eq. 3)."""
        sigma = torch.as_tensor(sigma, device=x.device, dtype=x.dtype).reshape(-1).expand(x.shape[0])
        return x - sch.append_dims(sigma, x.ndim) * self.eps(x, sigma)

    def score(self, x: torch.Tensor, sigma=None) -> torch.Tensor:
        """grad_x log p_sigma(x) = -eps-hat / sigma for the data blurred by N(0, sigma^2 I); sigma None:
        the level the field shows by default."""
        if sigma is None:
            sigma = float(self.process.sigma(torch.tensor([self._t(None)], dtype=torch.float64))[0])
        sigma = torch.as_tensor(sigma, device=x.device, dtype=x.dtype).reshape(-1).expand(x.shape[0])
        return -self.eps(x, sigma) / sch.append_dims(sigma, x.ndim)

    # ---------------------------------------------------------------- sigma grids and sampling
    def applicable_samplers(self) -> list[str]:
        lo, hi = self.process.sigma_range()
        return [k for k in self.samplers if k not in GENERIC_SAMPLERS or hi > lo]

    def top_sigma(self, sigma_max: float | None = SIGMA_MAX) -> float:
        """The grid's first sigma: the family's largest, capped at sigma_max (snapped to a node)."""
        lo, hi = self.process.sigma_range()
        if hi <= lo:
            raise ValueError(f"{self.name} has one noise level (sigma = {lo:g}): no sigma grid to walk; "
                             f"use {', '.join(self.native_samplers)}")
        top = hi if sigma_max is None else max(min(hi, float(sigma_max)), lo)
        return float(self.process.snap(torch.tensor([top], dtype=torch.float64))[0])

    def sigma_grid(self, steps: int, grid: str = "karras", rk4: bool = False, sigma_max: float | None = SIGMA_MAX
                   ) -> torch.Tensor:
        """Descending sigmas ending in 0 (float64): steps + 1 entries, or steps + 2 for rk4 (steps RK4
        intervals between positive sigmas). On a model with nodes they are snapped to the nodes and
        repeats dropped, so there may be fewer (`nfe_of` counts them)."""
        n = steps + 1 if rk4 else steps
        lo, hi = self.process.sigma_range()[0], self.top_sigma(sigma_max)
        if grid == "karras":
            s = sch.karras_sigmas(n, lo, hi).double()[:-1]
        elif grid == "logsnr":
            s = torch.exp(torch.linspace(math.log(hi), math.log(lo), n, dtype=torch.float64))
        else:
            t_top = float(self.process.t_of_sigma(torch.tensor([hi], dtype=torch.float64))[0])
            s = self.process.sigma(self.process.native_times(n, t_top))
        if self.process.nodes is not None:
            s = torch.unique(self.process.snap(s)).flip(0)                   # descending, no repeats
        return torch.cat([s, torch.zeros(1, dtype=torch.float64)])

    def nfe_of(self, sampler: str, options) -> int | None:
        """Model evaluations a generic grid sampler spends with these options (None: adaptive, or not generic)."""
        if sampler not in GENERIC_SAMPLERS or sampler == "ode_dopri5":
            return None
        n = len(self.sigma_grid(options.steps, options.grid, sampler == "ode_rk4", options.sigma_max)) - 1
        return {"heun": 2 * n - 1, "ode_rk4": 4 * (n - 1) + 1}.get(sampler, n)

    def sample(self, n, sampler=None, options=None, generator=None, callback=None):
        name, o = self.sampler_options(sampler, options)
        if name not in GENERIC_SAMPLERS:
            return self.sample_native(name, o, n, generator, callback)
        cb = self._native_callback(callback)
        if name == "ode_dopri5":
            lo, hi = self.process.sigma_range()[0], self.top_sigma(o.sigma_max)
            x = self.process.prior_std(hi) * torch.randn((n,) + self.data_shape, generator=generator, device=self.device)
            return S.pf_ode_dopri5(self.denoise, x, hi, lo, o.rtol, o.atol, generator, cb)
        sig = self.sigma_grid(o.steps, o.grid, rk4=name == "ode_rk4", sigma_max=o.sigma_max)
        x = self.process.prior_std(float(sig[0])) * torch.randn((n,) + self.data_shape, generator=generator,
                                                                device=self.device)
        fn = {"euler": S.euler, "heun": S.heun, "dpmpp_2m": S.dpmpp_2m, "ode_rk4": S.pf_ode_rk4}.get(name)
        if fn is not None:
            return fn(self.denoise, x, sig, generator, cb)
        return S.ddim_sigma(self.denoise, x, sig, o.eta, generator, cb)

    def _native_callback(self, callback):
        """Report generic samplers' steps in the family's own coordinates: x_t = alpha x and its time t."""
        if callback is None:
            return None

        def cb(info):
            sigma = torch.tensor([max(float(info["sigma"]), 0.0)], dtype=torch.float64)
            info = dict(info)
            if float(sigma) > 0:
                t = self.process.t_of_sigma(sigma)
                a = float(self.process.alpha_s(t)[0][0])
                info["x"], info["t"] = info["x"] * a, float(t[0])
            else:
                info["t"] = self.process.t_min
            callback(info)
        return cb

    def budget_options(self, sampler: str, nfe: int) -> dict | None:
        """Options that make `sampler` spend at most `nfe` network calls, as many as it can (the sampler
        lab's budgets), or None when it cannot. Generic grid samplers here; families add their own."""
        if sampler not in GENERIC_SAMPLERS or sampler == "ode_dopri5":
            return None
        steps = steps_for_nfe(sampler, nfe)
        if steps is None:
            return None
        cls = self.samplers[sampler]
        # snapping to nodes can merge grid points: take more steps while the cost stays in budget
        while steps < 4 * nfe and self.nfe_of(sampler, cls(steps=steps + 1)) <= nfe:
            steps += 1
        return dict(steps=steps)

    def sampler_levels(self, sampler, options):
        """The noise std s(t) of x_t at each step of a generic grid sampler (None when adaptive)."""
        name = sampler or self.default_sampler
        steps = getattr(options, "steps", None)
        if name not in GENERIC_SAMPLERS or steps is None or self.process.sigma_range()[1] <= self.process.sigma_range()[0]:
            return None
        sig = self.sigma_grid(steps, getattr(options, "grid", "karras"), name == "ode_rk4",
                              getattr(options, "sigma_max", SIGMA_MAX))[:-1]
        return self.process.alpha_s(self.process.t_of_sigma(sig))[1].numpy()

    # ---------------------------------------------------------------- views
    def _t(self, level) -> float:
        p = self.process
        t = float(self.level["default"] if level is None else level) if self.level else p.t_min
        return min(max(t, p.t_min), p.t_max)

    def level_alpha_sigma(self, level):
        """(alpha, s) of the noised data x_t the field shows at a native level."""
        a, s = self.process.alpha_s(torch.tensor([self._t(level)], dtype=torch.float64))
        return float(a[0]), float(s[0])

    @torch.no_grad()
    def field(self, grid, level=None):
        """The score of x_t at the native level: grad log p_t(x_t) = -eps-hat / s(t)."""
        t = torch.full((grid.shape[0],), self._t(level), device=grid.device, dtype=grid.dtype)
        _, s = self.level_alpha_sigma(level)
        return dict(score=(-self.native_eps(grid, t) / s).cpu().numpy())

    def schedule(self):
        """Curves over the native axis: the data's share alpha(t), the noise s(t), the VE level
        sigma(t) = s / alpha and the log-SNR log(alpha^2 / s^2) (Kingma et al. 2021)."""
        p = self.process
        t = torch.linspace(p.t_min, p.t_max, 201, dtype=torch.float64)
        a, s = p.alpha_s(t)
        tn = t.numpy()
        return dict(x_label=p.axis, mean_coef=(tn, a.numpy()), std=(tn, s.numpy()),
                    sigma=(tn, (s / a).numpy()), log_snr=(tn, (2 * torch.log(a / s)).numpy()))



