"""Normalizing flows: planar (Rezende & Mohamed 2015), RealNVP (Dinh et al. 2017) and MAF
(Papamakarios et al. 2017), trained by exact maximum likelihood.

Every flow here is written in the normalizing direction, f = f_K o ... o f_1 : x -> z, with the
base z ~ N(0, I). The change of variables (course notes 002, "Normalizing Flow") then gives the
exact log-likelihood in one pass,
    log p(x) = log N(f(x); 0, I) + sum_k log |det d f_k(h_{k-1}) / d h_{k-1}|,   h_0 = x,
and sampling runs the layers backwards, x = f_1^-1(... f_K^-1(z)): in closed form for coupling
layers, by D sequential passes for MAF, and by an exact 1D monotone root find for planar layers.
Images (C, H, W) are flattened to D = C H W and use the same MLP layers (fine for 8x8 digits).
Image pixels take a few discrete grey levels, on which a continuous density can pile unbounded
mass: every training batch is dequantized, x + step (u - 1/2) with u ~ U[0, 1) and `step` the grey
level spacing the Run passes as context["grey_step"] (engines.likelihood), so the likelihood is a
bound on the discrete probability and bits/dim stay >= 0 (Theis et al. 2016, sec. 3.1).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .. import likelihood
from ..config import opt
from ..nets import mlp
from .base import Family, grid_lines

LOG_2PI = math.log(2 * math.pi)


@dataclass
class FlowSamplerOptions:
    temperature: float = opt(1.0, "base temperature T: z ~ N(0, T^2 I) (T < 1 trades diversity for typicality)",
                             "x = f^-1(T z), z ~ N(0, I)", lo=0.0, hi=10.0)


def standard_normal_logp(z):  # (B, D) -> (B,)
    return -0.5 * (z.pow(2).sum(1) + z.shape[1] * LOG_2PI)


# ====================================================================== layers
# Every layer maps h -> (h', log|det J|) with J = d h' / d h, shapes (B, D) -> (B, D), (B,),
# and has an `inverse(h') -> h`.

class PlanarLayer(nn.Module):
    """Planar flow f(h) = h + u_hat tanh(w^T h + b) (Rezende & Mohamed 2015, eq. 10).

    log|det J| = log|1 + u_hat^T psi(h)|, psi(h) = tanh'(w^T h + b) w (eq. 11-12). Invertibility
    needs w^T u_hat >= -1; appendix A enforces it with u_hat = u + (m(w^T u) - w^T u) w / |w|^2,
    m(a) = -1 + softplus(a), so w^T u_hat = m(w^T u) > -1 for any parameters (we add 1e-3 to m).
    The inverse has no closed form, but it is a 1D problem: a = w^T h + b solves the monotone
    equation a + (w^T u_hat) tanh(a) = w^T h' + b, whose root lies within |w^T u_hat| of the
    right-hand side; bisection finds it to float64 round-off, then h = h' - u_hat tanh(a).
    """

    def __init__(self, dim: int):
        super().__init__()
        w = torch.randn(dim)
        # start near the identity: w^T u = log(e - 1) makes m(w^T u) ~ 0, so u_hat ~ u's part
        # orthogonal to w, which starts small
        u = math.log(math.e - 1) * w / w.pow(2).sum() + 0.01 * torch.randn(dim)
        self.u, self.w = nn.Parameter(u), nn.Parameter(w)
        self.b = nn.Parameter(0.1 * torch.randn(()))

    def u_hat(self):  # (D,)
        wu = self.w @ self.u
        m = -1.0 + 1e-3 + F.softplus(wu)                               # 1e-3: float round-off never reaches -1
        return self.u + (m - wu) * self.w / self.w.pow(2).sum().clamp_min(1e-12)

    def forward(self, h):
        uh = self.u_hat()
        t = torch.tanh(h @ self.w + self.b)                            # (B,)
        out = h + t[:, None] * uh[None, :]                             # (B, D)
        det = 1.0 + (1.0 - t * t) * (self.w @ uh)                      # (B,), > 0 by the u_hat constraint
        return out, torch.log(det.clamp_min(1e-12))

    def inverse(self, y, iters: int = 64):
        uh = self.u_hat().double()
        w, b = self.w.double(), self.b.double()
        wu = w @ uh                                                    # scalar > -1
        c = y.double() @ w + b                                         # (B,)
        lo, hi = c - wu.abs() - 1e-9, c + wu.abs() + 1e-9               # bracket of the root
        for _ in range(iters):                                         # g(a) = a + wu tanh(a) - c is increasing
            mid = 0.5 * (lo + hi)
            pos = mid + wu * torch.tanh(mid) - c > 0
            hi = torch.where(pos, mid, hi)
            lo = torch.where(pos, lo, mid)
        a = 0.5 * (lo + hi)
        return (y.double() - torch.tanh(a)[:, None] * uh[None, :]).to(y.dtype)


class AffineCoupling(nn.Module):
    """RealNVP affine coupling (Dinh et al. 2017, eq. 4-9) with a binary mask m (1 = passed through):
    h' = m h + (1 - m) [h exp(s(m h)) + t(m h)],   log|det J| = sum (1 - m) s(m h),
    h  = m h' + (1 - m) (h' - t(m h')) exp(-s(m h'))  (exact inverse).
    s = scale tanh(raw) keeps the log-scales bounded (the tanh trick of the RealNVP code); the last
    layer starts at zero so every coupling begins as the identity."""

    def __init__(self, dim: int, mask: torch.Tensor, hidden: int, depth: int):
        super().__init__()
        self.register_buffer("mask", mask.float())                    # (D,)
        self.net = mlp(dim, 2 * dim, hidden, depth, "silu")
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        self.scale = nn.Parameter(torch.ones(dim))

    def _st(self, hm):
        s, t = self.net(hm).chunk(2, dim=1)                            # (B, D) each
        free = 1.0 - self.mask
        return free * self.scale * torch.tanh(s), free * t

    def forward(self, h):
        hm = h * self.mask
        s, t = self._st(hm)
        return hm + (1 - self.mask) * (h * s.exp() + t), s.sum(1)

    def inverse(self, y):
        ym = y * self.mask
        s, t = self._st(ym)
        return ym + (1 - self.mask) * ((y - t) * (-s).exp())


class MaskedLinear(nn.Linear):
    def __init__(self, d_in: int, d_out: int, mask: torch.Tensor):
        super().__init__(d_in, d_out)
        self.register_buffer("mask", mask.float())                    # (d_out, d_in)

    def forward(self, x):
        return F.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """MADE (Germain et al. 2015): an MLP whose weight masks make output i depend only on inputs
    j < i. Degrees: inputs 1..D, hidden units cycle through 1..D-1, an edge k -> l exists when
    deg(l) >= deg(k) (hidden) or deg(l) > deg(k) (output). Out: (B, 2, D) = (mu, alpha)."""

    def __init__(self, dim: int, hidden: int, depth: int):
        super().__init__()
        deg_in = torch.arange(1, dim + 1)
        prev, layers = deg_in, []
        for _ in range(depth):
            deg = torch.arange(hidden) % max(dim - 1, 1) + 1
            layers += [MaskedLinear(prev.numel(), hidden, deg[:, None] >= prev[None, :]), nn.SiLU()]
            prev = deg
        deg_out = torch.cat([deg_in, deg_in])
        out = MaskedLinear(prev.numel(), 2 * dim, deg_out[:, None] > prev[None, :])
        nn.init.zeros_(out.weight)                                     # start as the identity flow
        nn.init.zeros_(out.bias)
        self.net = nn.Sequential(*layers, out)
        self.dim = dim

    def forward(self, x):  # (B, D) -> (B, D), (B, D)
        mu, alpha = self.net(x).chunk(2, dim=1)
        return mu, 3.0 * torch.tanh(alpha / 3.0)                       # |alpha| < 3 per layer: no blow-ups


class MAFLayer(nn.Module):
    """One MAF layer (Papamakarios et al. 2017, eq. 2-5) in its density direction:
    u_i = (x_i - mu_i(x_<i)) exp(-alpha_i(x_<i)), log|det J| = -sum_i alpha_i (triangular Jacobian),
    then a fixed permutation so that the next layer conditions in another order.
    Density: one pass. Inverse: D passes, x_i = u_i exp(alpha_i) + mu_i, each pass fixing one more
    coordinate (all of them are recomputed, the first i are already exact after pass i)."""

    def __init__(self, dim: int, hidden: int, depth: int, perm: torch.Tensor):
        super().__init__()
        self.made = MADE(dim, hidden, depth)
        self.register_buffer("perm", perm.long())                     # (D,)
        self.register_buffer("inv_perm", torch.argsort(perm).long())

    def forward(self, x):
        mu, alpha = self.made(x)
        u = (x - mu) * (-alpha).exp()
        return u[:, self.perm], -alpha.sum(1)

    def inverse(self, y):
        u = y[:, self.inv_perm]
        x = torch.zeros_like(u)
        for _ in range(u.shape[1]):                                    # D sequential passes
            mu, alpha = self.made(x)
            x = u * alpha.exp() + mu
        return x


class FlowNet(nn.Module):
    """f = f_K o ... o f_1 in the normalizing direction; x (B, D) -> z (B, D)."""

    def __init__(self, layers):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x):  # -> z (B, D), sum of log|det| (B,)
        logdet = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
        for layer in self.layers:
            x, ld = layer(x)
            logdet = logdet + ld
        return x, logdet

    def log_prob(self, x):  # (B, D) -> (B,): log N(f(x); 0, I) + sum_k log|det J_k|
        z, logdet = self(x)
        return standard_normal_logp(z) + logdet

    def inverse(self, z, stages: bool = False):
        """x = f_1^-1(... f_K^-1(z)); stages=True also returns [z, after 1 inverse layer, ..., x]."""
        out = [z]
        for layer in reversed(self.layers):
            z = layer.inverse(z)
            out.append(z)
        return (z, out) if stages else z


# ====================================================================== the families

class _Flow(Family):
    """Shared training, sampling and views; subclasses only build their layers."""
    capabilities = frozenset({"density", "likelihood", "score", "latent"})
    samplers = {"flow": FlowSamplerOptions}
    default_sampler = "flow"
    likelihood_kind = "density"                                        # exact and cheap: the Run reports it

    def __init__(self, cfg, data_shape, device, context=None):
        super().__init__(cfg, data_shape, device, context)
        self.dim = int(math.prod(self.data_shape))
        self.images = len(self.data_shape) > 1
        # grey-level spacing of image data (0: no dequantization, only to show the pile-up it prevents)
        self.grey_step = float(self.context.get("grey_step", likelihood.DEFAULT_STEP))
        self.net = FlowNet(self.make_layers(cfg, self.dim)).to(self.device)
        self._seen = None                                              # recent training points, for the latent view

    def make_layers(self, cfg, dim):
        raise NotImplementedError

    def _flat(self, x):
        return x.reshape(x.shape[0], -1)

    def loss(self, batch, generator=None):
        """Negative log-likelihood, exact: -mean log p(x), nats per example in normalized coordinates
        (points; the Run reports data units) or of the dequantized images (then also bits/dim)."""
        if self.images:
            batch = likelihood.dequantize(batch, self.grey_step, generator)
        x = self._flat(batch)                                          # (B, D)
        with torch.no_grad():
            self._seen = batch[:512].detach() if self._seen is None else torch.cat([batch[:64].detach(), self._seen])[:512]
        z, logdet = self.net(x)
        log_pz = standard_normal_logp(z)
        lp = log_pz + logdet                                           # (B,)
        terms = dict(log_pz=log_pz.mean().detach(), log_det=logdet.mean().detach())
        if self.images and self.grey_step > 0:
            terms["bits_per_dim"] = torch.tensor(likelihood.bits_per_dim(lp.detach(), self.dim, self.grey_step))
        return -lp.mean(), terms

    @torch.no_grad()
    def sample(self, n, sampler=None, options=None, generator=None, callback=None):
        """z ~ N(0, T^2 I) pushed back through the layers; callback once per inverted layer."""
        _, o = self.sampler_options(sampler, options)
        z = torch.randn((n, self.dim), generator=generator, device=self.device) * o.temperature
        x, stages = self.model.inverse(z, stages=True)
        if callback is not None:
            for i, h in enumerate(stages):
                callback(dict(i=i, x=h.reshape((n,) + self.data_shape), t=None, sigma=0.0, denoised=None))
        return x.reshape((n,) + self.data_shape)

    @torch.no_grad()
    def log_likelihood(self, x):
        """Exact log p(x) (B,), nats, normalized coordinates (change of variables); the density
        at x itself: dequantize image grid values first (the Run does, engines.likelihood)."""
        return self.model.log_prob(self._flat(x))

    def field(self, grid, level=None):
        """log_density (G,) exact; score (G, D) = grad_x log p(x) by autograd."""
        with torch.enable_grad():
            x = grid.detach().requires_grad_(True)
            lp = self.model.log_prob(x)
            (g,) = torch.autograd.grad(lp.sum(), x)
        return dict(log_density=lp.detach().cpu().numpy(), score=g.detach().cpu().numpy())

    @torch.no_grad()
    def views(self, request=None):
        """layers: a regular grid of the base space pushed back through the flow, stopped after
        request["layer"] of the K inverse layers (default K: the grid as warped onto the data).
        latent: recent training points mapped to the base space, z = f(x); a good flow makes
        them look like N(0, I)."""
        request = request or {}
        if self.dim != 2:
            return {}
        K = len(self.model.layers)
        k = int(min(max(request.get("layer", K), 0), K))
        lines = grid_lines(-3.0, 3.0, 13, 64).to(self.device)         # (2L, M, 2)
        L, M = lines.shape[:2]
        _, stages = self.model.inverse(lines.reshape(-1, 2), stages=True)
        warped = stages[k].reshape(L, M, 2).cpu().numpy()
        out = dict(layers=dict(kind="polylines", title=f"base grid after {k} of {K} inverse layers",
                               lines=list(warped), space="data", layer=k, n_layers=K))
        if self._seen is not None:
            x = self._seen[: int(request.get("n", 512))]
            z, _ = self.model(self._flat(x))
            out["latent"] = dict(kind="scatter", title="data mapped to the base space, z = f(x)",
                                 x=z.cpu().numpy(), color=x[:, 0].cpu().numpy(), x_label="z₁", y_label="z₂")
        return out


@dataclass
class PlanarConfig:
    n_layers: int = opt(32, "number K of planar layers", "f(x) = x + u_hat tanh(w^T x + b), K times", lo=1, hi=512)


class PlanarFlow(_Flow):
    name = "planar_flow"
    title = "Planar flow"
    summary = "A stack of planar bends x + u tanh(w.x + b), fitted by exact maximum likelihood."
    Config = PlanarConfig

    def make_layers(self, cfg, dim):
        return [PlanarLayer(dim) for _ in range(cfg.n_layers)]


@dataclass
class RealNVPConfig:
    n_layers: int = opt(8, "number of affine coupling layers (masks alternate)", lo=2, hi=128)
    hidden: int = opt(64, "hidden width of each coupling's s/t network", lo=2, hi=4096)
    depth: int = opt(2, "hidden layers of each s/t network", lo=1, hi=16)


class RealNVP(_Flow):
    name = "realnvp"
    title = "RealNVP"
    summary = "Affine coupling layers: half the coordinates scale-and-shift the other half; exact inverse."
    Config = RealNVPConfig

    def make_layers(self, cfg, dim):
        idx = torch.arange(dim)
        return [AffineCoupling(dim, (idx + k) % 2 == 0, cfg.hidden, cfg.depth) for k in range(cfg.n_layers)]


@dataclass
class MAFConfig:
    n_layers: int = opt(5, "number of MAF layers (autoregressive transforms)", lo=1, hi=64)
    hidden: int = opt(64, "hidden width of each MADE", lo=2, hi=4096)
    depth: int = opt(2, "hidden layers of each MADE", lo=1, hi=16)
    permutation: str = opt("reverse", "order change between layers", "reverse: x_D..x_1; random: a fixed random permutation",
                           choices=("reverse", "random"))


class MAF(_Flow):
    name = "maf"
    title = "Masked autoregressive flow"
    summary = "MADE-masked autoregressive transforms: density in one pass, sampling one coordinate at a time."
    Config = MAFConfig

    def make_layers(self, cfg, dim):
        g = torch.Generator().manual_seed(0)
        perms = [torch.arange(dim - 1, -1, -1) if cfg.permutation == "reverse" else torch.randperm(dim, generator=g)
                 for _ in range(cfg.n_layers)]
        return [MAFLayer(dim, cfg.hidden, cfg.depth, p) for p in perms]
