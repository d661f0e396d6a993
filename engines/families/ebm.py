"""Energy-based model p(x) = exp(-E(x)) / Z trained by contrastive divergence with MCMC negatives
(course notes 000, "Energy based models": grad log p(x) = -grad E(x_train) + E_{x~p}[grad E(x)];
Hinton 2002; Du & Mordatch 2019 for Langevin negatives with a replay buffer).

    loss = E_data[E(x+)] - E_model[E(x-)] + alpha (E(x+)^2 + E(x-)^2)

The net outputs a raw energy E_theta; the model is p(x) = exp(-U(x)) / Z with U = E_theta / noise^2.
The negatives x- are short MCMC runs on the current U, started from uniform noise or from a replay
buffer of earlier negatives (of which a fraction `reinit`, 5 % by default, is reset to noise each
step; Du & Mordatch 2019, sec. 3.1):
  - langevin:  x <- x - (eps/2) grad E_theta(x) + noise sqrt(eps) z, i.e. unadjusted Langevin with
               step eps noise^2 on U (noise < 1 is the usual "cold" chain of EBM training; folding
               the temperature into U keeps the field, the score and the samplers consistent)
  - mh:        random-walk Metropolis–Hastings, x' = x + s z accepted with min(1, exp(U(x) - U(x')))
               (course notes 000, "MCMC").
The squared-energy term keeps E from drifting to large magnitudes (Du & Mordatch 2019, eq. 4).

Z is unknown, so the "log_density" field is -U(x): an *unnormalized* log-density, correct up
to the constant -log Z (see `field_notes`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .. import samplers as S
from ..config import ConfigError, opt
from ..nets import EnergyMLP, energy_score
from .base import Family
from .options import LangevinOptions

BOX = 3.0  # uniform noise for points lives on [-3, 3]^D (normalized units); images on [-1, 1]


@torch.no_grad()
def metropolis_hastings(energy_fn, x, proposal_std, n_steps, generator=None, callback=None):
    """Random-walk Metropolis–Hastings on p ∝ exp(-E) (Metropolis et al. 1953; Hastings 1970):
    x' = x + s z, accept with probability min(1, exp(E(x) - E(x'))) (the symmetric proposal's
    ratio cancels). energy_fn: (N, *shape) -> (N,). The callback also gets the step's acceptance
    rate as `accept`."""
    e = energy_fn(x)                                                            # (N,)
    for i in range(n_steps):
        xp = x + proposal_std * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        ep = energy_fn(xp)
        u = torch.rand(e.shape, generator=generator, device=x.device, dtype=e.dtype)
        acc = torch.log(u) < (e - ep)                                           # (N,) bool
        x = torch.where(S.append_dims(acc, x.ndim), xp, x)
        e = torch.where(acc, ep, e)
        if callback is not None:
            callback(dict(i=i, x=x, t=None, sigma=0.0, denoised=None, accept=float(acc.float().mean())))
    return x


@dataclass
class EBMConfig:
    hidden: int = opt(64, "hidden width of the energy MLP", lo=4, hi=4096)
    depth: int = opt(3, "hidden layers of the energy MLP", lo=1, hi=16)
    act: str = opt("silu", "activation (smooth, since Langevin follows grad E)", choices=("silu", "softplus", "gelu", "tanh"))
    negatives: str = opt("langevin", "MCMC that draws the negative samples x- from the model",
                         "langevin: x <- x - eps/2 grad E + noise sqrt(eps) z; "
                         "mh: accept x + s z w.p. min(1, e^{U(x)-U(x')})",
                         choices=("langevin", "mh"))
    mcmc_steps: int = opt(0, "MCMC steps per training step, short-run chains (0: 20 for Langevin, 50 for "
                          "Metropolis–Hastings, whose blind random walk moves less per step)", lo=0, hi=10000)
    step_size: float = opt(0.05, "Langevin step size eps of the training chains (normalized units^2)",
                           "x <- x - eps/2 grad E(x) + noise sqrt(eps) z", lo=1e-6, hi=10.0, log=True)
    noise: float = opt(0.3, "Langevin noise scale of the training chains; the model density is exp(-E / noise^2), "
                       "so below 1 the net's E is a 'cold' energy (1: plain Langevin on exp(-E))",
                       "x <- x - eps/2 grad E(x) + noise sqrt(eps) z;  p(x) ∝ exp(-E(x) / noise^2)", lo=1e-3, hi=10.0)
    proposal_std: float = opt(0.1, "Metropolis–Hastings random-walk proposal scale s", "x' = x + s z", lo=1e-4, hi=10.0, log=True)
    buffer: bool = opt(True, "start chains from a replay buffer of past negatives (else from fresh noise each step)",
                       "Du & Mordatch 2019: x- <- MCMC(buffer sample), buffer <- x-")
    buffer_size: int = opt(10000, "number of samples the replay buffer keeps", lo=16, hi=10 ** 6)
    reinit: float = opt(0.05, "fraction of buffer draws reset to uniform noise each step", lo=0.0, hi=1.0)
    alpha: float = opt(0.1, "weight of the energy-magnitude regularizer", "alpha (E(x+)^2 + E(x-)^2)", lo=0.0, hi=100.0)

    def validate(self):
        if self.negatives == "langevin" and self.step_size * self.noise ** 2 > 4.0:
            raise ConfigError(f"Langevin noise variance step_size * noise^2 = {self.step_size * self.noise ** 2:g} "
                              "is larger than the data itself; lower step_size or noise")


@dataclass
class EBMLangevinOptions(LangevinOptions):
    # U = E / noise^2 is steep (the training chains step eps noise^2 = 0.0045 on it): smaller steps, more of them
    step_size: float = opt(0.004, "Langevin step size eps on the model density", "x <- x + eps/2 grad log p(x) + sqrt(eps) z",
                           lo=1e-7, hi=10.0, log=True)
    n_steps: int = opt(500, "number of Langevin steps", lo=1, hi=100000)
    init: str = opt("uniform", "where the chains start: uniform noise on the box, N(0, I), or the replay buffer",
                    choices=("uniform", "gaussian", "buffer"))


@dataclass
class MHOptions:
    proposal_std: float = opt(0.1, "random-walk proposal scale s", "x' = x + s z, accept w.p. min(1, exp(E(x) - E(x')))",
                              lo=1e-5, hi=10.0, log=True)
    n_steps: int = opt(500, "number of Metropolis–Hastings steps", lo=1, hi=100000)
    init: str = opt("uniform", "where the chains start", choices=("uniform", "gaussian", "buffer"))


class EBM(Family):
    name = "ebm"
    title = "Energy-based model (contrastive divergence)"
    summary = ("Learn an energy E(x): push it down on data and up on samples drawn from the model "
               "by short MCMC runs (Langevin or Metropolis–Hastings) from a replay buffer.")
    capabilities = frozenset({"energy", "score"})
    Config = EBMConfig
    samplers = {"langevin": EBMLangevinOptions, "mh": MHOptions}
    default_sampler = "langevin"
    field_notes = {"log_density": "unnormalized: -U(x) = -E(x) / noise^2; the normalizer log Z is unknown"}

    def __init__(self, cfg, data_shape, device, context=None):
        super().__init__(cfg, data_shape, device, context)
        self.dim = int(np.prod(data_shape))
        self.box = 1.0 if len(self.data_shape) > 1 else BOX
        self.net = EnergyMLP(self.dim, cfg.hidden, cfg.depth, cfg.act).to(self.device)
        # the chains x <- x - eps/2 grad E + noise sqrt(eps) z are exact Langevin, with step
        # eps noise^2, on U = E / noise^2: the model density is exp(-E / noise^2) / Z
        self.temperature = cfg.noise ** 2
        self.buffer = None                      # (buffer_size, *data_shape), created on the first step
        self.negatives = None                   # (B, *data_shape) of the last training step

    # ---------------------------------------------------------------- energy & score
    def energy(self, x, net=None):
        """The model energy U(x) = E_theta(x) / noise^2 (p ∝ exp(-U)): (B, *shape) -> (B,)."""
        return (net or self.model)(x.reshape(len(x), -1)) / self.temperature

    def score(self, x, net=None):
        """s(x) = -grad_x U(x) = grad_x log p(x): (B, *shape)."""
        return energy_score(lambda y: self.energy(y, net), x)

    def _noise(self, n, kind, generator):
        shape = (n,) + self.data_shape
        if kind == "gaussian":
            return torch.randn(shape, generator=generator, device=self.device)
        return (torch.rand(shape, generator=generator, device=self.device) * 2 - 1) * self.box

    # ---------------------------------------------------------------- MCMC
    def run_chains(self, x, net, generator=None, callback=None, n_steps=None):
        """The training-time MCMC (cfg.negatives) on energy `net`, from x."""
        c = self.cfg
        n = n_steps or c.mcmc_steps or (50 if c.negatives == "mh" else 20)
        if c.negatives == "mh":
            return metropolis_hastings(lambda y: self.energy(y, net), x, c.proposal_std, n, generator, callback)
        # x <- x - eps/2 grad E + noise sqrt(eps) z  ==  Langevin with step eps noise^2 on U = E / noise^2
        return S.langevin(lambda y: self.score(y, net), x, c.step_size * self.temperature, n, generator, callback)

    def _chain_starts(self, B, generator):
        c = self.cfg
        if not c.buffer:
            return self._noise(B, "uniform", generator), None
        if self.buffer is None:
            self.buffer = self._noise(c.buffer_size, "uniform", generator)
        idx = torch.randint(0, len(self.buffer), (B,), generator=generator, device=self.device)
        x = self.buffer[idx]
        fresh = torch.rand(B, generator=generator, device=self.device) < c.reinit                # (B,)
        x = torch.where(S.append_dims(fresh, x.ndim), self._noise(B, "uniform", generator), x)
        return x, idx

    def loss(self, x, generator=None):
        c = self.cfg
        B = x.shape[0]
        start, idx = self._chain_starts(B, generator)
        self.net.requires_grad_(False)          # the chains need grad wrt x only
        acc = []
        neg = self.run_chains(start, self.net, generator,
                              (lambda d: acc.append(d["accept"])) if c.negatives == "mh" else None).detach()
        self.net.requires_grad_(True)
        if idx is not None:
            self.buffer[idx] = neg
        self.negatives = neg
        flat = lambda y: self.net(y.reshape(len(y), -1))                                        # raw E_theta
        e_pos, e_neg = flat(x), flat(neg)                                                        # (B,), (B,)
        cd = e_pos.mean() - e_neg.mean()
        reg = c.alpha * (e_pos.pow(2).mean() + e_neg.pow(2).mean())
        terms = dict(cd=cd.detach(), e_data=e_pos.mean().detach(), e_model=e_neg.mean().detach(), reg=reg.detach())
        if acc:
            terms["accept"] = sum(acc) / len(acc)   # MH acceptance rate of this step's chains
        return cd + reg, terms

    # ---------------------------------------------------------------- sampling & views
    def sample(self, n, sampler=None, options=None, generator=None, callback=None):
        name, o = self.sampler_options(sampler, options)
        if o.init == "buffer" and self.buffer is not None:
            x = self.buffer[torch.randint(0, len(self.buffer), (n,), generator=generator, device=self.device)].clone()
        else:
            x = self._noise(n, "gaussian" if o.init == "gaussian" else "uniform", generator)
        net = self.model
        if name == "mh":
            return metropolis_hastings(lambda y: self.energy(y, net), x, o.proposal_std, o.n_steps, generator, callback)
        return S.langevin(lambda y: self.score(y, net), x, o.step_size, o.n_steps, generator, callback)

    def field(self, grid, level=None):
        if self.dim != 2:
            return {}
        e = self.energy(grid).detach()
        return dict(energy=e.cpu().numpy(), log_density=(-e).cpu().numpy(), score=self.score(grid).cpu().numpy())

    def views(self, request=None):
        if self.negatives is None:
            return {}
        neg = self.negatives.detach().cpu()
        n = int((request or {}).get("n", 512))
        if self.dim == 2 and len(self.data_shape) == 1:
            return dict(chains=dict(kind="scatter", title="negative samples x- (MCMC chains)", x=neg[:n].numpy(),
                                    space="data"))
        return dict(chains=dict(kind="images", title="negative samples x- (MCMC chains)",
                                images=neg[:min(n, 64)].clamp(-1, 1).numpy(), nrow=8))

    def extra_state(self):
        return {} if self.buffer is None else {"buffer": self.buffer}

    def load_extra_state(self, sd):
        if "buffer" in sd:
            self.buffer = sd["buffer"].to(self.device)
