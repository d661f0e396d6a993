"""Denoising score matching at one noise level (Vincent 2011), sampled with Langevin dynamics.

Perturb the data, x~ = x + sigma z with z ~ N(0, I), and regress the network on the score of the
perturbation kernel, grad log q_sigma(x~|x) = -(x~ - x) / sigma^2 = -z / sigma:

    L(theta) = E_{x, z} 1/2 || s_theta(x + sigma z) + z / sigma ||^2            (Vincent 2011, eq. 11)

which equals, up to a constant, the explicit score matching loss on the smoothed density
q_sigma = p_data * N(0, sigma^2 I): 1/2 E ||s_theta(x~) - grad log q_sigma(x~)||^2 (course notes
000, "Denoising score matching", Theorem 1). The minimizer is the score of q_sigma, not of p_data:
a small sigma is close to p_data but leaves the score unlearned away from the data, a large sigma
blurs the data. With `weighting = sigma2` the loss is multiplied by sigma^2 (Song & Ermon 2019's
lambda(sigma) = sigma^2), i.e. 1/2 E || sigma s_theta(x~) + z ||^2, which keeps its scale O(1).

The score is either a network output (model = score) or minus the gradient of a scalar energy
(model = energy, s = -grad_x E_theta, an EBM trained by DSM). Samples come from unadjusted
Langevin dynamics x <- x + eps/2 s(x) + sqrt(eps) z (course notes 000, "Langevin dynamics"),
which with a single noise level is slow to move between modes and gets mode weights wrong: the
point the course makes before annealing (NCSN).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .. import samplers as S
from ..config import ConfigError, opt
from ..nets import EnergyMLP, energy_score, mlp
from .noise_model import FixedLevel, NoiseModel

SMOOTH_ACTS = ("silu", "softplus", "tanh", "gelu")


@dataclass
class ScoreLangevinOptions:
    """Langevin options for the single-level score families: LangevinOptions' step_size and
    n_steps (not its sigma: there is one noise level), plus where the particles start."""
    step_size: float = opt(0.01, "Langevin step size eps (normalized data units squared)",
                           "x <- x + eps/2 s(x) + sqrt(eps) z", lo=1e-7, hi=10.0, log=True)
    n_steps: int = opt(500, "number of Langevin steps", lo=1, hi=100000)
    init: str = opt("gaussian", "where the particles start: N(0, I) or uniform on [-3, 3]^D "
                    "(normalized units; the data has mean 0 and unit spread)",
                    "x_0 ~ N(0, I) or U[-3, 3]^D", choices=("gaussian", "uniform"))


class FlatMLP(nn.Module):
    """Unconditional score net s(x): flattens x (B, *shape) to (B, D), runs an MLP, reshapes back."""

    def __init__(self, dim: int, hidden: int, depth: int, act: str):
        super().__init__()
        self.net = mlp(dim, dim, hidden, depth, act)

    def forward(self, x):  # (B, *shape) -> (B, *shape)
        return self.net(x.reshape(x.shape[0], -1)).reshape(x.shape)


class FlatEnergy(nn.Module):
    """Scalar energy E(x): (B, *shape) -> (B,), an EnergyMLP on the flattened input."""

    def __init__(self, dim: int, hidden: int, depth: int, act: str):
        super().__init__()
        self.net = EnergyMLP(dim, hidden, depth, act)

    def forward(self, x):
        return self.net(x.reshape(x.shape[0], -1))


def make_score_net(data_shape, model: str, hidden: int, depth: int, act: str) -> nn.Module:
    dim = math.prod(data_shape)
    if model == "energy":
        return FlatEnergy(dim, hidden, depth, act)
    return FlatMLP(dim, hidden, depth, act)


def langevin_init(n, data_shape, init, generator, device):
    """Starting particles (n, *data_shape) in normalized coordinates."""
    shape = (n,) + tuple(data_shape)
    if init == "uniform":
        return torch.rand(shape, generator=generator, device=device) * 6 - 3
    return torch.randn(shape, generator=generator, device=device)


class SingleScoreFamily(NoiseModel):
    """Shared machinery of the unconditional score families (dsm, score_matching): a score net
    or an energy net, a Langevin sampler, score/energy fields. Through the NoiseModel adapter the
    model is read at its one noise level (`level_sigma`) whatever sigma is asked for: the samplers
    that walk a range of levels do not apply, so `samplers` holds only Langevin."""

    capabilities = frozenset({"score"})
    native_samplers = {"langevin": ScoreLangevinOptions}
    samplers = native_samplers
    default_sampler = "langevin"
    level = None

    def __init__(self, cfg, data_shape, device, context=None):
        super().__init__(cfg, data_shape, device, context)
        if cfg.model == "energy":
            self.capabilities = frozenset({"score", "energy"})
        self.net = make_score_net(self.data_shape, cfg.model, cfg.hidden, cfg.depth, cfg.act).to(self.device)
        self.process = FixedLevel(self.level_sigma())

    def level_sigma(self) -> float:
        """The noise level the learned score belongs to."""
        raise NotImplementedError

    def net_score(self, x, net=None, create_graph: bool = False):
        """s_theta(x), (B, *shape); for an energy net -grad_x E (graph kept when it enters a loss)."""
        net = net or self.model
        if self.cfg.model == "energy":
            return energy_score(net, x, create_graph=create_graph)
        return net(x)

    def score(self, x, sigma=None):
        """The learned score s_theta(x) (its one level; sigma is ignored)."""
        return self.net_score(x)

    def eps(self, x, sigma):
        """eps-hat = -sigma s_theta(x): the one learned score read as the score at any level."""
        sigma = torch.as_tensor(sigma, device=x.device, dtype=x.dtype).reshape(-1).expand(x.shape[0])
        return -torch.reshape(sigma, (-1,) + (1,) * (x.ndim - 1)) * self.net_score(x)

    def native_eps(self, x_t, t):
        return self.eps(x_t, t)

    def sample_native(self, name, o, n, generator=None, callback=None):
        x = langevin_init(n, self.data_shape, o.init, generator, self.device)
        return S.langevin(lambda y: self.net_score(y), x, o.step_size, o.n_steps, generator, callback)

    def budget_options(self, sampler, nfe):
        return dict(n_steps=nfe) if sampler == "langevin" else None

    def field(self, grid, level=None):
        if self.cfg.model == "energy":
            s = self.net_score(grid)                                    # needs autograd inside
        else:
            with torch.no_grad():
                s = self.net_score(grid)
        out = dict(score=s.detach().cpu().numpy())
        if self.cfg.model == "energy":
            with torch.no_grad():
                out["energy"] = self.model(grid).cpu().numpy()
        return out

    def schedule(self):
        return {}


@dataclass
class DSMConfig:
    sigma: float = opt(0.1, "noise level sigma of the perturbation (normalized data units)",
                       "x~ = x + sigma z;  L = 1/2 E || s(x~) + z / sigma ||^2 (Vincent 2011)",
                       lo=1e-3, hi=10.0, log=True)
    weighting: str = opt("sigma2", "loss weight: sigma2 multiplies the loss by sigma^2 so it stays O(1); "
                         "none is Vincent's loss as written",
                         "sigma2: 1/2 E || sigma s(x~) + z ||^2", choices=("sigma2", "none"))
    model: str = opt("score", "what the network outputs: the score directly, or a scalar energy whose "
                     "negative gradient is the score (an EBM trained by DSM)",
                     "energy: s(x) = -grad_x E_theta(x)", choices=("score", "energy"))
    hidden: int = opt(128, "hidden width of the MLP", lo=4, hi=4096)
    depth: int = opt(3, "hidden layers of the MLP", lo=1, hi=16)
    act: str = opt("silu", "activation (smooth, so energy gradients and Jacobians are well defined)",
                   choices=SMOOTH_ACTS)

    def validate(self):
        if not self.sigma > 0:
            raise ConfigError(f"sigma must be positive, got {self.sigma}")


class DSM(SingleScoreFamily):
    name = "dsm"
    title = "Denoising score matching"
    summary = "Learn the score of the data blurred by one noise level sigma, then sample with Langevin dynamics."
    Config = DSMConfig

    def loss(self, x, generator=None):
        sigma = self.cfg.sigma
        z = torch.randn(x.shape, generator=generator, device=x.device)   # (B, *shape)
        xt = x + sigma * z                                              # x~ ~ q_sigma(x~ | x)
        s = self.net_score(xt, self.net, create_graph=True)             # (B, *shape)
        if self.cfg.weighting == "sigma2":
            r = sigma * s + z
        else:
            r = s + z / sigma
        loss = 0.5 * r.reshape(len(x), -1).pow(2).sum(1).mean()
        return loss, {}

    def level_sigma(self):
        """The learned field is the score of x + sigma z: alpha = 1, sigma fixed."""
        return float(self.cfg.sigma)
