"""Autoregressive models: the chain rule p(x) = p(x_1) p(x_2 | x_1) ... p(x_D | x_<D) with each
conditional a simple distribution whose parameters a network computes from the earlier
coordinates (course notes 000, "Bayes networks" and "autoregressive models"). The likelihood is
exact, and sampling is sequential: x_1 first, then x_2 given x_1, and so on.

Points (N, D), in normalized coordinates; `conditional` picks the 1D distributions:
  - histogram:        x_d is binned into B equal bins on [-R, R]; p(bin | x_<d) is a categorical
                      (learned logits for d = 1, an MLP of x_<d after that), uniform within a bin:
                      p(x_d | x_<d) = Cat(bin(x_d); softmax(f(x_<d))) / w,  w = 2R / B
                      (a piecewise-constant density, so the NLL is in the same continuous units
                      as any other family's).
  - logistic_mixture: p(x_d | x_<d) = sum_m pi_m Logistic(x_d; mu_m, s_m) with (pi, mu, log s) from
                      an MLP of x_<d (continuous mixtures of logistics, cf. PixelCNN++, Salimans
                      et al. 2017, without the discretization).
Binary images (N, 1, H, W) in {-1, 1} (pixels are binarized by x > 0): MADE (Germain et al. 2015),
one masked MLP whose output d only sees pixels < d in raster order, with Bernoulli conditionals
p(x_d = 1 | x_<d) = sigmoid(logit_d); the NLL is the summed binary cross-entropy in nats.
Units: on points the likelihood is a density in normalized coordinates (the Run reports nats per
point in data units); on images it is the probability of the binarized image, a discrete
distribution that cannot pile mass on a grid, so it needs no dequantization and its bits/dim
-log2 P(x) / D are exact and >= 0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import opt
from ..nets import mlp
from .base import Family

OUTSIDE_LOGP = -30.0  # log-density reported outside the histogram's range [-R, R] (truly 0 there)


@dataclass
class AutoregressiveConfig:
    conditional: str = opt("histogram", "the 1D distribution of each coordinate given the earlier ones (points only)",
                           "histogram: Cat(bin; softmax f(x_<d)) / w; logistic_mixture: sum_m pi_m Logistic(mu_m, s_m)",
                           choices=("histogram", "logistic_mixture"))
    bins: int = opt(64, "number of bins B per coordinate (histogram)", "w = 2 R / B", lo=2, hi=4096)
    range: float = opt(4.0, "the histogram covers [-R, R] in normalized units (about R standard deviations)",
                       "x_d in [-R, R]", lo=0.5, hi=50.0)
    components: int = opt(8, "logistics per mixture (logistic_mixture)", "sum_{m=1}^{M} pi_m Logistic(mu_m, s_m)", lo=1, hi=256)
    hidden: int = opt(128, "hidden width of the conditional MLPs (and of MADE for images)", lo=4, hi=4096)
    depth: int = opt(2, "hidden layers of the conditional MLPs (and of MADE)", lo=1, hi=8)


@dataclass
class AncestralOptions:
    temperature: float = opt(1.0, "sampling temperature: below 1 sharpens every conditional, above 1 flattens it",
                             "logits / T (histogram, Bernoulli); mixture weights logits / T and scales s T", lo=0.05, hi=5.0)


# ----------------------------------------------------------------------------- 1D conditionals on points

def logistic_logpdf(x, mu, log_s):
    """log of the logistic density (1/s) e^{-z} / (1 + e^{-z})^2, z = (x - mu) / s."""
    z = (x - mu) * torch.exp(-log_s)
    return -z - log_s - 2 * F.softplus(-z)


class PointAR(nn.Module):
    """p(x) = prod_d p(x_d | x_<d) for points (B, D): a learned marginal for d = 1 and an MLP of
    x_<d for each later coordinate, each producing the parameters of one 1D distribution."""

    def __init__(self, dim: int, kind: str, bins: int, R: float, M: int, hidden: int, depth: int):
        super().__init__()
        self.kind, self.bins, self.R, self.M = kind, bins, R, M
        n_out = bins if kind == "histogram" else 3 * M
        first = torch.zeros(n_out)
        if kind == "logistic_mixture":  # spread the first coordinate's logistics over [-2, 2]
            first[M:2 * M] = torch.linspace(-2, 2, M)
        self.first = nn.Parameter(first)                                             # (n_out,)
        self.conds = nn.ModuleList(mlp(d, n_out, hidden, depth) for d in range(1, dim))

    def params(self, x, d):
        """Distribution parameters of coordinate d given x[:, :d]: (B, n_out)."""
        if d == 0:
            return self.first.expand(x.shape[0], -1)
        return self.conds[d - 1](x[:, :d] / self.R)

    def _mix(self, p, temperature=1.0):  # (B, 3M) -> logits, mu, log_s, each (B, M)
        M = self.M
        logit, mu, log_s = p[:, :M], p[:, M:2 * M], p[:, 2 * M:].clamp(-7.0, 5.0)
        return logit / temperature, mu, log_s + math.log(temperature)

    def log_prob_1d(self, p, v):
        """log p(v) of a 1D conditional with parameters p (B, n_out) at values v (B,)."""
        if self.kind == "histogram":
            w = 2 * self.R / self.bins
            idx = ((v + self.R) / w).floor().long().clamp(0, self.bins - 1)            # (B,)
            lp = F.log_softmax(p, -1).gather(1, idx[:, None])[:, 0] - math.log(w)
            return torch.where(v.abs() <= self.R, lp, torch.full_like(lp, OUTSIDE_LOGP))
        logit, mu, log_s = self._mix(p)
        return torch.logsumexp(F.log_softmax(logit, -1) + logistic_logpdf(v[:, None], mu, log_s), -1)

    def sample_1d(self, p, temperature, generator):
        B = p.shape[0]
        u = torch.rand(B, generator=generator, device=p.device)
        if self.kind == "histogram":
            k = torch.multinomial(F.softmax(p / temperature, -1), 1, generator=generator)[:, 0]   # (B,)
            w = 2 * self.R / self.bins
            return -self.R + (k.float() + u) * w                                     # uniform within the bin
        logit, mu, log_s = self._mix(p, temperature)
        m = torch.multinomial(F.softmax(logit, -1), 1, generator=generator)           # (B, 1)
        u = u.clamp(1e-6, 1 - 1e-6)
        return mu.gather(1, m)[:, 0] + log_s.gather(1, m)[:, 0].exp() * (torch.log(u) - torch.log1p(-u))

    def log_prob(self, x):  # (B, D) -> (B,)
        return sum(self.log_prob_1d(self.params(x, d), x[:, d]) for d in range(x.shape[1]))


# ----------------------------------------------------------------------------- MADE for binary images

class MaskedLinear(nn.Linear):
    def __init__(self, d_in: int, d_out: int, mask: torch.Tensor):
        super().__init__(d_in, d_out)
        self.register_buffer("mask", mask)                                          # (d_out, d_in)

    def forward(self, x):
        return F.linear(x, self.weight * self.mask, self.bias)


class BinaryMADE(nn.Module):
    """MADE (Germain et al. 2015, eqs. 12-13): degrees m(input d) = d, hidden degrees cycling
    through 1..D-1, a hidden unit sees inputs with degree <= its own and output d sees hidden units
    with degree < d. The logit of pixel d (raster order) thus depends on pixels < d only."""

    def __init__(self, D: int, hidden: int, depth: int):
        super().__init__()
        deg_in = torch.arange(1, D + 1)                                             # (D,)
        degs = [deg_in]
        layers = []
        for _ in range(depth):
            h = torch.arange(hidden) % max(D - 1, 1) + 1                            # (H,) in 1..D-1
            layers += [MaskedLinear(len(degs[-1]), hidden, (h[:, None] >= degs[-1][None, :]).float()), nn.ReLU()]
            degs.append(h)
        layers.append(MaskedLinear(len(degs[-1]), D, (deg_in[:, None] > degs[-1][None, :]).float()))
        self.net = nn.Sequential(*layers)

    def forward(self, x):  # (B, D) in {0, 1} -> logits (B, D)
        return self.net(x * 2 - 1)


class Autoregressive(Family):
    name = "autoregressive"
    title = "Autoregressive (histogram / logistic mixture / MADE)"
    summary = ("Factor p(x) with the chain rule: p(x1) p(x2|x1) ...; each conditional is a 1D distribution "
               "from a network. Exact likelihood, sequential sampling.")
    capabilities = frozenset({"density", "likelihood"})
    Config = AutoregressiveConfig
    samplers = {"ancestral": AncestralOptions}
    default_sampler = "ancestral"

    def __init__(self, cfg, data_shape, device, context=None):
        super().__init__(cfg, data_shape, device, context)
        self.images = len(self.data_shape) > 1
        self.dim = int(np.prod(data_shape))
        # exact and cheap, so the Run reports it: a density on points, a probability of binary images
        self.likelihood_kind = "binary" if self.images else "density"
        if self.images:
            self.capabilities = self.capabilities | {"images"}
            self.net = BinaryMADE(self.dim, cfg.hidden, cfg.depth).to(self.device)
        else:
            self.net = PointAR(self.dim, cfg.conditional, cfg.bins, cfg.range, cfg.components, cfg.hidden,
                               cfg.depth).to(self.device)

    @staticmethod
    def binarize(x):  # images in [-1, 1] -> {0, 1}
        return (x > 0).float()

    def _log_prob(self, x, net):
        B = x.shape[0]
        if self.images:
            v = self.binarize(x.reshape(B, -1))                                      # (B, D)
            return -F.binary_cross_entropy_with_logits(net(v), v, reduction="none").sum(1)
        return net.log_prob(x)

    def loss(self, x, generator=None):
        """-mean log p(x): nats per example (normalized coordinates on points); on binarized images
        also bits/dim, -log2 P(x) / D (a density's bits/dim would depend on the coordinates)."""
        nll = -self._log_prob(x, self.net).mean()
        if self.images:
            return nll, dict(bits_per_dim=(nll / (self.dim * math.log(2))).detach())
        return nll, {}

    @torch.no_grad()
    def log_likelihood(self, x):
        """Exact log p(x) (nats) in normalized units for points, of the binarized image for images: (B,)."""
        return self._log_prob(x, self.model)

    @torch.no_grad()
    def sample(self, n, sampler=None, options=None, generator=None, callback=None):
        """Ancestral sampling, one coordinate (pixel) at a time; the callback fires after each one
        with the not-yet-sampled coordinates at 0 (grey pixels)."""
        _, o = self.sampler_options(sampler, options)
        net, T = self.model, o.temperature
        x = torch.zeros((n, self.dim), device=self.device)
        for d in range(self.dim):
            if self.images:
                logit = net(x.clamp(min=0))[:, d] / T          # unsampled pixels enter as 0 = off
                bit = torch.bernoulli(torch.sigmoid(logit), generator=generator)
                x[:, d] = bit * 2 - 1
            else:
                x[:, d] = net.sample_1d(net.params(x, d), T, generator)
            if callback is not None:
                callback(dict(i=d, x=x.reshape((n,) + self.data_shape).clone(), t=None, sigma=None, denoised=None))
        return x.reshape((n,) + self.data_shape)

    @torch.no_grad()
    def field(self, grid, level=None):
        if self.images or self.dim != 2:
            return {}
        return dict(log_density=self.model.log_prob(grid).cpu().numpy())

    @torch.no_grad()
    def views(self, request=None):
        """Conditionals p(x2 | x1 = c) for a few c, and p(x1), as curves in normalized units."""
        if self.images or self.dim != 2:
            return {}
        net = self.model
        lim = self.cfg.range
        v = torch.linspace(-lim, lim, 401, device=self.device)                      # (401,)
        cs = (request or {}).get("x1_values", (-1.5, -0.5, 0.5, 1.5))
        xs = v.cpu().numpy()
        curves = {"p(x1)": (xs, net.log_prob_1d(net.params(v[:, None], 0), v).exp().cpu().numpy())}
        for c in cs:
            x = torch.stack([torch.full_like(v, float(c)), v], 1)                   # (401, 2)
            curves[f"p(x2 | x1={c:g})"] = (xs, net.log_prob_1d(net.params(x, 1), v).exp().cpu().numpy())
        return dict(conditionals=dict(kind="curves", title="conditionals (normalized units)", curves=curves))
