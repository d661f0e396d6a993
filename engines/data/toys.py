"""2D toy datasets, each `fn(n, generator) -> (n, 2)` float32 in its own coordinates.

moons and the swiss roll come from scikit-learn; the rest are generated here.
Mixture datasets also expose their analytic `GaussianMixture` through `MIXTURES`.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .mixture import GaussianMixture


def _rs(g: torch.Generator) -> int:
    return int(torch.randint(0, 2 ** 31 - 1, (1,), generator=g))


def moons(n, g):
    from sklearn.datasets import make_moons
    x, _ = make_moons(n, noise=0.05, random_state=_rs(g))
    return torch.from_numpy(x).float()


def swiss_roll(n, g):
    from sklearn.datasets import make_swiss_roll
    x, _ = make_swiss_roll(n, noise=0.5, random_state=_rs(g))
    return torch.from_numpy(x[:, [0, 2]] / 5.0).float()


def circles(n, g):
    """Two concentric rings, radii 1 and 2, points split in proportion to circumference."""
    r = torch.where(torch.rand(n, generator=g) < 1 / 3, 1.0, 2.0)
    th = torch.rand(n, generator=g) * 2 * math.pi
    x = torch.stack([r * th.cos(), r * th.sin()], 1)
    return x + 0.05 * torch.randn(n, 2, generator=g)


def checkerboard(n, g):
    """Uniform on the black squares of a 4x4 board on [-2, 2]^2."""
    x1 = torch.rand(n, generator=g) * 4 - 2
    x2_ = torch.rand(n, generator=g) - torch.randint(0, 2, (n,), generator=g).float() * 2
    x2 = x2_ + (torch.floor(x1) % 2)
    return torch.stack([x1, x2], 1) * 1.0


def spirals(n, g):
    """Two interleaved Archimedean spirals."""
    t = torch.sqrt(torch.rand(n, generator=g)) * 3 * math.pi
    arm = torch.randint(0, 2, (n,), generator=g).float() * math.pi
    r = t / (3 * math.pi) * 2.5
    x = torch.stack([r * torch.cos(t + arm), r * torch.sin(t + arm)], 1)
    return x + 0.05 * torch.randn(n, 2, generator=g)


def pinwheel(n, g, arms=5, radial_std=0.3, tangential_std=0.1, rate=0.25):
    """Johnson et al. 2016 pinwheel: arms of Gaussians bent by a radius-dependent rotation."""
    labels = torch.randint(0, arms, (n,), generator=g)
    feats = torch.randn(n, 2, generator=g) * torch.tensor([radial_std, tangential_std])
    feats[:, 0] += 1.0
    angle = labels.float() * 2 * math.pi / arms + rate * torch.exp(feats[:, 0])
    c, s = torch.cos(angle), torch.sin(angle)
    x = torch.stack([c * feats[:, 0] - s * feats[:, 1], s * feats[:, 0] + c * feats[:, 1]], 1)
    return 2 * x


def line(n, g):
    """A noisy segment from (-2, -1) to (2, 1): a one-dimensional manifold."""
    u = torch.rand(n, generator=g) * 4 - 2
    return torch.stack([u, u / 2], 1) + 0.03 * torch.randn(n, 2, generator=g)


def _ring_mixture(k, radius, std):
    th = torch.arange(k) * 2 * math.pi / k
    return GaussianMixture(torch.ones(k), radius * torch.stack([th.cos(), th.sin()], 1), std)


def _grid_mixture(side=5, spacing=1.0, std=0.05):
    c = (torch.arange(side) - (side - 1) / 2) * spacing
    means = torch.cartesian_prod(c, c)
    return GaussianMixture(torch.ones(side * side), means, std)


def two_gaussians():
    """Two unequal modes, weights 0.8 / 0.2: where plain Langevin gets the weights wrong."""
    return GaussianMixture([0.8, 0.2], [[-2.0, -2.0], [2.0, 2.0]], 0.4)


MIXTURES = {
    "8gaussians": lambda: _ring_mixture(8, 2.0, 0.1),
    "25gaussians": lambda: _grid_mixture(5, 1.0, 0.05),
    "gmm": two_gaussians,
}

GENERATORS = {
    "moons": moons,
    "swiss_roll": swiss_roll,
    "circles": circles,
    "checkerboard": checkerboard,
    "spirals": spirals,
    "pinwheel": pinwheel,
    "line": line,
}


def gmm(weights=(0.8, 0.2), means=((-2.0, -2.0), (2.0, 2.0)), std=0.4) -> GaussianMixture:
    """A configurable mixture (the `gmm` dataset uses the defaults)."""
    return GaussianMixture(np.asarray(weights), np.asarray(means), std)
