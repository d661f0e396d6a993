"""A mixture of K full-covariance Gaussians fitted by Expectation–Maximization (Dempster, Laird &
Rubin 1977; course notes 003, "EM Algorithm": alternate q(z|x) = p_theta(z|x) and the
closed-form maximization of E_q[log p_theta(x, z)]).

    p(x) = sum_k pi_k N(x; mu_k, Sigma_k)
    E-step:  r_ik = pi_k N(x_i; mu_k, Sigma_k) / sum_j pi_j N(x_i; mu_j, Sigma_j)
    M-step:  N_k = sum_i r_ik,  pi_k = N_k / N,  mu_k = sum_i r_ik x_i / N_k,
             Sigma_k = sum_i r_ik (x_i - mu_k)(x_i - mu_k)^T / N_k + floor I

No gradient optimizer: `optimizers()` is empty and `train_step` does one EM iteration on the
batch it is given. With update = "online" the M-step reads running averages of the sufficient
statistics (s0, s1, s2) = mean over the batch of (r, r x, r x x^T), s <- (1 - rho) s + rho s_batch
(stochastic / online EM, Cappé & Moulines 2009), which behaves like EM on a much larger batch;
update = "batch" is plain EM on each batch. `em_step(x)` on the whole data set is the textbook
algorithm, whose log-likelihood never decreases. The parameters start from k-means++ seeding
(Arthur & Vassilvitskii 2007) of the first batch, drawn with the Run's generator.

The reported loss is the negative mean log-likelihood of the batch under the parameters before
the M-step (normalized units, nats per example).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..config import opt
from .base import Family

LOG_2PI = math.log(2 * math.pi)


@dataclass
class GMMEMConfig:
    components: int = opt(8, "number of mixture components K", "p(x) = sum_k pi_k N(x; mu_k, Sigma_k)", lo=1, hi=256)
    cov_floor: float = opt(1e-3, "added to every covariance's diagonal in the M-step (normalized units^2): "
                           "keeps a component from collapsing onto one point",
                           "Sigma_k = S_k + floor I", lo=0.0, hi=10.0, log=False)
    update: str = opt("online", "which statistics the M-step reads: this batch only (plain EM on the batch) or a "
                      "running average over batches (online EM, Cappé & Moulines 2009)",
                      "online: s <- (1 - rho) s + rho s_batch", choices=("online", "batch"))
    rho: float = opt(0.1, "online EM step size rho (fraction of the statistics a new batch replaces)",
                     "s <- (1 - rho) s + rho s_batch", lo=1e-4, hi=1.0)
    init: str = opt("kmeans++", "how the means are seeded from the first batch",
                    "kmeans++: next center ~ D(x)^2 (Arthur & Vassilvitskii 2007); random: uniform data points",
                    choices=("kmeans++", "random"))


@dataclass
class AncestralMixtureOptions:
    """z ~ Cat(pi), x ~ N(mu_z, Sigma_z): no knobs."""


class GaussianMixtureModule(nn.Module):
    """The mixture's parameters as buffers (no gradients), float64 for stable Cholesky factors."""

    def __init__(self, K: int, D: int):
        super().__init__()
        self.register_buffer("log_weights", torch.full((K,), -math.log(K), dtype=torch.float64))  # (K,)
        self.register_buffer("means", torch.randn(K, D, dtype=torch.float64))                   # (K, D)
        self.register_buffer("covs", torch.eye(D, dtype=torch.float64).repeat(K, 1, 1))        # (K, D, D)
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))
        self.register_buffer("stats0", torch.zeros(K, dtype=torch.float64))                    # (K,)   E[r]
        self.register_buffer("stats1", torch.zeros(K, D, dtype=torch.float64))                 # (K, D) E[r x]
        self.register_buffer("stats2", torch.zeros(K, D, D, dtype=torch.float64))              # (K, D, D) E[r x x^T]

    def component_log_probs(self, x):
        """log pi_k + log N(x; mu_k, Sigma_k): (B, D) -> (B, K), via Cholesky factors."""
        x = x.to(torch.float64)
        L = torch.linalg.cholesky(self.covs)                                       # (K, D, D)
        diff = x[None, :, :] - self.means[:, None, :]                              # (K, B, D)
        sol = torch.linalg.solve_triangular(L, diff.transpose(1, 2), upper=False)  # (K, D, B)
        maha = sol.pow(2).sum(1)                                                   # (K, B)
        logdet = 2 * torch.log(torch.diagonal(L, dim1=1, dim2=2)).sum(1)           # (K,)
        D = x.shape[1]
        logn = -0.5 * (maha + logdet[:, None] + D * LOG_2PI)                       # (K, B)
        return (logn + self.log_weights[:, None]).T                                # (B, K)

    def log_prob(self, x):  # (B, D) -> (B,)
        return torch.logsumexp(self.component_log_probs(x), dim=1)


