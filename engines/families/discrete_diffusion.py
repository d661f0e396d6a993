"""Discrete diffusion, D3PM (Austin et al. 2021; course notes 004, "Diffusion in discrete space"),
on tokens: binarized (or K-level) pixels of images, or points quantized to K bins per coordinate
(a 2D point is 2 tokens).

Each token is one of K categories; the absorbing process adds a [MASK] state (index K).
Forward process, with row-stochastic matrices (row = from, column = to) over the S states:
    q(x_t | x_{t-1}) = Cat(x_{t-1} Q_t),       q(x_t | x_0) = Cat(x_0 Qbar_t),  Qbar_t = Q_1 ... Q_t
    uniform:    Q_t = (1 - beta_t) I + beta_t 11^T / K     Qbar_t = abar_t I + (1 - abar_t) 11^T / K
    absorbing:  Q_t = (1 - beta_t) I + beta_t 1 e_m^T      Qbar_t = abar_t I + (1 - abar_t) 1 e_m^T
with abar_t = prod_s (1 - beta_s) given by the schedule and abar_T = 0: x_T is uniform noise or
all [MASK]. The network reads one-hot x_t and t and predicts logits of x_0 (the x0-parameterization,
D3PM sec. 3.3); its reverse step mixes the exact posteriors
    p(x_{t-1} | x_t) = sum_{x0} q(x_{t-1} | x_t, x0) p(x0 | x_t),
    q(x_{t-1} | x_t, x0) = Q_t[x_{t-1}, x_t] Qbar_{t-1}[x0, x_{t-1}] / Qbar_t[x0, x_t]
(Bayes' rule on the Markov chain). With absorbing corruption an unmasked token is already x_0, so
p(x0 | x_t) puts all its mass on it ("carry-over").
Loss: the cross-entropy -log p(x0 | x_t) per token, plus vb_weight times the variational bound
term KL(q(x_{t-1} | x_t, x0) || p(x_{t-1} | x_t)) (D3PM's hybrid loss, eq. 5, written with the
weights the other way round: L = CE + w L_vb).

The "steps" t of the app's slider are 0-based (level l is the paper's x_{l+1}), as in DDPM.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import opt
from ..nets import SinusoidalEmbedding, mlp
from .base import Family, discrete_time_level

NEG = -1e9  # a logit that is "minus infinity" without producing NaN in softmax


def alpha_bars(kind: str, T: int) -> torch.Tensor:
    """abar_0..abar_T (T + 1,) float64, abar_0 = 1 and abar_T = 0.
    linear: abar_t = 1 - t/T (for absorbing, each step masks 1/(T - t + 1) of what is left: D3PM's
    choice); cosine: abar_t = f(t)/f(0), f(t) = cos((t/T + s)/(1 + s) pi/2)^2 (Nichol & Dhariwal 2021)."""
    t = torch.arange(T + 1, dtype=torch.float64)
    if kind == "linear":
        a = 1 - t / T
    elif kind == "cosine":
        s = 0.008
        f = torch.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2
        a = f / f[0]
    else:
        raise ValueError(f"unknown schedule {kind!r}; choose linear or cosine")
    a[-1] = 0.0
    return a


def transition_matrices(corruption: str, K: int, abar: torch.Tensor):
    """One-step Q_t and cumulative Qbar_t for t = 0..T: two (T + 1, S, S) float64 tensors
    (Q_0 = Qbar_0 = I), S = K (uniform) or K + 1 (absorbing, mask = index K)."""
    S = K + (corruption == "absorbing")
    Tp1 = len(abar)
    beta = torch.zeros(Tp1, dtype=torch.float64)
    beta[1:] = 1 - abar[1:] / abar[:-1].clamp(min=1e-300)                        # (T + 1,)
    beta[1:] = torch.where(abar[:-1] > 0, beta[1:], torch.ones_like(beta[1:]))
    eye = torch.eye(S, dtype=torch.float64)
    if corruption == "uniform":
        target = torch.full((S, S), 1.0 / K, dtype=torch.float64)                   # 11^T / K
    elif corruption == "absorbing":
        target = torch.zeros(S, S, dtype=torch.float64)
        target[:, K] = 1.0                                                           # 1 e_m^T
    else:
        raise ValueError(f"unknown corruption {corruption!r}; choose uniform or absorbing")

    def mix(a):  # (T + 1,) -> (T + 1, S, S): a I + (1 - a) target
        return a[:, None, None] * eye + (1 - a)[:, None, None] * target
    return mix(1 - beta), mix(abar)


def categorical(probs, generator=None):
    """One draw per row of probs (..., S) by inverting the CDF (faster than torch.multinomial for
    many short rows): (...,) long."""
    u = torch.rand(probs.shape[:-1] + (1,), generator=generator, device=probs.device, dtype=probs.dtype)
    cdf = probs.cumsum(-1)
    return (cdf < u * cdf[..., -1:]).sum(-1).clamp(max=probs.shape[-1] - 1)


def reverse_probs(p0, xt, Q_t, Qbar_t, Qbar_prev):
    """p(x_{t-1} | x_t) = Q_t[:, x_t] * sum_k p0_k Qbar_{t-1}[k, :] / Qbar_t[k, x_t].
    p0 (B, L, S) probabilities of x_0 (zero on impossible states), xt (B, L) long -> (B, L, S)."""
    col = Qbar_t.T[xt]                                                              # (B, L, S): Qbar_t[k, x_t]
    w = torch.where(col > 0, p0 / col.clamp(min=1e-30), torch.zeros_like(p0))       # (B, L, S)
    m = w @ Qbar_prev                                                               # (B, L, S)
    p = Q_t.T[xt] * m                                                               # Q_t[j, x_t] m_j
    return p / p.sum(-1, keepdim=True).clamp(min=1e-30)


def d3pm_ancestral(x0_probs_fn, x, Q, Qbar, generator=None, callback=None, decode=None):
    """Ancestral sampling of D3PM (Austin et al. 2021, eq. 4 with the x0-parameterization): from
    x_T (B, L) long tokens, for t = T..1 draw x_{t-1} ~ p(x_{t-1} | x_t) (`reverse_probs`).
    x0_probs_fn(x_t, t_int) -> (B, L, S); Q, Qbar: (T + 1, S, S). The callback gets x decoded by
    `decode` (tokens -> data space), the 0-based step t - 1 and the expected x_0 as `denoised`."""
    T = Q.shape[0] - 1
    Qf, Qbf = Q.float().to(x.device), Qbar.float().to(x.device)
    for t in range(T, 0, -1):
        p0 = x0_probs_fn(x, t)                                                      # (B, L, S)
        p = reverse_probs(p0, x, Qf[t], Qbf[t], Qbf[t - 1])
        x = categorical(p, generator)                                               # (B, L)
        if callback is not None:
            dec = decode or (lambda v: v)
            callback(dict(i=T - t, x=dec(x), t=t - 1, sigma=None, denoised=dec(p0)))
    return x


@dataclass
class DiscreteDiffusionConfig:
    corruption: str = opt("absorbing", "forward corruption: tokens jump to a random category, or to [MASK]",
                          "uniform: Q_t = (1-b_t) I + b_t 11^T/K; absorbing: Q_t = (1-b_t) I + b_t 1 e_mask^T",
                          choices=("uniform", "absorbing"))
    T: int = opt(50, "number of diffusion steps T", "q(x_t | x_0) = Cat(x_0 Qbar_t)", lo=2, hi=2000)
    schedule: str = opt("cosine", "how abar_t (the chance a token is still untouched) falls from 1 to 0",
                        "linear: abar_t = 1 - t/T; cosine: f(t)/f(0), f = cos^2((t/T + s)/(1 + s) pi/2)",
                        choices=("cosine", "linear"))
    bins: int = opt(32, "categories K per coordinate for points (a point is 2 tokens)", "K bins of width 2R/K", lo=2, hi=512)
    range: float = opt(3.0, "points are quantized on [-R, R] (normalized units)", lo=0.5, hi=50.0)
    levels: int = opt(2, "categories K per pixel for images (2: binarized by x > 0)", lo=2, hi=256)
    hidden: int = opt(256, "hidden width of the x0-predicting MLP", lo=8, hi=8192)
    depth: int = opt(3, "hidden layers of the MLP", lo=1, hi=16)
    vb_weight: float = opt(0.0, "weight of the variational-bound term in the loss (0: cross-entropy only)",
                           "L = E[-log p(x0|x_t)] + w E[KL(q(x_{t-1}|x_t,x0) || p(x_{t-1}|x_t))]", lo=0.0, hi=100.0)
    dequantize: bool = opt(True, "spread sampled points uniformly within their bin (else bin centers)",
                           "x = -R + (k + u) w, u ~ U(0, 1)")


@dataclass
class D3PMAncestralOptions:
    """x_{t-1} ~ sum_x0 q(x_{t-1} | x_t, x0) p(x0 | x_t), t = T..1: no knobs."""


class X0Net(nn.Module):
    """logits of x_0 (B, L, K) from one-hot x_t (B, L, S) and t / T (B,): an MLP on the
    concatenation of the flattened one-hots and a sinusoidal embedding of t / T."""

    def __init__(self, L: int, S: int, K: int, hidden: int, depth: int, emb_dim: int = 32):
        super().__init__()
        self.L, self.S, self.K = L, S, K
        self.embed = SinusoidalEmbedding(emb_dim)
        self.net = mlp(L * S + emb_dim, L * K, hidden, depth)

    def forward(self, xt, c):  # xt (B, L) long, c (B,) -> (B, L, K)
        oh = F.one_hot(xt, self.S).float().reshape(len(xt), -1)
        return self.net(torch.cat([oh, self.embed(c)], 1)).reshape(len(xt), self.L, self.K)


class DiscreteDiffusion(Family):
    name = "discrete_diffusion"
    title = "Discrete diffusion (D3PM)"
    summary = ("Corrupt tokens step by step (random flips or [MASK]) and learn to predict the clean tokens; "
               "sample by undoing the corruption one step at a time.")
    capabilities = frozenset({"noise_levels", "schedule"})
    Config = DiscreteDiffusionConfig
    samplers = {"ancestral": D3PMAncestralOptions}
    default_sampler = "ancestral"

    def __init__(self, cfg, data_shape, device, context=None):
        super().__init__(cfg, data_shape, device, context)
        self.images = len(self.data_shape) > 1
        if self.images:
            self.capabilities = self.capabilities | {"images"}
        self.K = cfg.levels if self.images else cfg.bins
        self.L = int(np.prod(data_shape))
        self.absorbing = cfg.corruption == "absorbing"
        self.S = self.K + self.absorbing
        self.mask = self.K if self.absorbing else -1
        self.abar = alpha_bars(cfg.schedule, cfg.T)                                 # (T + 1,) float64
        self.Q, self.Qbar = transition_matrices(cfg.corruption, self.K, self.abar)  # (T + 1, S, S) float64
        self._Q = self.Q.float().to(self.device)
        self._Qbar = self.Qbar.float().to(self.device)
        self.level = discrete_time_level(cfg.T, default=cfg.T // 2)   # index i is the papers' t = i + 1 (abar[i + 1])
        self.net = X0Net(self.L, self.S, self.K, cfg.hidden, cfg.depth).to(self.device)
        self._ref = None  # some training data (B, *shape) for the "forward" view

    # ---------------------------------------------------------------- tokens <-> data
    def encode(self, x):
        """Normalized data (B, *shape) -> tokens (B, L) long in 0..K-1."""
        x = x.reshape(len(x), -1)
        K = self.K
        if self.images:
            return ((x + 1) / 2 * (K - 1)).round().long().clamp(0, K - 1)
        w = 2 * self.cfg.range / K
        return ((x + self.cfg.range) / w).floor().long().clamp(0, K - 1)

    def decode(self, v, generator=None, jitter: bool = False):
        """Tokens (B, L) long, or probabilities (B, L, S), -> data (B, *shape): bin centers / pixel
        values, masked tokens at 0 (grey); probabilities give the expected value."""
        K = self.K
        if self.images:
            values = torch.linspace(-1, 1, K, device=v.device)
        else:
            w = 2 * self.cfg.range / K
            values = -self.cfg.range + (torch.arange(K, device=v.device) + 0.5) * w
        values = torch.cat([values, values.new_zeros(self.S - K)])                  # (S,), mask -> 0
        if v.dtype.is_floating_point:
            x = v @ values
        else:
            x = values[v]
            if jitter and not self.images:
                u = torch.rand(x.shape, generator=generator, device=x.device) - 0.5
                x = torch.where(v < K, x + u * w, x)
        return x.reshape((len(v),) + self.data_shape)

    # ---------------------------------------------------------------- forward process
    def q_sample(self, x0_tok, t, generator=None):
        """x_t ~ Cat(x_0 Qbar_t): tokens (B, L), t (B,) long in 1..T -> (B, L)."""
        return categorical(self._Qbar[t[:, None], x0_tok], generator)                # (B, L)

    def x0_probs(self, xt, t, net=None):
        """p(x_0 | x_t) over the S states (0 on [MASK]), with carry-over of unmasked tokens: (B, L, S)."""
        return self._x0_logp(xt, t, net).exp()

    def _x0_logp(self, xt, t, net=None):
        net = net or self.model
        if isinstance(t, int):
            t = torch.full((len(xt),), t, device=xt.device, dtype=torch.long)
        logits = net(xt, t.float() / self.cfg.T)                                    # (B, L, K)
        if self.S > self.K:
            logits = torch.cat([logits, logits.new_full(logits.shape[:2] + (1,), NEG)], -1)  # (B, L, S)
        if self.absorbing:
            keep = (xt != self.mask)[..., None]                                     # (B, L, 1)
            logits = torch.where(keep, F.one_hot(xt, self.S).float() * (-NEG) + NEG, logits)
        return F.log_softmax(logits, -1)

    def loss(self, x, generator=None):
        B = x.shape[0]
        self._ref = x[:512].detach()
        x0 = self.encode(x)                                                         # (B, L)
        t = torch.randint(1, self.cfg.T + 1, (B,), device=x.device, generator=generator)
        xt = self.q_sample(x0, t, generator)
        logp0 = self._x0_logp(xt, t, self.net)                                     # (B, L, S)
        ce = -logp0.gather(2, x0[..., None])[..., 0].mean()                         # nats per token
        if self.cfg.vb_weight > 0:
            vb = self.vb_term(logp0.exp(), x0, xt, t)
            return ce + self.cfg.vb_weight * vb, dict(ce=ce.detach(), vb=vb.detach())
        with torch.no_grad():  # reported only
            vb = self.vb_term(logp0.exp(), x0, xt, t)
        return ce, dict(ce=ce.detach(), vb=vb)

    def vb_term(self, p0, x0, xt, t):
        """Mean per token of KL(q(x_{t-1} | x_t, x0) || p(x_{t-1} | x_t)) for t >= 2 and
        -log p(x0 | x_1) for t = 1 (D3PM eq. 3)."""
        Qt, Qb, Qp = self._Q[t], self._Qbar[t], self._Qbar[t - 1]                   # (B, S, S) each
        # reverse_probs for a batch of per-example matrices
        col = torch.gather(Qb.transpose(1, 2), 1, xt[..., None].expand(-1, -1, self.S))    # (B, L, S)
        w = torch.where(col > 0, p0 / col.clamp(min=1e-30), torch.zeros_like(p0))
        qcol = torch.gather(Qt.transpose(1, 2), 1, xt[..., None].expand(-1, -1, self.S))   # (B, L, S): Q_t[j, x_t]
        p = qcol * torch.bmm(w, Qp)
        p = p / p.sum(-1, keepdim=True).clamp(min=1e-30)
        q = qcol * torch.gather(Qp, 1, x0[..., None].expand(-1, -1, self.S))       # Q_t[j, x_t] Qbar_{t-1}[x0, j]
        q = q / q.sum(-1, keepdim=True).clamp(min=1e-30)
        kl = (q * (torch.log(q.clamp(min=1e-30)) - torch.log(p.clamp(min=1e-30)))).sum(-1)  # (B, L)
        nll0 = -torch.log(p0.gather(2, x0[..., None])[..., 0].clamp(min=1e-30))    # (B, L)
        return torch.where((t == 1)[:, None], nll0, kl).mean()

    # ---------------------------------------------------------------- sampling & views
    def prior(self, n, generator=None):
        """x_T: all [MASK] (absorbing) or uniform tokens: (n, L) long."""
        if self.absorbing:
            return torch.full((n, self.L), self.mask, device=self.device, dtype=torch.long)
        return torch.randint(0, self.K, (n, self.L), device=self.device, generator=generator)

    @torch.no_grad()
    def sample(self, n, sampler=None, options=None, generator=None, callback=None):
        self.sampler_options(sampler, options)
        net = self.model
        tok = d3pm_ancestral(lambda x, t: self.x0_probs(x, t, net), self.prior(n, generator), self.Q, self.Qbar,
                             generator, callback, self.decode)
        return self.decode(tok, generator, jitter=self.cfg.dequantize)

    def _t(self, level):
        return min(max(int(self.level["default"] if level is None else round(level)), 0), self.cfg.T - 1) + 1

    @torch.no_grad()
    def views(self, request=None):
        """"forward": the data after the forward corruption q(x_t | x_0) at the chosen step."""
        if self._ref is None:
            return {}
        request = request or {}
        t = self._t(request.get("level"))
        g = torch.Generator(self.device).manual_seed(0)
        x0 = self._ref[: int(request.get("n", 512))]
        xt = self.q_sample(self.encode(x0), torch.full((len(x0),), t, device=self.device, dtype=torch.long), g)
        title = f"forward corruption q(x_t | x_0) at t = {t} (abar = {float(self.abar[t]):.3f})"
        if self.images:
            return dict(forward=dict(kind="images", title=title, images=self.decode(xt[:64]).cpu().numpy(), nrow=8))
        masked = (xt == self.mask).float().sum(1) if self.absorbing else (xt != self.encode(x0)).float().sum(1)
        return dict(forward=dict(kind="scatter", title=title + "; colour = corrupted coordinates",
                                 x=self.decode(xt).cpu().numpy(), color=masked.cpu().numpy(), space="data"))

    def schedule(self):
        t = np.arange(0, self.cfg.T)
        a = self.abar[1:].numpy()
        name = "mask_probability" if self.absorbing else "resampled_probability"
        return {"x_label": "step t", "alpha_bar": (t, a), name: (t, 1 - a)}
