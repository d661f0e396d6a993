"""Isotropic Gaussian mixtures with exact noised log-density and score.

Convolving p(x) = sum_k w_k N(mu_k, s_k^2 I) with N(0, sigma^2 I) gives
p_sigma(x) = sum_k w_k N(mu_k, (s_k^2 + sigma^2) I), so
    grad log p_sigma(x) = sum_k r_k(x) (mu_k - x) / (s_k^2 + sigma^2),
with responsibilities r_k = softmax_k(log w_k + log N(x; mu_k, (s_k^2 + sigma^2) I)).
Under the VP forward process x_t = a x_0 + s eps (a = sqrt(abar)), the marginal is the
mixture with means a mu_k and variances a^2 s_k^2 + s^2 (`vp_marginal`).
"""
from __future__ import annotations

import math

import torch


class GaussianMixture:
    def __init__(self, weights, means, stds):
        means = torch.as_tensor(means, dtype=torch.float32)
        if means.ndim != 2:
            raise ValueError("means must be (K, D)")
        K = means.shape[0]
        weights = torch.as_tensor(weights, dtype=torch.float32).reshape(-1)
        if weights.numel() != K or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError("weights must be K non-negative numbers with a positive sum")
        stds = torch.as_tensor(stds, dtype=torch.float32).reshape(-1)
        stds = stds.expand(K).clone() if stds.numel() == 1 else stds
        self.weights = weights / weights.sum()  # (K,)
        self.means = means                      # (K, D)
        self.stds = stds                        # (K,)

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def affine(self, shift, scale: float) -> "GaussianMixture":
        """The mixture of (x - shift) / scale (scalar scale keeps components isotropic)."""
        shift = torch.as_tensor(shift, dtype=torch.float32)
        return GaussianMixture(self.weights, (self.means - shift) / scale, self.stds / scale)

    def vp_marginal(self, alpha: float, sigma: float) -> "GaussianMixture":
        """Law of alpha x0 + sigma eps: means alpha mu_k, stds sqrt(alpha^2 s_k^2 + sigma^2)."""
        return GaussianMixture(self.weights, alpha * self.means,
                               torch.sqrt(alpha ** 2 * self.stds ** 2 + sigma ** 2))

    def sample(self, n: int, seed=0) -> torch.Tensor:
        g = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(int(seed))
        k = torch.multinomial(self.weights, n, replacement=True, generator=g)
        z = torch.randn(n, self.dim, generator=g)
        return self.means[k] + self.stds[k, None] * z

    def _component_logp(self, x: torch.Tensor, sigma) -> tuple[torch.Tensor, torch.Tensor]:
        # x: (N, D); var: (N or 1, K) -- sigma may be a scalar or a per-sample (N,) tensor.
        x = torch.as_tensor(x, dtype=torch.float32)
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device).reshape(-1, 1)
        var = self.stds.to(x.device)[None, :] ** 2 + sigma ** 2            # (N|1, K)
        d2 = torch.cdist(x, self.means.to(x.device)) ** 2 if x.shape[0] else x.new_zeros(0, len(self.weights))
        logn = -0.5 * d2 / var - 0.5 * self.dim * torch.log(2 * math.pi * var)  # (N, K)
        return logn + torch.log(self.weights.to(x.device))[None, :], var

    def log_prob(self, x, sigma=0.0) -> torch.Tensor:
        """log p_sigma(x), (N,)."""
        logj, _ = self._component_logp(x, sigma)
        return torch.logsumexp(logj, dim=1)

    def score(self, x, sigma=0.0) -> torch.Tensor:
        """grad_x log p_sigma(x), (N, D); exact."""
        x = torch.as_tensor(x, dtype=torch.float32)
        logj, var = self._component_logp(x, sigma)
        r = torch.softmax(logj, dim=1)                                   # (N, K)
        diff = self.means.to(x.device)[None, :, :] - x[:, None, :]       # (N, K, D)
        return (r[:, :, None] * diff / var[:, :, None]).sum(1)

    def denoise(self, x, sigma) -> torch.Tensor:
        """E[x0 | x0 + sigma eps = x] = x + sigma^2 score (Tweedie)."""
        s = torch.as_tensor(sigma, dtype=torch.float32).reshape(-1, 1)
        return x + s ** 2 * self.score(x, sigma)
