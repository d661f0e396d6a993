"""Score SDE (Song et al. 2021, "Score-Based Generative Modeling through Stochastic Differential
Equations"): a time-conditioned score s(x, t) of the marginals of a forward SDE (VP, VE or
sub-VP), trained by continuous-time denoising score matching (eq. 7); sampled with the reverse
SDE (Euler–Maruyama or predictor–corrector) or the probability-flow ODE, which also gives exact
log-likelihoods through the instantaneous change of variables (appendix D)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import samplers as S
from .. import schedules as sch
from ..config import ConfigError, opt
from ..loss_bins import report_t_loss
from ..nets import conditional_net
from .noise_model import NoiseModel, SDEProcess
from .options import ODEOptions, ReverseSDEOptions, none_if


@dataclass
class ScoreSDEConfig:
    sde: str = opt("vp", "forward SDE: vp (continuous DDPM), ve (continuous NCSN), subvp (lower variance than vp)",
                   "vp: dx = -beta/2 x dt + sqrt(beta) dw;  ve: dx = sqrt(d sigma^2/dt) dw;  "
                   "subvp: dx = -beta/2 x dt + sqrt(beta (1 - e^{-2 int beta})) dw (Song et al. eqs. 9, 11, 12)",
                   choices=("vp", "ve", "subvp"))
    beta_min: float = opt(0.1, "beta(0) of the VP / sub-VP SDE", "beta(t) = beta_min + t (beta_max - beta_min)",
                          lo=1e-4, hi=100.0, log=True)
    beta_max: float = opt(20.0, "beta(1) of the VP / sub-VP SDE; large enough that x_1 ~ N(0, I)",
                          lo=1e-2, hi=1000.0, log=True)
    sigma_min: float = opt(0.01, "sigma(0) of the VE SDE (standardized units)",
                           "sigma(t) = sigma_min (sigma_max / sigma_min)^t", lo=1e-5, hi=10.0, log=True)
    sigma_max: float = opt(5.0, "sigma(1) of the VE SDE; about the largest distance between data points",
                           lo=1e-2, hi=1000.0, log=True)
    eps: float = opt(1e-3, "smallest time t used in training and where sampling stops (avoids the t -> 0 blow-up)",
                     "t ~ U(eps, 1)", lo=1e-6, hi=0.5, log=True)
    likelihood_weighting: bool = opt(False, "weight the loss by g(t)^2 instead of std(t)^2: a bound on the "
                                     "negative log-likelihood (Song, Durkan, Murray & Ermon 2021), noisier to train",
                                     "lambda(t) = g(t)^2 (else std(t)^2)")
    hutchinson: str = opt("off", "divergence in the likelihood ODE: exact (off; D backward passes) or the "
                          "Hutchinson-Skilling estimate E[e^T (df/dx) e] (one pass, noisy; always used when D > 16)",
                          "div f = E_e[e^T J_f e],  e ~ Rademacher or N(0, I)",
                          choices=("off", "rademacher", "gaussian"))
    likelihood_tol: float = opt(1e-4, "rtol = atol of the adaptive solver for log-likelihoods",
                                lo=1e-10, hi=1e-1, log=True)
    hidden: int = opt(128, "hidden width of the MLP", lo=4, hi=4096)
    depth: int = opt(3, "hidden layers of the MLP", lo=1, hi=16)
    embedding: str = opt("sinusoidal", "embedding of the conditioning (t for vp/subvp, log(std)/4 for ve)",
                         choices=("sinusoidal", "fourier"))

    def validate(self):
        if self.sde == "ve" and self.sigma_min >= self.sigma_max:
            raise ConfigError(f"sigma_min ({self.sigma_min}) must be below sigma_max ({self.sigma_max})")
        if self.sde != "ve" and self.beta_min >= self.beta_max:
            raise ConfigError(f"beta_min ({self.beta_min}) must be below beta_max ({self.beta_max})")

    def inactive_fields(self) -> frozenset:
        """Fields this SDE ignores (the app greys them out): sigmas under VP / sub-VP, betas under VE."""
        return frozenset({"beta_min", "beta_max"} if self.sde == "ve" else {"sigma_min", "sigma_max"})


@dataclass
class PCOptions(ReverseSDEOptions):
    """Predictor–corrector defaults: reverse-diffusion predictor + Langevin corrector (Song et al. Alg. 1)."""
    predictor: str = opt("reverse_diffusion", "predictor",
                         "reverse diffusion: x <- x - f + G^2 s + G z on the discretized forward chain",
                         choices=("euler_maruyama", "reverse_diffusion", "none"))
    corrector: str = opt("langevin", "corrector (predictor–corrector sampling, Song et al. 2021 Alg. 1)",
                         choices=("none", "langevin"))


def make_sde(kind: str, beta_min=0.1, beta_max=20.0, sigma_min=0.01, sigma_max=5.0) -> sch.SDE:
    if kind == "vp":
        return sch.VPSDE(beta_min, beta_max)
    if kind == "subvp":
        return sch.SubVPSDE(beta_min, beta_max)
    if kind == "ve":
        return sch.VESDE(sigma_min, sigma_max)
    raise ConfigError(f"sde: {kind!r} is not one of vp, ve, subvp")


def alpha_std(sde: sch.SDE, t: torch.Tensor):
    """Mean coefficient and std of p_t(x_t | x_0) = N(alpha(t) x_0, std(t)^2 I): (B,), (B,)."""
    mean, std = sde.marginal_prob(torch.ones(t.shape[0], 1, dtype=t.dtype, device=t.device), t)
    std = torch.as_tensor(std, dtype=t.dtype, device=t.device).expand(t.shape[0])
    return mean[:, 0], std


def default_level(sde: sch.SDE, eps: float, target_std: float = 0.15) -> float:
    """The t whose marginal std first reaches target_std: a field level where the score is legible."""
    ts = torch.linspace(eps, sde.T, 1000, dtype=torch.float64)
    std = alpha_std(sde, ts)[1]
    k = int(torch.searchsorted(std.contiguous(), torch.tensor([target_std], dtype=torch.float64)).clamp(max=999))
    return float(ts[k])


def _divergence(f: torch.Tensor, x: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
    """div_x f for f (N, *shape) built from x with autograd: exact (one backward pass per
    dimension) when noise is None, else the Hutchinson estimate noise^T (df/dx) noise. (N,)"""
    if noise is not None:
        (g,) = torch.autograd.grad((f * noise).sum(), x)
        return (g * noise).flatten(1).sum(1)
    ff = f.flatten(1)                                                   # (N, D)
    div = torch.zeros(ff.shape[0], dtype=f.dtype, device=f.device)
    for i in range(ff.shape[1]):
        (g,) = torch.autograd.grad(ff[:, i].sum(), x, retain_graph=i + 1 < ff.shape[1])
        div = div + g.flatten(1)[:, i]
    return div


def ode_log_likelihood(score_fn, sde: sch.SDE, x: torch.Tensor, eps: float = 1e-3, rtol: float = 1e-5,
                       atol: float = 1e-5, method: str = "dopri5", hutchinson: str = "off",
                       generator=None) -> torch.Tensor:
    """log p_eps(x) (N,) by the probability-flow ODE and the instantaneous change of variables
    (Chen et al. 2018; Song et al. 2021, appendix D.2): integrate
        dx/dt = f~(x, t) = f(x, t) - g(t)^2 s(x, t) / 2,   d delta/dt = div_x f~(x, t)
    from t=eps to T, then log p_eps(x) = log p_T(x_T) + delta(T). hutchinson: "off" takes the
    exact divergence (D backward passes), "rademacher" / "gaussian" one noisy pass with a probe
    vector drawn once per solve (Grathwohl et al. 2019). Exact only as far as p_T equals the
    prior: fine for VP / sub-VP, while VE with sigma_max near the data's spread carries a prior
    mismatch that shows most for points far from the data."""
    from torchdiffeq import odeint

    rsde = sde.reverse(score_fn, probability_flow=True)
    N = x.shape[0]
    noise = None
    if hutchinson != "off":
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        if hutchinson == "rademacher":
            noise = noise.sign()

    def f(t, state):
        xt, _ = state
        with torch.enable_grad():
            xt = xt.detach().requires_grad_(True)
            tt = torch.full((N,), float(t), device=xt.device, dtype=xt.dtype)
            drift, _ = rsde.sde(xt, tt)                                   # (N, *shape)
            div = _divergence(drift, xt, noise)                           # (N,)
        return drift.detach(), div.detach()

    ts = torch.tensor([eps, sde.T], device=x.device, dtype=x.dtype)
    state = (x.detach(), torch.zeros(N, device=x.device, dtype=x.dtype))
    # as in samplers.probability_flow: no probe or step beyond T (VE's sigma(t) keeps growing there)
    options = {"step_t": ts[-1:], "first_step": (sde.T - eps) / 100} if method in ("dopri5", "bosh3", "dopri8",
                                                                                  "adaptive_heun", "fehlberg2") else None
    xs, deltas = odeint(f, state, ts, rtol=rtol, atol=atol, method=method, options=options)
    return sde.prior_logp(xs[-1]) + deltas[-1]


class ScoreSDE(NoiseModel):
    name = "score_sde"
    title = "Score SDE (VP / VE / sub-VP)"
    summary = ("Learn the score of the data diffused by a stochastic differential equation, then run it "
               "backwards in time (reverse SDE) or follow the probability-flow ODE, which also gives exact likelihoods.")
    capabilities = frozenset({"score", "likelihood", "noise_levels", "schedule"})
    Config = ScoreSDEConfig
    native_samplers = {"euler_maruyama": ReverseSDEOptions, "pc": PCOptions, "ode": ODEOptions}
    default_sampler = "euler_maruyama"

    def __init__(self, cfg, data_shape, device, context=None):
        super().__init__(cfg, data_shape, device, context)
        self.sde = make_sde(cfg.sde, cfg.beta_min, cfg.beta_max, cfg.sigma_min, cfg.sigma_max)
        self.process = SDEProcess(self.sde, cfg.eps)
        self.level = dict(kind="t", lo=cfg.eps, hi=self.sde.T, log=False, default=default_level(self.sde, cfg.eps))
        self.net = conditional_net(self.data_shape, cfg.hidden, cfg.depth, cfg.embedding).to(self.device)

    # ---------------------------------------------------------------- the score model
    def _c(self, t, std):
        """Net conditioning (B,): t itself for vp/subvp, log(std)/4 for ve (its t spans decades of sigma)."""
        return torch.log(std) / 4 if self.cfg.sde == "ve" else t

    def score_fn(self, net=None):
        """s_theta(x, t) = f(x, c(t)) / std(t): x (B, *shape), t (B,) -> (B, *shape). Dividing by the
        marginal std makes the net predict -z, an O(1) target at every t (Song et al.'s "scale by sigma")."""
        net = net or self.model
        sde = self.sde

        def f(x, t):
            std = alpha_std(sde, t)[1]
            return net(x, self._c(t, std)) / sch.append_dims(std, x.ndim)
        return f

    def native_eps(self, x_t, t):
        """eps-hat = -std(t) s_theta(x_t, t) = -(the net's output)."""
        std = alpha_std(self.sde, t)[1]
        return -self.model(x_t, self._c(t, std))

    def loss(self, x0, generator=None):
        """Continuous-time DSM, Song et al. 2021 eq. 7: t ~ U(eps, 1), x_t = alpha(t) x0 + std(t) z,
        L = E || std s(x_t, t) + z ||^2 = E lambda(t) || s + z / std ||^2 with lambda = std^2
        (or lambda = g(t)^2 with likelihood_weighting). Sum over dimensions, mean over the batch."""
        B = x0.shape[0]
        eps = self.cfg.eps
        t = torch.rand((B,), device=x0.device, generator=generator) * (self.sde.T - eps) + eps   # (B,)
        z = torch.randn(x0.shape, device=x0.device, generator=generator)                          # (B, *shape)
        alpha, std = alpha_std(self.sde, t)
        s_ = sch.append_dims(std, x0.ndim)
        xt = sch.append_dims(alpha, x0.ndim) * x0 + s_ * z
        out = self.net(xt, self._c(t, std))                       # = std * score
        per = (out + z).pow(2).flatten(1).sum(1)                   # (B,) || std s + z ||^2
        if self.cfg.likelihood_weighting:
            g2 = self.sde.sde(x0, t)[1] ** 2                           # (B,)
            per = per * g2 / std ** 2
        report_t_loss(self, t, per)
        return per.mean(), {}

    # ---------------------------------------------------------------- sampling
    def sample_native(self, name, o, n, generator=None, callback=None):
        x = self.sde.prior_sampling((n,) + self.data_shape, generator=generator, device=self.device)
        score = self.score_fn()
        if name == "ode":
            return S.probability_flow(score, x, self.sde, o.rtol, o.atol, self.cfg.eps, o.method, callback)
        return S.reverse_sde(score, x, self.sde, o.steps, none_if(o.predictor), none_if(o.corrector), o.snr,
                             o.corrector_steps, self.cfg.eps, generator, callback)

    def log_likelihood(self, x, generator=None):
        """Exact log p_eps(x) (N,) in normalized coordinates by the probability-flow ODE (see
        ode_log_likelihood). Exact divergence for D <= 16 (D backward passes per step); bigger data,
        e.g. images, falls back to the Rademacher estimate."""
        hutch = self.cfg.hutchinson
        if hutch == "off" and x[0].numel() > 16:
            hutch = "rademacher"
        tol = self.cfg.likelihood_tol
        return ode_log_likelihood(self.score_fn(), self.sde, x.to(self.device), self.cfg.eps, tol, tol,
                                  hutchinson=hutch, generator=generator)

    def budget_options(self, sampler, nfe):
        """The reverse-SDE samplers take one network call per step (pc: two, with its corrector)."""
        if sampler == "euler_maruyama":
            return dict(steps=nfe)
        if sampler == "pc":
            return dict(steps=nfe // 2) if nfe >= 2 else None
        return super().budget_options(sampler, nfe)

    # ---------------------------------------------------------------- views (field, levels: NoiseModel)
    def schedule(self):
        out = super().schedule()
        if self.cfg.sde in ("vp", "subvp"):
            t = out["std"][0]
            out["beta"] = (t, self.sde.beta(torch.from_numpy(t)).numpy())
        return out

    def sampler_levels(self, sampler, options):
        """Marginal std at the times the reverse-SDE samplers step through (None for the adaptive ODE)."""
        if (sampler or self.default_sampler) not in self.native_samplers:
            return super().sampler_levels(sampler, options)
        if (sampler or self.default_sampler) == "ode":
            return None
        steps = getattr(options, "steps", 200) if options is not None else 200
        ts = torch.linspace(self.sde.T, self.cfg.eps, steps, dtype=torch.float64)
        return alpha_std(self.sde, ts)[1].numpy()
