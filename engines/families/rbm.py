"""Bernoulli–Bernoulli restricted Boltzmann machine on binarized images (course notes 002,
"Restricted Boltzmann Machine"; Smolensky 1986, Hinton 2002).

    E(v, h) = -b^T v - c^T h - v^T W h,     v in {0, 1}^V, h in {0, 1}^H
    p(h_j = 1 | v) = sigmoid(c_j + v^T W_:j),   p(v_i = 1 | h) = sigmoid(b_i + W_i: h)
    free energy F(v) = -log sum_h exp(-E(v, h)) = -b^T v - sum_j softplus(c_j + v^T W_:j)

The log-likelihood gradient is -grad F(v_data) + E_model[grad F(v)]; training takes the
autograd gradient of the surrogate F(v_data).mean() - F(v_model).mean() with v_model from
  - CD-k: k steps of block Gibbs sampling started at the data (contrastive divergence, Hinton 2002)
  - PCD:  k steps continuing persistent chains kept from step to step (Tieleman 2008).
That surrogate is the reported "loss"; "recon" is the squared error of a one-step mean-field
reconstruction and "pseudo_ll" the pseudo-log-likelihood per image, V log sigmoid(F(v~) - F(v))
with v~ = v with one random bit flipped (Besag 1975). `log_likelihood` is exact (sum over the 2^H
hidden states) for H <= 16 and otherwise an annealed-importance-sampling estimate of log Z
(Salakhutdinov & Murray 2008).

Pixels are binarized by x > 0 (data in [-1, 1]); samples and views are images in [-1, 1].
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import ConfigError, opt
from .base import Family

EXACT_MAX_HIDDEN = 16


class RBMParams(nn.Module):
    def __init__(self, V: int, H: int, init_std: float = 0.01):
        super().__init__()
        self.W = nn.Parameter(torch.randn(V, H) * init_std)                         # (V, H)
        self.b = nn.Parameter(torch.zeros(V))                                       # (V,) visible biases
        self.c = nn.Parameter(torch.zeros(H))                                       # (H,) hidden biases

    def free_energy(self, v):  # (B, V) -> (B,)
        return -v @ self.b - F.softplus(v @ self.W + self.c).sum(1)

    def p_h(self, v):  # (B, V) -> (B, H)
        return torch.sigmoid(v @ self.W + self.c)

    def p_v(self, h):  # (B, H) -> (B, V)
        return torch.sigmoid(h @ self.W.T + self.b)


@torch.no_grad()
def gibbs(rbm: RBMParams, v, steps: int, generator=None, callback=None, to_image=None):
    """Block Gibbs sampling v -> h ~ p(h|v) -> v ~ p(v|h), `steps` times (course notes 002,
    "Iterative sampling"). v (B, V) in {0, 1}; returns (v, p(v|h) of the last step). The callback
    gets x = to_image(v) (images in [-1, 1]) after each step."""
    pv = v
    for i in range(steps):
        h = torch.bernoulli(rbm.p_h(v), generator=generator)
        pv = rbm.p_v(h)
        v = torch.bernoulli(pv, generator=generator)
        if callback is not None:
            callback(dict(i=i, x=to_image(v) if to_image else v, t=None, sigma=None,
                          denoised=to_image(pv) if to_image else pv))
    return v, pv


@torch.no_grad()
def ais_log_partition(rbm: RBMParams, n_chains: int = 100, n_betas: int = 1000, generator=None) -> float:
    """Annealed importance sampling estimate of log Z (Salakhutdinov & Murray 2008, sec. 4): anneal
    from the base RBM A (W = 0, c = 0, visible biases b_A = b; at beta = 0 the H hidden units each
    contribute a factor 2, so log Z_A = sum softplus(b_A) + H log 2),
    through p_k(v) ∝ exp((1 - beta_k) b_A^T v + beta_k b^T v) prod_j (1 + exp(beta_k (c_j + v^T W_:j))),
    to the model; log Z ≈ log Z_A + log mean_chains exp(sum_k [log p*_k(v_{k-1}) - log p*_{k-1}(v_{k-1})])."""
    W, b, c = rbm.W, rbm.b, rbm.c
    V, H = W.shape
    bA = b
    betas = torch.linspace(0, 1, n_betas + 1, device=W.device).tolist()

    def log_pstar(v, beta):  # (N, V) -> (N,), the unnormalized log p_k (A's hidden units summed out)
        return (1 - beta) * (v @ bA) + beta * (v @ b) + F.softplus(beta * (v @ W + c)).sum(1)

    v = torch.bernoulli(torch.sigmoid(bA).expand(n_chains, V), generator=generator)
    logw = torch.zeros(n_chains, device=W.device)
    for k in range(1, n_betas + 1):
        logw += log_pstar(v, betas[k]) - log_pstar(v, betas[k - 1])
        beta = betas[k]
        h = torch.bernoulli(torch.sigmoid(beta * (v @ W + c)), generator=generator)
        v = torch.bernoulli(torch.sigmoid((1 - beta) * bA + beta * (b + h @ W.T)), generator=generator)
    log_zA = float(F.softplus(bA).sum()) + H * math.log(2)
    return log_zA + float(torch.logsumexp(logw, 0) - math.log(n_chains))


@torch.no_grad()
def exact_log_partition(rbm: RBMParams) -> float:
    """log Z = log sum_h exp(c^T h + sum_i softplus(b_i + W_i: h)), enumerating all 2^H hidden states."""
    H = rbm.c.shape[0]
    if H > EXACT_MAX_HIDDEN:
        raise ValueError(f"the exact partition function enumerates 2^H states; H = {H} > {EXACT_MAX_HIDDEN}")
    hs = torch.tensor(list(itertools.product([0.0, 1.0], repeat=H)), device=rbm.W.device)  # (2^H, H)
    terms = hs @ rbm.c + F.softplus(hs @ rbm.W.T + rbm.b).sum(1)                  # (2^H,)
    return float(torch.logsumexp(terms, 0))


@dataclass
class RBMConfig:
    hidden: int = opt(100, "number of hidden units H (each one learns a filter)", "E(v,h) = -b^T v - c^T h - v^T W h", lo=1, hi=4096)
    k: int = opt(1, "Gibbs steps per training step (CD-k / PCD-k)", "v_model = (Gibbs)^k (start)", lo=1, hi=1000)
    pcd: bool = opt(False, "persistent contrastive divergence: continue chains from the previous step instead of "
                    "restarting them at the data (Tieleman 2008)", "start = persistent chains (PCD) or v_data (CD)")
    chains: int = opt(256, "number of persistent chains (PCD)", lo=1, hi=100000)
    init_std: float = opt(0.01, "standard deviation of the initial weights W", lo=0.0, hi=1.0)


@dataclass
class GibbsOptions:
    steps: int = opt(500, "block Gibbs steps v -> h -> v", lo=1, hi=100000)
    init: str = opt("noise", "where the chains start: random pixels, or the persistent training chains",
                    choices=("noise", "chains"))
    final: str = opt("sample", "return the last binary sample, or its mean p(v | h) (smoother pictures)",
                     choices=("sample", "mean"))


class RBM(Family):
    name = "rbm"
    title = "Restricted Boltzmann machine (CD / PCD)"
    summary = ("Binary visible pixels and hidden units with an energy E(v, h); trained by contrastive divergence, "
               "sampled by block Gibbs sampling.")
    capabilities = frozenset({"energy", "images", "likelihood"})
    Config = RBMConfig
    samplers = {"gibbs": GibbsOptions}
    default_sampler = "gibbs"

    def __init__(self, cfg, data_shape, device, context=None):
        if len(tuple(data_shape)) != 3:
            raise ConfigError(f"rbm needs binary image data (N, C, H, W), got points of shape {tuple(data_shape)}: "
                              "choose digits_binary")
        super().__init__(cfg, data_shape, device, context)
        self.V = int(np.prod(data_shape))
        self.net = RBMParams(self.V, cfg.hidden, cfg.init_std).to(self.device)
        self.chains = None          # (chains, V) persistent chains in {0, 1}
        self.last_negatives = None  # (B, V) of the last step

    def binarize(self, x):  # (B, *shape) in [-1, 1] -> (B, V) in {0, 1}
        return (x.reshape(len(x), -1) > 0).float()

    def to_image(self, v):  # (B, V) in [0, 1] -> (B, *shape) in [-1, 1]
        return (v * 2 - 1).reshape((len(v),) + self.data_shape)

    def free_energy(self, x, net=None):
        """F(v) of images x (B, *shape) in [-1, 1]: (B,)."""
        return (net or self.model).free_energy(self.binarize(x))

    def loss(self, x, generator=None):
        net, c = self.net, self.cfg
        v = self.binarize(x)                                                        # (B, V)
        if c.pcd:
            if self.chains is None:
                self.chains = torch.bernoulli(torch.full((c.chains, self.V), 0.5, device=self.device), generator=generator)
            start = self.chains
        else:
            start = v
        neg, _ = gibbs(net, start, c.k, generator)
        if c.pcd:
            self.chains = neg
        self.last_negatives = neg
        cd = net.free_energy(v).mean() - net.free_energy(neg).mean()
        with torch.no_grad():
            recon = ((net.p_v(net.p_h(v)) - v) ** 2).mean()
            i = torch.randint(0, self.V, (len(v),), generator=generator, device=self.device)
            flipped = v.clone()
            flipped[torch.arange(len(v)), i] = 1 - flipped[torch.arange(len(v)), i]
            pll = self.V * F.logsigmoid(net.free_energy(flipped) - net.free_energy(v)).mean()
        return cd, dict(recon=recon, pseudo_ll=pll)

    @torch.no_grad()
    def sample(self, n, sampler=None, options=None, generator=None, callback=None):
        _, o = self.sampler_options(sampler, options)
        if o.init == "chains" and self.chains is not None:
            v = self.chains[torch.randint(0, len(self.chains), (n,), generator=generator, device=self.device)]
        else:
            v = torch.bernoulli(torch.full((n, self.V), 0.5, device=self.device), generator=generator)
        v, pv = gibbs(self.model, v, o.steps, generator, callback, self.to_image)
        return self.to_image(pv if o.final == "mean" else v)

    @torch.no_grad()
    def log_partition(self, generator=None) -> float:
        """log Z of the sampling model: exact for H <= 16, else AIS."""
        m = self.model
        if m.c.shape[0] <= EXACT_MAX_HIDDEN:
            return exact_log_partition(m)
        return ais_log_partition(m, generator=generator)

    @torch.no_grad()
    def log_likelihood(self, x):
        """log p(v) = -F(v) - log Z of the binarized images x (B, *shape), nats: exact for H <= 16,
        else with an AIS estimate of log Z (100 chains, 1000 temperatures; a stochastic estimate)."""
        g = torch.Generator(self.device).manual_seed(0)
        return -self.free_energy(x) - self.log_partition(g)

    @torch.no_grad()
    def views(self, request=None):
        W = self.model.W.detach()                                                   # (V, H)
        n = min(int((request or {}).get("n", W.shape[1])), W.shape[1])
        f = W[:, :n].T                                                              # (n, V)
        f = f / f.abs().amax(1, keepdim=True).clamp(min=1e-8)
        out = dict(filters=dict(kind="images", title="filters: columns of W (each scaled to [-1, 1])",
                                images=f.reshape((n,) + self.data_shape).cpu().numpy(), nrow=8))
        neg = self.chains if self.cfg.pcd else self.last_negatives
        if neg is not None:
            out["chain"] = dict(kind="images", title="persistent chains" if self.cfg.pcd else "CD negatives",
                                images=self.to_image(neg[:64]).cpu().numpy(), nrow=8)
        return out

    def extra_state(self):
        return {} if self.chains is None else {"chains": self.chains}

    def load_extra_state(self, sd):
        if "chains" in sd:
            self.chains = sd["chains"].to(self.device)
