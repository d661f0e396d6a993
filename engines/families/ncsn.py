"""NCSN (Song & Ermon 2019): one noise-conditional score network s(x, sigma) trained by
denoising score matching on a geometric ladder sigma_1 > ... > sigma_L, sampled with
annealed Langevin dynamics (Algorithm 1) down that ladder."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .. import samplers as S
from .. import schedules as sch
from ..config import ConfigError, opt
from ..loss_bins import report_t_loss
from ..nets import conditional_net
from .noise_model import Ladder, NoiseModel
from .options import AnnealedLangevinOptions, LangevinOptions


@dataclass
class NCSNConfig:
    sigma_max: float = opt(5.0, "largest noise level sigma_1; about the largest distance between two data points "
                           "(Song & Ermon 2020, technique 1), in standardized units",
                           "sigma_1 ~ max_ij ||x_i - x_j||", lo=1e-3, hi=1000.0, log=True)
    sigma_min: float = opt(0.03, "smallest noise level sigma_L; samples carry this much residual noise "
                           "(the final Tweedie step removes most of it)", lo=1e-4, hi=10.0, log=True)
    n_levels: int = opt(20, "number of noise levels L", "sigma_i = sigma_1 (sigma_L / sigma_1)^((i-1)/(L-1))",
                        lo=2, hi=2000)
    parametrization: str = opt("ncsnv2", "how the network output becomes a score: direct s = f(x, sigma), or "
                               "ncsnv2 s = f(x, sigma) / sigma (Song & Ermon 2020, technique 3)",
                               "direct: s = f;  ncsnv2: s = f / sigma", choices=("direct", "ncsnv2"))
    sigma_sampling: str = opt("ladder", "training noise levels: uniform over the L ladder rungs (the paper), or "
                              "log-uniform over [sigma_L, sigma_1] (a smoother field between rungs)",
                              "ladder: sigma ~ U{sigma_1..sigma_L};  continuous: log sigma ~ U[log sigma_L, log sigma_1]",
                              choices=("ladder", "continuous"))
    hidden: int = opt(128, "hidden width of the MLP", lo=4, hi=4096)
    depth: int = opt(3, "hidden layers of the MLP", lo=1, hi=16)
    embedding: str = opt("sinusoidal", "embedding of the conditioning c = log(sigma) / 4",
                         choices=("sinusoidal", "fourier"))

    def validate(self):
        if self.sigma_min >= self.sigma_max:
            raise ConfigError(f"sigma_min ({self.sigma_min}) must be below sigma_max ({self.sigma_max})")


@dataclass
class NCSNLangevinOptions(LangevinOptions):
    """Plain Langevin at one noise level; steps sized for the smallest sigma (step ~ 0.2 sigma_L^2)."""
    step_size: float = opt(2e-4, "Langevin step size eps; above ~ sigma^2 the chain oscillates and blows up",
                           "x <- x + eps/2 s(x, sigma) + sqrt(eps) z", lo=1e-8, hi=10.0, log=True)
    n_steps: int = opt(1000, "number of Langevin steps", lo=1, hi=100000)
    sigma: float = opt(0.0, "noise level the score is read at (0: the smallest, sigma_L)", lo=0.0, hi=1000.0)


def uniform_box(n, data_shape, generator, device, half_width: float | None = None):
    """The usual Langevin start: uniform noise, U[-w, w] per coordinate, (n, *data_shape); w = 4
    standardized units for points (a box around the data), 1 for images (their [-1, 1] range)."""
    if half_width is None:
        half_width = 4.0 if len(data_shape) == 1 else 1.0
    u = torch.rand((n,) + tuple(data_shape), generator=generator, device=device)
    return (2 * u - 1) * half_width


def ladder_schedule(sigmas: torch.Tensor, eps: float) -> dict:
    sig = sigmas.double().numpy()
    i = np.arange(1, len(sig) + 1, dtype=float)
    return {"x_label": "noise level sigma", "level i": (sig, i), "step alpha_i": (sig, eps * sig ** 2 / sig[-1] ** 2)}


class NCSN(NoiseModel):
    name = "ncsn"
    title = "NCSN (annealed Langevin)"
    summary = ("Noise-conditional score network: learn the score of the data blurred at many noise levels, "
               "then sample by Langevin dynamics from the largest level down to the smallest.")
    capabilities = frozenset({"score", "noise_levels", "schedule"})
    Config = NCSNConfig
    native_samplers = {"annealed_langevin": AnnealedLangevinOptions, "langevin": NCSNLangevinOptions}
    default_sampler = "annealed_langevin"

    def __init__(self, cfg, data_shape, device, context=None):
        super().__init__(cfg, data_shape, device, context)
        self.sigmas = sch.geometric_sigmas(cfg.sigma_max, cfg.sigma_min, cfg.n_levels)  # (L,) descending
        self._sigmas = self.sigmas.float().to(self.device)
        self.process = Ladder(cfg.sigma_min, cfg.sigma_max)        # native time = sigma, alpha = 1
        if cfg.sigma_sampling == "ladder":                          # trained on the rungs only
            self.process.nodes = self.sigmas.flip(0).double()
        lo, hi = cfg.sigma_min, cfg.sigma_max
        self.level = dict(kind="sigma", lo=lo, hi=hi, log=True,
                          default=float(math.exp(math.log(lo) + 0.25 * (math.log(hi) - math.log(lo)))))
        self.net = conditional_net(self.data_shape, cfg.hidden, cfg.depth, cfg.embedding).to(self.device)

    # ---------------------------------------------------------------- the score model
    def score_fn(self, net=None):
        """s_theta(x, sigma): x (B, *shape), sigma (B,) -> (B, *shape). The net sees c = log(sigma)/4."""
        net = net or self.model
        v2 = self.cfg.parametrization == "ncsnv2"

        def f(x, sigma):
            out = net(x, torch.log(sigma) / 4)
            return out / sch.append_dims(sigma, x.ndim) if v2 else out
        return f

    def native_eps(self, x_t, t):
        """eps-hat = -sigma s_theta(x, sigma): the native time t is sigma itself."""
        return -sch.append_dims(t, x_t.ndim) * self.score_fn()(x_t, t)

    def loss(self, x0, generator=None):
        """Multi-scale DSM, Song & Ermon 2019 eqs. 5-6 with lambda(sigma) = sigma^2:
        L = E_sigma E_z || sigma s(x + sigma z, sigma) + z ||^2 / 2 (sum over dimensions)."""
        B = x0.shape[0]
        if self.cfg.sigma_sampling == "ladder":
            idx = torch.randint(0, self.cfg.n_levels, (B,), device=x0.device, generator=generator)
            sigma = self._sigmas[idx]                                            # (B,)
            t_norm = 1 - idx.float() / max(self.cfg.n_levels - 1, 1)             # sigma_1 at t = 1
        else:
            u = torch.rand((B,), device=x0.device, generator=generator)
            lo, hi = math.log(self.cfg.sigma_min), math.log(self.cfg.sigma_max)
            sigma = torch.exp(lo + u * (hi - lo))                                # (B,)
            t_norm = u
        z = torch.randn(x0.shape, device=x0.device, generator=generator)        # (B, *shape)
        s = sch.append_dims(sigma, x0.ndim)
        score = self.score_fn(self.net)(x0 + s * z, sigma)
        per = 0.5 * (s * score + z).pow(2).flatten(1).sum(1)                     # (B,)
        report_t_loss(self, t_norm, per)
        return per.mean(), {}

    # ---------------------------------------------------------------- sampling
    def sample_native(self, name, o, n, generator=None, callback=None):
        score = self.score_fn()
        if name == "annealed_langevin":
            # start from the VE prior N(0, sigma_1^2 I): the data blurred at sigma_1 looks like it
            x = float(self.sigmas[0]) * torch.randn((n,) + self.data_shape, generator=generator, device=self.device)
            return S.annealed_langevin(score, x, self.sigmas.tolist(), o.eps, o.steps_per_level, generator,
                                       callback, denoise_final=o.denoise_final)
        sigma = o.sigma or self.cfg.sigma_min
        x = uniform_box(n, self.data_shape, generator, self.device)

        def fixed(x):
            return score(x, torch.full((x.shape[0],), sigma, device=x.device, dtype=x.dtype))
        return S.langevin(fixed, x, o.step_size, o.n_steps, generator, callback)

    def budget_options(self, sampler, nfe):
        """Annealed Langevin: steps_per_level = (nfe - 1) // L (plus the final denoising call)."""
        if sampler == "annealed_langevin":
            k = (nfe - 1) // self.cfg.n_levels
            return dict(steps_per_level=k, denoise_final=True) if k >= 1 else None
        if sampler == "langevin":
            return dict(n_steps=nfe)
        return super().budget_options(sampler, nfe)

    # ---------------------------------------------------------------- views (field, levels: NoiseModel)
    def schedule(self):
        """Over the ladder's sigma (the axis the samplers report, so the panel's marker can follow):
        the rung index i and the annealed-Langevin step alpha_i = eps sigma_i^2 / sigma_L^2 (default eps)."""
        return ladder_schedule(self.sigmas, AnnealedLangevinOptions().eps)

    def sampler_levels(self, sampler, options):
        if (sampler or self.default_sampler) not in self.native_samplers:
            return super().sampler_levels(sampler, options)
        if (sampler or self.default_sampler) == "annealed_langevin":
            return self.sigmas.numpy()
        s = getattr(options, "sigma", 0.0) if options is not None else 0.0
        return np.array([s or self.cfg.sigma_min])