def kmeans_pp(x: torch.Tensor, K: int, generator=None) -> torch.Tensor:
    """k-means++ seeding: the first center uniformly from x, each next one with probability
    proportional to its squared distance D(x)^2 to the nearest chosen center. x (N, D) -> (K, D)."""
    N = x.shape[0]
    idx = [int(torch.randint(0, N, (1,), generator=generator, device=x.device))]
    d2 = ((x - x[idx[0]]) ** 2).sum(1)                                             # (N,)
    for _ in range(1, K):
        p = d2 / d2.sum() if float(d2.sum()) > 0 else torch.full_like(d2, 1.0 / N)
        j = int(torch.multinomial(p.float(), 1, generator=generator))
        idx.append(j)
        d2 = torch.minimum(d2, ((x - x[j]) ** 2).sum(1))
    return x[idx].clone()


class GMMEM(Family):
    name = "gmm_em"
    title = "Gaussian mixture (EM)"
    summary = ("A mixture of K Gaussians with full covariances, fitted by Expectation–Maximization: "
               "soft-assign points to components, then re-estimate weights, means and covariances in closed form.")
    capabilities = frozenset({"density", "likelihood", "latent"})
    Config = GMMEMConfig
    samplers = {"ancestral": AncestralMixtureOptions}
    default_sampler = "ancestral"

    def __init__(self, cfg, data_shape, device, context=None):
        super().__init__(cfg, data_shape, device, context)
        self.dim = int(np.prod(data_shape))
        self.net = GaussianMixtureModule(cfg.components, self.dim).to(self.device)
        self._last = None  # (x (B, D), responsibilities (B, K)) of the last batch, for the "latent" view

    # the EM updates write self.net directly; there is no EMA copy to read
    @property
    def model(self):
        return self.net

    def optimizers(self, make):
        return []

    # ---------------------------------------------------------------- EM
    @torch.no_grad()
    def initialize(self, x: torch.Tensor, generator=None):
        """Seed the means (k-means++ or random data points); every covariance starts as the data
        covariance shrunk by K^(2/D) (about one cluster's share of the volume), weights uniform.
        x: (N, D) normalized data."""
        m = self.net
        x = x.reshape(len(x), -1).to(torch.float64)
        K, D = m.means.shape
        if self.cfg.init == "kmeans++":
            mu = kmeans_pp(x, K, generator)
        else:
            mu = x[torch.randperm(len(x), generator=generator, device=x.device)[:K]]
            if len(mu) < K:  # fewer points than components: repeat some
                mu = mu[torch.arange(K, device=x.device) % len(mu)]
        eye = torch.eye(D, dtype=torch.float64, device=x.device)
        glob = torch.cov(x.T).reshape(D, D) if len(x) > 1 else eye
        m.means.copy_(mu)
        m.covs.copy_((glob / K ** (2 / D) + self.cfg.cov_floor * eye).expand(K, D, D))
        m.log_weights.fill_(-math.log(K))
        m.initialized.fill_(True)

    def _stats(self, x, r):
        """Batch sufficient statistics, averaged over the batch: s0 (K,), s1 (K, D), s2 (K, D, D)."""
        B = x.shape[0]
        s0 = r.sum(0) / B
        s1 = r.T @ x / B
        s2 = torch.einsum("nk,nd,ne->kde", r, x, x) / B
        return s0, s1, s2

    def _m_step(self, s0, s1, s2):
        """Closed-form maximization from the statistics; a component with (almost) no mass keeps
        its previous mean and covariance."""
        m = self.net
        D = m.means.shape[1]
        alive = s0 > 1e-8                                                           # (K,)
        safe = s0.clamp(min=1e-12)
        mu = s1 / safe[:, None]                                                     # (K, D)
        cov = s2 / safe[:, None, None] - mu[:, :, None] * mu[:, None, :]            # (K, D, D)
        cov = 0.5 * (cov + cov.transpose(1, 2)) + self.cfg.cov_floor * torch.eye(D, dtype=cov.dtype, device=cov.device)
        m.means.copy_(torch.where(alive[:, None], mu, m.means))
        m.covs.copy_(torch.where(alive[:, None, None], cov, m.covs))
        w = s0.clamp(min=1e-12)
        m.log_weights.copy_(torch.log(w / w.sum()))

    @torch.no_grad()
    def em_step(self, x: torch.Tensor, rho: float = 1.0) -> float:
        """One EM iteration on x (N, *data_shape): E-step responsibilities, then the M-step from
        (1 - rho) s_old + rho s_x (rho = 1: plain EM). Returns the mean log-likelihood of x
        under the parameters *before* the update (nats per example)."""
        x = x.reshape(len(x), -1).to(torch.float64)
        lp = self.net.component_log_probs(x)                                        # (N, K)
        ll = torch.logsumexp(lp, 1)                                                 # (N,)
        r = torch.exp(lp - ll[:, None])                                             # (N, K) responsibilities
        s = self._stats(x, r)
        m = self.net
        if rho < 1.0:
            s = tuple((1 - rho) * old + rho * new for old, new in zip((m.stats0, m.stats1, m.stats2), s))
        m.stats0.copy_(s[0]); m.stats1.copy_(s[1]); m.stats2.copy_(s[2])
        self._m_step(*s)
        self._last = (x[:512].float(), r[:512].float())
        return float(ll.mean())

    def train_step(self, batch, optimizers, clip, generator=None):
        """One EM iteration (the optimizers list is empty and ignored)."""
        x = batch.reshape(len(batch), -1)
        first = not bool(self.net.initialized)
        if first:
            self.initialize(x, generator)
        rho = 1.0 if (self.cfg.update == "batch" or first) else self.cfg.rho
        ll = self.em_step(x, rho)
        m = self.net
        ent = float(-(m.log_weights.exp() * m.log_weights).sum())
        return dict(loss=torch.tensor(-ll), weight_entropy=torch.tensor(ent))

    def loss(self, batch, generator=None):
        with torch.no_grad():
            nll = -self.net.log_prob(batch.reshape(len(batch), -1)).mean()
        return nll.float(), {}

    # ---------------------------------------------------------------- density & sampling
    @torch.no_grad()
    def log_likelihood(self, x):
        """Exact log p(x) in normalized units: (B, *data_shape) -> (B,)."""
        return self.net.log_prob(x.reshape(len(x), -1)).float()

    @torch.no_grad()
    def sample(self, n, sampler=None, options=None, generator=None, callback=None):
        """Ancestral sampling z ~ Cat(pi), x = mu_z + L_z eps. The callback sees the chosen means
        (i=0) and then the samples (i=1)."""
        self.sampler_options(sampler, options)
        m = self.net
        z = torch.multinomial(m.log_weights.exp().float(), n, replacement=True, generator=generator)  # (n,)
        L = torch.linalg.cholesky(m.covs)                                             # (K, D, D)
        eps = torch.randn(n, self.dim, generator=generator, device=self.device, dtype=torch.float64)
        mu = m.means[z]                                                               # (n, D)
        x = mu + (L[z] @ eps[:, :, None]).squeeze(2)                                  # (n, D)
        shape = (n,) + self.data_shape
        if callback is not None:
            callback(dict(i=0, x=mu.float().reshape(shape), t=None, sigma=None, denoised=None))
            callback(dict(i=1, x=x.float().reshape(shape), t=None, sigma=None, denoised=None))
        return x.float().reshape(shape)

    @torch.no_grad()
    def field(self, grid, level=None):
        if self.dim != 2:
            return {}
        return dict(log_density=self.net.log_prob(grid).float().cpu().numpy())

    @torch.no_grad()
    def views(self, request=None):
        m = self.net
        if self.dim != 2:
            return {}
        out = dict(components=dict(kind="ellipses", title="mixture components (1 and 2 sigma)",
                                   centers=m.means.float().cpu().numpy(), covs=m.covs.float().cpu().numpy(),
                                   weights=m.log_weights.exp().float().cpu().numpy(), space="data"))
        if self._last is not None:
            x, r = self._last
            out["responsibilities"] = dict(kind="scatter", title="last batch coloured by its most likely component",
                                           x=x.cpu().numpy(), color=r.argmax(1).float().cpu().numpy(), space="data")
        return out
