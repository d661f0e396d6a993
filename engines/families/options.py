"""Sampler option dataclasses shared by the families that offer a sampler, with tooltips."""
from __future__ import annotations

from dataclasses import dataclass

from ..config import opt


@dataclass
class LangevinOptions:
    step_size: float = opt(0.01, "Langevin step size eps", "x <- x + eps/2 s(x) + sqrt(eps) z", lo=1e-7, hi=10.0, log=True)
    n_steps: int = opt(300, "number of Langevin steps", lo=1, hi=100000)
    sigma: float = opt(0.0, "noise level the score is read at (0: the family's own)", lo=0.0, hi=100.0)


@dataclass
class AnnealedLangevinOptions:
    eps: float = opt(2e-4, "base step size", "alpha_i = eps sigma_i^2 / sigma_L^2 (Song & Ermon 2019, Alg. 1)", lo=1e-8, hi=1.0, log=True)
    steps_per_level: int = opt(30, "Langevin steps T at each noise level", lo=1, hi=10000)
    denoise_final: bool = opt(True, "finish with one Tweedie denoising step", "x <- x + sigma_L^2 s(x, sigma_L)")


@dataclass
class DDPMOptions:
    variance: str = opt("beta_tilde", "reverse-step variance sigma_t^2", "beta_t (upper) or beta-tilde_t (lower bound), DDPM sec. 3.2",
                        choices=("beta", "beta_tilde"))
    clip_x0: float = opt(4.0, "clip the predicted x0 to [-c, c] in standardized units (0: off); with abar_T ~ 0 "
                         "an untrained model's eps error is amplified by 1/sqrt(abar_T)",
                         "x0 = (x_t - sqrt(1-abar_t) eps) / sqrt(abar_t)", lo=0.0, hi=100.0)


@dataclass
class DDIMOptions:
    steps: int = opt(25, "number of DDIM steps (a sub-sequence of the T training steps)", lo=1, hi=100000)
    eta: float = opt(0.0, "stochasticity eta: 0 deterministic DDIM, 1 DDPM-like",
                     "sigma = eta sqrt((1-a_prev)/(1-a_t)) sqrt(1 - a_t/a_prev) (DDIM eq. 16)", lo=0.0, hi=1.0)
    clip_x0: float = opt(4.0, "clip the predicted x0 to [-c, c] in standardized units (0: off); big DDIM jumps "
                         "from abar_T ~ 0 amplify the eps error by 1/sqrt(abar_T)",
                         "x0 = (x_t - sqrt(1-abar_t) eps) / sqrt(abar_t)", lo=0.0, hi=100.0)


@dataclass
class ReverseSDEOptions:
    steps: int = opt(200, "number of discretization steps N", lo=1, hi=100000)
    predictor: str = opt("euler_maruyama", "predictor", "Euler–Maruyama: x <- x - [f - g^2 s] dt + g sqrt(dt) z",
                         choices=("euler_maruyama", "reverse_diffusion", "none"))
    corrector: str = opt("none", "corrector (predictor–corrector sampling, Song et al. 2021 Alg. 1)",
                         choices=("none", "langevin"))
    snr: float = opt(0.16, "corrector signal-to-noise ratio r", "step = 2 (r ||z|| / ||s||)^2", lo=0.0, hi=10.0)
    corrector_steps: int = opt(1, "corrector steps per predictor step", lo=1, hi=100)


@dataclass
class ODEOptions:
    method: str = opt("dopri5", "ODE solver (torchdiffeq)", "dx/dt = f - g^2 s / 2 (probability flow, eq. 13)",
                      choices=("dopri5", "bosh3", "rk4", "euler", "midpoint"))
    rtol: float = opt(1e-4, "relative tolerance of the adaptive solver", lo=1e-10, hi=1.0, log=True)
    atol: float = opt(1e-4, "absolute tolerance of the adaptive solver", lo=1e-10, hi=1.0, log=True)


def none_if(v):
    return None if v in ("none", 0, 0.0, "") else v
