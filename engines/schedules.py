"""Noise schedules: discrete DDPM betas, sigma ladders and the score-SDEs (VP, VE, sub-VP).

Conventions follow Ho et al. 2020 (DDPM) for the discrete chain,
    q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I),  abar_t = prod_{s<=t} (1 - beta_s),
and Song et al. 2021 ("Score-Based Generative Modeling through SDEs", eqs. 9, 11 and
appendix B) for the continuous SDEs dx = f(x, t) dt + g(t) dw on t in [0, T=1].
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

BETA_KINDS = ("linear", "scaled_linear", "quadratic", "cosine", "sigmoid")


def append_dims(v: torch.Tensor, ndim: int) -> torch.Tensor:
    """(B,) -> (B, 1, ..., 1) with `ndim` dims, to broadcast per-sample scalars over data."""
    return v.reshape(v.shape + (1,) * (ndim - v.ndim))


def betas(kind: str, T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """Discrete beta_1..beta_T as a float64 tensor (T,).

    linear: evenly spaced (DDPM); scaled_linear and quadratic are ONE formula under two names,
    beta_t = (sqrt(beta_start) + (t-1)/(T-1) (sqrt(beta_end) - sqrt(beta_start)))^2 ("scaled_linear"
    in diffusers / Stable Diffusion, "quad" in Ho et al.'s diffusion_utils); both names are kept
    so configs from either source load; cosine: abar(t) = cos^2((t/T + s)/(1 + s) * pi/2), s=0.008,
    beta clipped at 0.999 (Nichol & Dhariwal 2021, eq. 17); sigmoid: sigmoid-spaced in
    [beta_start, beta_end] over [-6, 6] (GeoDiff).
    """
    if T < 1:
        raise ValueError(f"T must be a positive number of steps, got {T}")
    if kind == "linear":
        return torch.linspace(beta_start, beta_end, T, dtype=torch.float64)
    if kind in ("scaled_linear", "quadratic"):
        return torch.linspace(beta_start ** 0.5, beta_end ** 0.5, T, dtype=torch.float64) ** 2
    if kind == "cosine":
        s = 0.008
        steps = torch.arange(T + 1, dtype=torch.float64) / T
        abar = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
        abar = abar / abar[0]
        return (1 - abar[1:] / abar[:-1]).clamp(max=0.999)
    if kind == "sigmoid":
        u = torch.linspace(-6, 6, T, dtype=torch.float64)
        return torch.sigmoid(u) * (beta_end - beta_start) + beta_start
    raise ValueError(f"unknown beta schedule {kind!r}; choose one of {', '.join(BETA_KINDS)}")


def alphas_cumprod(b: torch.Tensor) -> torch.Tensor:
    """abar_t = prod_{s<=t} (1 - beta_s), (T,)."""
    return torch.cumprod(1.0 - b, dim=0)


def snr(abar: torch.Tensor) -> torch.Tensor:
    """Signal-to-noise ratio abar / (1 - abar) of q(x_t | x_0) (Kingma et al. 2021)."""
    return abar / (1.0 - abar)


def log_snr(abar: torch.Tensor) -> torch.Tensor:
    return torch.log(abar) - torch.log1p(-abar)


def posterior_variance(b: torch.Tensor) -> torch.Tensor:
    """beta-tilde_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t (DDPM eq. 7); beta-tilde_1 = 0."""
    abar = alphas_cumprod(b)
    abar_prev = torch.cat([abar.new_ones(1), abar[:-1]])
    return (1 - abar_prev) / (1 - abar) * b


def geometric_sigmas(sigma_max: float, sigma_min: float, L: int) -> torch.Tensor:
    """NCSN noise ladder sigma_1 > ... > sigma_L, a geometric sequence (Song & Ermon 2019)."""
    if not (sigma_max > sigma_min > 0):
        raise ValueError(f"need sigma_max > sigma_min > 0, got {sigma_max} and {sigma_min}")
    return torch.exp(torch.linspace(math.log(sigma_max), math.log(sigma_min), L))


def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. 2022 eq. 5: sigma_i = (smax^(1/rho) + i/(n-1) (smin^(1/rho) - smax^(1/rho)))^rho,
    followed by a final 0, (n + 1,)."""
    ramp = torch.linspace(0, 1, n)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    s = (hi + ramp * (lo - hi)) ** rho
    return torch.cat([s, s.new_zeros(1)])


# ----------------------------------------------------------------------------- SDEs


class SDE:
    """dx = f(x, t) dt + g(t) dw on t in [0, T]. Subclasses give sde, marginal_prob, prior."""

    T = 1.0
    name = "sde"

    def sde(self, x, t):
        raise NotImplementedError

    def marginal_prob(self, x, t):
        raise NotImplementedError

    def prior_sampling(self, shape, generator=None, device=None):
        raise NotImplementedError

    def prior_logp(self, z):
        raise NotImplementedError

    def marginal_std(self, t: torch.Tensor) -> torch.Tensor:
        return self.marginal_prob(torch.zeros_like(t), t)[1]

    def reverse(self, score_fn, probability_flow: bool = False) -> "ReverseSDE":
        """Reverse-time SDE dx = [f - g^2 score] dt + g dw-bar (Anderson 1982; Song et al. eq. 6),
        or the probability-flow ODE dx = [f - g^2 score / 2] dt (eq. 13)."""
        return ReverseSDE(self, score_fn, probability_flow)


class ReverseSDE:
    def __init__(self, forward: SDE, score_fn, probability_flow: bool):
        self.forward, self.score_fn, self.probability_flow = forward, score_fn, probability_flow

    def sde(self, x, t):
        drift, g = self.forward.sde(x, t)
        g2 = append_dims(g ** 2, x.ndim)
        score = self.score_fn(x, t)
        if self.probability_flow:
            return drift - 0.5 * g2 * score, torch.zeros_like(g)
        return drift - g2 * score, g


def _gaussian_logp(z: torch.Tensor, std: float) -> torch.Tensor:
    d = z[0].numel()
    flat = z.reshape(z.shape[0], -1)
    return -0.5 * d * math.log(2 * math.pi * std ** 2) - (flat ** 2).sum(1) / (2 * std ** 2)


@dataclass
class VPSDE(SDE):
    """Variance preserving: dx = -beta(t)/2 x dt + sqrt(beta(t)) dw, beta linear in t
    (continuous DDPM, Song et al. eq. 11). Marginal: mean e^{-B(t)/2} x0, var 1 - e^{-B(t)},
    B(t) = int_0^t beta = beta_min t + (beta_max - beta_min) t^2 / 2."""

    beta_min: float = 0.1
    beta_max: float = 20.0
    name = "vp"

    def beta(self, t):
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def integral(self, t):
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t ** 2

    def sde(self, x, t):
        b = self.beta(t)
        return -0.5 * append_dims(b, x.ndim) * x, torch.sqrt(b)

    def marginal_prob(self, x, t):
        log_mean = -0.5 * self.integral(t)
        mean = append_dims(torch.exp(log_mean), x.ndim) * x
        std = torch.sqrt(-torch.expm1(2 * log_mean))
        return mean, std

    def prior_sampling(self, shape, generator=None, device=None):
        return torch.randn(shape, generator=generator, device=device)

    def prior_logp(self, z):
        return _gaussian_logp(z, 1.0)


@dataclass
class SubVPSDE(VPSDE):
    """sub-VP: dx = -beta/2 x dt + sqrt(beta (1 - e^{-2B(t)})) dw (Song et al. eq. 12);
    same mean as VP, std 1 - e^{-B(t)} (always below the VP std)."""

    name = "subvp"

    def sde(self, x, t):
        b = self.beta(t)
        disc = -torch.expm1(-2 * self.integral(t))
        return -0.5 * append_dims(b, x.ndim) * x, torch.sqrt(b * disc)

    def marginal_prob(self, x, t):
        log_mean = -0.5 * self.integral(t)
        mean = append_dims(torch.exp(log_mean), x.ndim) * x
        std = -torch.expm1(2 * log_mean)
        return mean, std


@dataclass
class VESDE(SDE):
    """Variance exploding: dx = sqrt(d sigma^2/dt) dw with sigma(t) = smin (smax/smin)^t
    (continuous NCSN, Song et al. eq. 9). Marginal: mean x0, std sigma(t)."""

    sigma_min: float = 0.01
    sigma_max: float = 50.0
    name = "ve"

    def sigma(self, t):
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** t

    def sde(self, x, t):
        s = self.sigma(t)
        g = s * math.sqrt(2 * math.log(self.sigma_max / self.sigma_min))
        return torch.zeros_like(x), g

    def marginal_prob(self, x, t):
        return x, self.sigma(t)

    def prior_sampling(self, shape, generator=None, device=None):
        return torch.randn(shape, generator=generator, device=device) * self.sigma_max

    def prior_logp(self, z):
        return _gaussian_logp(z, self.sigma_max)


SDES = {"vp": VPSDE, "ve": VESDE, "subvp": SubVPSDE}
