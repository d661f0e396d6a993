"""The exact score of an analytic dataset (a Gaussian mixture): no training, every sampler.

Under any of the forward processes here the noised data is again a Gaussian mixture,
p_{alpha,sigma} = law of alpha x0 + sigma z = sum_k w_k N(alpha mu_k, (alpha^2 s_k^2 + sigma^2) I),
so its score and log-density are closed forms. Feeding them to the samplers shows the error of
a sampler alone (discretization, too few steps, poor mixing), apart from any model error.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .. import samplers as S
from .. import schedules as sch
from ..config import ConfigError, opt
from .ncsn import ladder_schedule, uniform_box
from .base import discrete_time_level
from .noise_model import DiscreteVP, Ladder, NoiseModel, SDEProcess
from .options import AnnealedLangevinOptions, DDIMOptions, DDPMOptions, LangevinOptions, ODEOptions, ReverseSDEOptions, none_if
from .score_sde import PCOptions, alpha_std, default_level, make_sde, ode_log_likelihood

PROCESSES = ("ddpm", "ncsn", "vp", "ve", "subvp")


@dataclass
class ExactConfig:
    process: str = opt("vp", "the forward process whose noise levels the field slider walks and whose default "
                       "sampler is used; each sampler still uses its own process (ddpm/ddim the discrete chain, "
                       "Langevin the sigma ladder, SDE/ODE samplers the SDE: ve for ncsn, vp for ddpm)",
                       "ddpm: x_t = sqrt(abar_t) x0 + sqrt(1-abar_t) z;  ncsn: x0 + sigma z;  vp/ve/subvp: SDE marginals",
                       choices=PROCESSES)
    T: int = opt(100, "DDPM steps T (ddpm / ddim samplers)", lo=2, hi=5000)
    schedule: str = opt("cosine", "DDPM beta schedule", choices=sch.BETA_KINDS)
    beta_start: float = opt(1e-4, "beta_1 of linear-type DDPM schedules (scaled by 1000/T)", lo=1e-8, hi=0.5, log=True)
    beta_end: float = opt(0.02, "beta_T of linear-type DDPM schedules (scaled by 1000/T)", lo=1e-6, hi=0.999, log=True)
    sigma_max: float = opt(5.0, "largest sigma of the NCSN ladder and of the VE SDE (standardized units)",
                           lo=1e-3, hi=1000.0, log=True)
    sigma_min: float = opt(0.03, "smallest sigma of the NCSN ladder and of the VE SDE", lo=1e-5, hi=10.0, log=True)
    n_levels: int = opt(20, "NCSN ladder length L", "sigma_i geometric from sigma_max to sigma_min", lo=2, hi=2000)
    beta_min: float = opt(0.1, "beta(0) of the VP / sub-VP SDE", lo=1e-4, hi=100.0, log=True)
    beta_max: float = opt(20.0, "beta(1) of the VP / sub-VP SDE", lo=1e-2, hi=1000.0, log=True)
    eps: float = opt(1e-3, "SDE samplers stop at t = eps", lo=1e-6, hi=0.5, log=True)

    def validate(self):
        if self.sigma_min >= self.sigma_max:
            raise ConfigError(f"sigma_min ({self.sigma_min}) must be below sigma_max ({self.sigma_max})")
        if self.beta_min >= self.beta_max:
            raise ConfigError(f"beta_min ({self.beta_min}) must be below beta_max ({self.beta_max})")
        if self.schedule in ("linear", "scaled_linear", "quadratic", "sigmoid") and self.beta_start >= self.beta_end:
            raise ConfigError(f"beta_start ({self.beta_start}) must be below beta_end ({self.beta_end})")


@dataclass
class ExactLangevinOptions(LangevinOptions):
    """Plain Langevin on the exact data score: steps small enough for the narrowest toy mode."""
    step_size: float = opt(5e-4, "Langevin step size eps; above ~ (mode width)^2 the chain blows up",
                           "x <- x + eps/2 grad log p_sigma(x) + sqrt(eps) z", lo=1e-8, hi=10.0, log=True)
    n_steps: int = opt(1000, "number of Langevin steps", lo=1, hi=100000)
    sigma: float = opt(0.0, "noise level the score is read at (0: the data itself)", lo=0.0, hi=1000.0)


@dataclass
class ExactAnnealedOptions(AnnealedLangevinOptions):
    """More steps per level than for a learned score: broad modes relax slowly at the small
    steps alpha_i of the low levels, and the exact score costs little."""
    steps_per_level: int = opt(50, "Langevin steps T at each noise level", lo=1, hi=10000)


def noised_mixture(mix, x: torch.Tensor, alpha, sigma):
    """Score (N, D) and log-density (N,) at x (N, D) of alpha x0 + sigma z, x0 ~ mix.
    alpha, sigma: floats or per-sample (N,) tensors. Differentiable in x (for ODE divergences)."""
    N = x.shape[0]
    alpha = torch.as_tensor(alpha, dtype=x.dtype, device=x.device).reshape(-1, 1).expand(N, 1)   # (N, 1)
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1, 1).expand(N, 1)   # (N, 1)
    mu = mix.means.to(x)                                                   # (K, D)
    var = alpha ** 2 * mix.stds.to(x)[None, :] ** 2 + sigma ** 2           # (N, K)
    diff = alpha[:, :, None] * mu[None] - x[:, None, :]                    # (N, K, D)
    logj = (torch.log(mix.weights.to(x))[None] - 0.5 * diff.pow(2).sum(-1) / var
            - 0.5 * mix.dim * torch.log(2 * math.pi * var))                # (N, K)
    r = torch.softmax(logj, dim=1)
    score = (r[:, :, None] * diff / var[:, :, None]).sum(1)                # (N, D)
    return score, torch.logsumexp(logj, dim=1)


class ExactScore(NoiseModel):
    name = "exact"
    title = "Exact score (analytic mixture)"
    summary = ("The true score of a Gaussian-mixture dataset, fed to every sampler: "
               "what a perfect model would give, so sampler error shows on its own.")
    capabilities = frozenset({"score", "density", "likelihood", "noise_levels", "schedule", "analytic"})
    Config = ExactConfig
    native_samplers = {"ddpm": DDPMOptions, "ddim": DDIMOptions, "annealed_langevin": ExactAnnealedOptions,
                "langevin": ExactLangevinOptions, "euler_maruyama": ReverseSDEOptions, "pc": PCOptions,
                "ode": ODEOptions}
    default_sampler = "euler_maruyama"
    trainable = False
    DEFAULT_SAMPLER = dict(ddpm="ddpm", ncsn="annealed_langevin", vp="euler_maruyama", ve="euler_maruyama",
                           subvp="euler_maruyama")

    def __init__(self, cfg, data_shape, device, context=None):
        super().__init__(cfg, data_shape, device, context)
        mix = self.context.get("mixture")
        if mix is None:
            raise ConfigError("exact needs a dataset with a known density (8gaussians, 25gaussians, gmm); "
                              "this dataset has no analytic mixture")
        self.mixture = mix
        self.net = torch.nn.Module()
        self.default_sampler = self.DEFAULT_SAMPLER[cfg.process]
        scale = 1000.0 / cfg.T
        self.betas = sch.betas(cfg.schedule, cfg.T, cfg.beta_start * scale, min(cfg.beta_end * scale, 0.999))
        self.abar = sch.alphas_cumprod(self.betas)                                 # (T,) float64
        self.sigmas = sch.geometric_sigmas(cfg.sigma_max, cfg.sigma_min, cfg.n_levels)
        sde_kind = dict(ddpm="vp", ncsn="ve").get(cfg.process, cfg.process)
        self.sde = make_sde(sde_kind, cfg.beta_min, cfg.beta_max, cfg.sigma_min, cfg.sigma_max)
        p = cfg.process
        # the process whose noise levels the generic samplers walk (their range and prior)
        self.process = dict(ddpm=lambda: DiscreteVP(self.abar, quantize=False), ncsn=lambda: Ladder(cfg.sigma_min, cfg.sigma_max)
                            ).get(p, lambda: SDEProcess(self.sde, cfg.eps))()
        if p == "ddpm":
            self.level = discrete_time_level(cfg.T, default=max(cfg.T // 10, 1))   # shown as t = 1..T
        elif p == "ncsn":
            lo, hi = cfg.sigma_min, cfg.sigma_max
            self.level = dict(kind="sigma", lo=lo, hi=hi, log=True,
                              default=float(math.exp(math.log(lo) + 0.25 * (math.log(hi) - math.log(lo)))))
        else:
            self.level = dict(kind="t", lo=cfg.eps, hi=1.0, log=False, default=default_level(self.sde, cfg.eps))

    # ---------------------------------------------------------------- exact scores for each process
    def sde_score(self, x, t):
        """grad log p_t(x) of the SDE marginal at per-sample times t (N,)."""
        a, s = alpha_std(self.sde, t)
        return noised_mixture(self.mixture, x, a, s)[0]

    def sigma_score(self, x, sigma):
        """grad log of the data blurred by N(0, sigma^2 I), sigma (N,) or a float."""
        return noised_mixture(self.mixture, x, 1.0, sigma)[0]

    def eps_fn(self, x, t_int):
        """The optimal noise prediction of DDPM: eps*(x_t, t) = -sqrt(1 - abar_t) grad log p_t(x_t)."""
        a = self.abar.to(x.device)[t_int].to(x.dtype)                              # (N,)
        score = noised_mixture(self.mixture, x, a.sqrt(), (1 - a).sqrt())[0]
        return -sch.append_dims((1 - a).sqrt(), x.ndim) * score

    def eps(self, x, sigma):
        """The exact eps*(x, sigma) = -sigma grad log p_sigma(x) of the mixture blurred by N(0, sigma^2 I),
        at any sigma (the NoiseModel adapter's VE coordinates)."""
        sigma = torch.as_tensor(sigma, device=x.device, dtype=x.dtype).reshape(-1).expand(x.shape[0])
        return -sch.append_dims(sigma, x.ndim) * noised_mixture(self.mixture, x, 1.0, sigma)[0]

    def native_eps(self, x_t, t):
        a, s = (v.to(x_t) for v in self.process.alpha_s(t))
        return -sch.append_dims(s, x_t.ndim) * noised_mixture(self.mixture, x_t, a, s)[0]

    def budget_options(self, sampler, nfe):
        """One exact-score call per step for ddim / Euler-Maruyama; (nfe - 1) // L Langevin steps per level."""
        if sampler == "ddim":
            return dict(steps=nfe) if nfe <= self.cfg.T else None
        if sampler == "euler_maruyama":
            return dict(steps=nfe)
        if sampler == "annealed_langevin":
            k = (nfe - 1) // self.cfg.n_levels
            return dict(steps_per_level=k, denoise_final=True) if k >= 1 else None
        return super().budget_options(sampler, nfe)

    # ---------------------------------------------------------------- sampling
    def sample_native(self, name, o, n, generator=None, callback=None):
        shape, dev = (n,) + self.data_shape, self.device
        if name in ("ddpm", "ddim"):
            x = torch.randn(shape, generator=generator, device=dev)
            clip = o.clip_x0 or None
            if name == "ddpm":
                return S.ddpm(self.eps_fn, x, self.betas, o.variance, clip, generator, callback)
            ts = S.ddim_timesteps(self.cfg.T, o.steps)
            return S.ddim(self.eps_fn, x, self.abar, ts, o.eta, clip, 1.0, generator, callback)
        if name == "annealed_langevin":
            x = float(self.sigmas[0]) * torch.randn(shape, generator=generator, device=dev)
            return S.annealed_langevin(self.sigma_score, x, self.sigmas.tolist(), o.eps, o.steps_per_level,
                                       generator, callback, denoise_final=o.denoise_final)
        if name == "langevin":
            x = uniform_box(n, self.data_shape, generator, dev)
            return S.langevin(lambda x: self.sigma_score(x, o.sigma), x, o.step_size, o.n_steps, generator, callback)
        x = self.sde.prior_sampling(shape, generator=generator, device=dev)
        if name == "ode":
            return S.probability_flow(self.sde_score, x, self.sde, o.rtol, o.atol, self.cfg.eps, o.method, callback)
        return S.reverse_sde(self.sde_score, x, self.sde, o.steps, none_if(o.predictor), none_if(o.corrector),
                             o.snr, o.corrector_steps, self.cfg.eps, generator, callback)

    # ---------------------------------------------------------------- likelihoods
    def log_likelihood(self, x):
        """Exact log p_data(x) (N,), normalized coordinates."""
        return noised_mixture(self.mixture, x, 1.0, 0.0)[1]

    def ode_log_likelihood(self, x, rtol=1e-5, atol=1e-5, hutchinson="off", generator=None):
        """log p_eps(x) through the probability-flow ODE of this family's SDE driven by the exact
        score (what score_sde computes with a learned score); compare with `log_prob_at_eps`."""
        return ode_log_likelihood(self.sde_score, self.sde, x, self.cfg.eps, rtol, atol,
                                  hutchinson=hutchinson, generator=generator)

    def log_prob_at_eps(self, x):
        """The closed form of what `ode_log_likelihood` integrates: log p_eps(x)."""
        a, s = alpha_std(self.sde, torch.tensor([self.cfg.eps], dtype=torch.float64))
        return noised_mixture(self.mixture, x, float(a), float(s))[1]

    # ---------------------------------------------------------------- views
    def level_alpha_sigma(self, level):
        p = self.cfg.process
        lv = self.level["default"] if level is None else level
        if p == "ddpm":
            a = float(self.abar[min(max(int(round(lv)), 0), self.cfg.T - 1)])
            return math.sqrt(a), math.sqrt(1 - a)
        if p == "ncsn":
            return 1.0, min(max(float(lv), 0.0), 1e6)
        t = min(max(float(lv), self.cfg.eps), 1.0)
        a, s = alpha_std(self.sde, torch.tensor([t], dtype=torch.float64))
        return float(a[0]), float(s[0])

    @torch.no_grad()
    def field(self, grid, level=None):
        a, s = self.level_alpha_sigma(level)
        score, logp = noised_mixture(self.mixture, grid, a, s)
        return dict(score=score.cpu().numpy(), log_density=logp.cpu().numpy())

    def views(self, request=None):
        m = self.mixture
        covs = (m.stds ** 2)[:, None, None] * torch.eye(m.dim)[None]
        return dict(components=dict(kind="ellipses", title="mixture components", space="data",
                                    centers=m.means.numpy(), covs=covs.numpy(), weights=m.weights.numpy()))

    def schedule(self):
        p = self.cfg.process
        if p == "ddpm":
            t = np.arange(self.cfg.T)  # 0-based, like the t the ddpm / ddim samplers report
            return dict(x_label="step t", beta=(t, self.betas.numpy()), alpha_bar=(t, self.abar.numpy()))
        if p == "ncsn":
            return ladder_schedule(self.sigmas, ExactAnnealedOptions().eps)
        t = torch.linspace(0.0, 1.0, 201, dtype=torch.float64)
        a, s = alpha_std(self.sde, t)
        out = dict(x_label="time t", std=(t.numpy(), s.numpy()), mean_coef=(t.numpy(), a.numpy()))
        if p in ("vp", "subvp"):
            out["beta"] = (t.numpy(), self.sde.beta(t).numpy())
        return out

    def sampler_levels(self, sampler, options):
        name = sampler or self.default_sampler
        if name not in self.native_samplers:
            return super().sampler_levels(sampler, options)
        if name == "annealed_langevin":
            return self.sigmas.numpy()
        if name in ("euler_maruyama", "pc"):
            steps = getattr(options, "steps", 200) if options is not None else 200
            return alpha_std(self.sde, torch.linspace(1.0, self.cfg.eps, steps, dtype=torch.float64))[1].numpy()
        return None

    def state_dict(self):
        return {}

    def load_state_dict(self, sd):
        pass
