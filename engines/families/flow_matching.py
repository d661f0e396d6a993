"""Flow matching / rectified flow (Lipman et al. 2023, "Flow Matching for Generative Modeling";
Liu, Gong & Liu 2023, "Flow Straight and Fast"): the linear interpolation path between data and noise,

    x_t = (1 - t) x0 + t x1,     x0 ~ data,  x1 ~ N(0, I),  t ~ U(0, 1),

and a velocity field regressed onto the path's velocity (the conditional flow-matching loss):

    L(theta) = E_{t, x0, x1} || v_theta(x_t, t) - (x1 - x0) ||^2.

Its minimizer is v*(x, t) = E[x1 - x0 | x_t = x], and dx/dt = v* carries N(0, I) at t = 1 to the
data at t = 0. That ODE is the probability-flow ODE of the diffusion with alpha = 1 - t, s = t
(Song et al. 2021, eq. 13): with eps-hat = x_t + (1 - t) v and x0-hat = x_t - t v, the implied score
is grad log p_t(x) = -eps-hat / t. So in the VE coordinates of the NoiseModel adapter
(x / (1 - t) at sigma = t / (1 - t)) every diffusion sampler applies, and Euler on the uniform-t
grid is exactly DDIM (eta = 0) on this schedule.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import schedules as sch
from ..config import ConfigError, opt
from ..nets import conditional_net
from .noise_model import GENERIC_SAMPLERS, GridOptions, LinearPath, NoiseModel


@dataclass
class FlowMatchingConfig:
    t_eps: float = opt(1e-3, "the sampler integrates t from 1 - t_eps to t_eps (sigma = t / (1 - t) stays finite), "
                       "then takes one last step to t = 0", "t in [t_eps, 1 - t_eps]", lo=1e-6, hi=0.1, log=True)
    hidden: int = opt(0, "hidden width of the MLP; 0: 64 for points, 128 for images (the U-Net gets hidden/4 base "
                      "channels), as for DDPM", lo=0, hi=4096)
    depth: int = opt(3, "hidden layers of the MLP", lo=1, hi=16)
    embedding: str = opt("sinusoidal", "time embedding of t in [0, 1]", choices=("sinusoidal", "fourier"))

    def validate(self):
        if not 0 < self.t_eps < 0.5:
            raise ConfigError(f"t_eps must be in (0, 0.5), got {self.t_eps}")


@dataclass
class UniformTimeOptions(GridOptions):
    """The rectified-flow default: equal steps in t (the family's own spacing)."""
    steps: int = opt(20, "number of ODE steps in t", lo=1, hi=100000)
    grid: str = opt("native", "sigma grid: equal steps in t (native, the rectified-flow way), Karras et al.'s, "
                    "or equal steps in log-SNR", "native: t_i = (1 - t_eps) (1 - i / n) + t_eps i / n",
                    choices=("karras", "logsnr", "native"))


class FlowMatching(NoiseModel):
    name = "flow_matching"
    title = "Flow matching (rectified flow)"
    summary = ("Learn the velocity that moves each point along a straight line from noise to data, then "
               "integrate that ODE from noise to data: the probability-flow ODE of a diffusion, learned directly.")
    capabilities = frozenset({"score", "noise_levels", "schedule"})
    Config = FlowMatchingConfig
    native_samplers = {}
    samplers = {**GENERIC_SAMPLERS, "euler": UniformTimeOptions, "heun": UniformTimeOptions}
    default_sampler = "euler"

    @classmethod
    def train_defaults(cls, is_image):
        # DDPM's 2D defaults (the same kind of regression, an O(1) target on a 64-wide MLP)
        return {} if is_image else dict(batch=256, lr=1e-2, warmup=20, ema=0.99)

    def __init__(self, cfg, data_shape, device, context=None):
        super().__init__(cfg, data_shape, device, context)
        self.process = LinearPath(cfg.t_eps, 1 - cfg.t_eps)
        self.level = dict(kind="t", lo=cfg.t_eps, hi=1 - cfg.t_eps, log=False, default=0.15)
        hidden = cfg.hidden or (64 if len(self.data_shape) == 1 else 128)
        self.net = conditional_net(self.data_shape, hidden, cfg.depth, cfg.embedding).to(self.device)

    def velocity(self, x_t, t, net=None):
        """v_theta(x_t, t): x_t (B, *shape), t (B,) -> (B, *shape)."""
        return (net or self.model)(x_t, t)

    def loss(self, x0, generator=None):
        """Conditional flow matching with the linear path: || v(x_t, t) - (x1 - x0) ||^2, summed over
        dimensions, mean over the batch (Lipman et al. 2023, eq. 23 with sigma_min = 0; Liu et al. 2023, eq. 1)."""
        B = x0.shape[0]
        t = torch.rand((B,), device=x0.device, generator=generator)                   # (B,)
        x1 = torch.randn(x0.shape, device=x0.device, generator=generator)             # (B, *shape)
        tt = sch.append_dims(t, x0.ndim)
        xt = (1 - tt) * x0 + tt * x1
        per = (self.velocity(xt, t, self.net) - (x1 - x0)).pow(2).flatten(1).sum(1)  # (B,)
        return per.mean(), {}

    def native_eps(self, x_t, t):
        """eps-hat = x1-hat = x_t + (1 - t) v (since x_t = (1 - t) x0 + t x1 and v = x1 - x0)."""
        return x_t + sch.append_dims(1 - t, x_t.ndim) * self.velocity(x_t, t)

    @torch.no_grad()
    def views(self, request=None):
        """The learned velocity v_theta(x, t) on a grid at the field's level t (2D points only)."""
        if len(self.data_shape) != 1 or self.data_shape[0] != 2:
            return {}
        request = request or {}
        t = self._t(request.get("level"))
        g = torch.linspace(-2.5, 2.5, 15, device=self.device)
        grid = torch.cartesian_prod(g, g)                                             # (225, 2)
        v = self.velocity(grid, torch.full((len(grid),), t, device=self.device))
        # dx/dt runs from noise (t = 1) to data (t = 0): the particles move along -v
        return dict(velocity=dict(kind="arrows", title=f"direction of travel -v(x, t) at t = {t:.2f}", space="data",
                                  x=grid.cpu().numpy(), v=(-v).cpu().numpy()))
