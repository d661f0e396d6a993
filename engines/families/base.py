"""The Family protocol: what every model family implements, and shared defaults.

A family works in normalized coordinates (the Run maps data in and samples out). It owns
`self.net` (every trained module, so `state_dict` covers them) and may be given an EMA copy
as `self.ema_net` by the Run; sampling and views read `self.model` (the EMA when present).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..config import build


@dataclass
class NoOptions:
    pass


class Family:
    name: str = ""
    title: str = ""                      # human name for pickers
    summary: str = ""                    # one line for the app's info box
    capabilities: frozenset = frozenset()  # score, energy, density, likelihood, latent, discriminator,
                                         # noise_levels, images, analytic
    Config = NoOptions
    samplers: dict = {}                  # sampler name -> options dataclass
    default_sampler: str = ""
    level: dict | None = None            # field slider: dict(kind="sigma"|"t", lo, hi, log, default)
    trainable: bool = True

    def __init__(self, cfg, data_shape: tuple, device, context: dict | None = None):
        self.cfg = cfg
        self.data_shape = tuple(data_shape)
        self.device = torch.device(device)
        self.context = context or {}     # e.g. the analytic mixture in normalized coordinates
        self.net: nn.Module = nn.Module()
        self.ema_net: nn.Module | None = None

    @classmethod
    def train_defaults(cls, is_image: bool) -> dict:
        """TrainConfig values this family needs instead of the global defaults (batch, lr, ...)."""
        return {}

    # ---------------------------------------------------------------- training
    @property
    def model(self) -> nn.Module:
        return self.ema_net if self.ema_net is not None else self.net

    def loss(self, batch: torch.Tensor, generator=None) -> tuple[torch.Tensor, dict]:
        """Scalar loss and its named terms (floats or 0-d tensors) for one batch (B, *data_shape)."""
        raise NotImplementedError

    def optimizers(self, make) -> list:
        """`make(params)` builds one optimizer from the run's settings; GANs make two."""
        return [make(self.net.parameters())]

    def train_step(self, batch, optimizers, clip: float, generator=None) -> dict:
        """One optimization step; returns the loss terms (tensors, detached). NaN-safe: a
        non-finite loss skips the update and is reported by the Run."""
        (opt,) = optimizers
        loss, terms = self.loss(batch, generator)
        opt.zero_grad(set_to_none=True)
        value = loss.item()  # one cheap read on CPU (a sync point on GPU) that guards the update
        if not math.isfinite(value):
            return dict(loss=value, **terms)
        loss.backward()
        if clip > 0:
            nn.utils.clip_grad_norm_(self.parameters, clip, foreach=True)
        opt.step()
        return dict(loss=value, **terms)

    @property
    def parameters(self) -> list:
        """self.net's parameters as a cached list (walking the module tree each step costs)."""
        if getattr(self, "_param_cache", None) is None:
            self._param_cache = list(self.net.parameters())
        return self._param_cache

    # ---------------------------------------------------------------- sampling & views
    def sampler_options(self, sampler: str | None, options: dict | None):
        name = sampler or self.default_sampler
        if name not in self.samplers:
            raise ValueError(f"{self.name} has no sampler {name!r}; choose one of {', '.join(self.samplers)}")
        return name, build(self.samplers[name], options or {})

    def sample(self, n: int, sampler: str | None = None, options: dict | None = None,
               generator=None, callback=None) -> torch.Tensor:
        raise NotImplementedError

    def field(self, grid: torch.Tensor, level: float | None = None) -> dict:
        """Views on a grid (G, D) of normalized points: any of score (G, D), energy (G,),
        log_density (G,), discriminator (G,). Numpy arrays."""
        return {}

    def views(self, request: dict | None = None) -> dict:
        """Family-specific pictures for the app's extra panels, name -> dict(kind=..., title=...):
          scatter:   x (N, 2), optional color (N,) floats            (e.g. a VAE's latent codes)
          polylines: lines, a list of (M, 2) arrays                   (a warped grid, flow layers)
          ellipses:  centers (K, 2), covs (K, 2, 2), weights (K,)    (mixture components)
          images:    images (N, C, H, W) in [-1, 1], optional nrow   (filters, image samples)
          heatmap:   xs (R,), ys (R,), z (R, R)                       (a conditional density)
          curves:    curves {name: (x, y)}                            (anything over an axis)
          arrows:    x (N, 2), v (N, 2)                               (gradients on fake samples)
        Add space="data" when the coordinates are normalized data coordinates: the Run maps
        them to the dataset's own coordinates. Arrays are numpy. `request` may carry n, level."""
        return {}

    def schedule(self) -> dict:
        """Curves for the schedule panel: {name: (x array, y array)}, plus 'x_label'."""
        return {}

    def sampler_levels(self, sampler: str | None, options) -> np.ndarray | None:
        """The noise levels a sampler walks through (for the schedule marker), if any."""
        return None

    def log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{self.name} has no tractable likelihood")

    def state_dict(self):
        return self.net.state_dict()

    def load_state_dict(self, sd):
        self.net.load_state_dict(sd)

    def extra_state(self) -> dict:
        """Tensors beyond the net worth saving (buffers like a replay buffer)."""
        return {}


def discrete_time_level(T: int, default: int) -> dict:
    """The noise-level slider of a discrete-time chain (DDPM, D3PM). The engines index its steps
    0..T-1 (the samplers count from 0, arrays are 0-based); the papers number them t = 1..T
    (Ho et al. 2020, eq. 2-4: q(x_t | x_{t-1}) for t = 1..T). `display_offset` = 1 says so:
    what the user sees is index + 1. The one place a family states how its time is shown."""
    return dict(kind="t", lo=0, hi=T - 1, log=False, default=default, integer=True, display_offset=1)


def time_display_offset(level_info: dict | None) -> int:
    """What to add to an engine's time index to show the papers' t: 1 for discrete-time chains
    (shown 1..T), 0 for continuous t in [0, 1] (score SDEs, flow matching) and for sigma levels."""
    if not level_info or level_info.get("kind") != "t":
        return 0
    return int(level_info.get("display_offset", 0))


def grid_lines(lo: float = -3.0, hi: float = 3.0, n_lines: int = 13, n_points: int = 64) -> torch.Tensor:
    """A square grid in a 2D space as polylines: (2 n_lines, n_points, 2), the first n_lines
    horizontal (y fixed), the rest vertical. Push it through a map to draw how the map warps space
    (a VAE decoder, a GAN generator, the layers of a flow)."""
    c = torch.linspace(lo, hi, n_lines)                              # (L,)
    s = torch.linspace(lo, hi, n_points)                             # (M,)
    horiz = torch.stack([s.expand(n_lines, -1), c[:, None].expand(-1, n_points)], -1)  # (L, M, 2)
    return torch.cat([horiz, horiz.flip(-1)], 0)                     # (2L, M, 2)


def latent_grid(r: int, latent_dim: int, lo: float = -2.0, hi: float = 2.0, device=None) -> torch.Tensor:
    """(r*r, latent_dim) codes on an r x r grid over the first two latent axes, the rest 0:
    decoded row by row it gives the course's "walk through latent space" image grid."""
    c = torch.linspace(lo, hi, r, device=device)
    z = torch.zeros(r * r, latent_dim, device=device)
    z[:, 0] = c.repeat_interleave(r)
    if latent_dim > 1:
        z[:, 1] = c.repeat(r)
    return z
