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
    """Parameters are kept in float64 (`_weights64`, `_means64`, `_stds64`) and cast to the
    dtype of each query, so float64 points get float64 densities and scores (an exact oracle);
    the public float32 `weights`, `means`, `stds` are for drawing and plotting."""

    def __init__(self, weights, means, stds):
        means = torch.as_tensor(means).to(torch.float64)
        if means.ndim != 2:
            raise ValueError("means must be (K, D)")
        K = means.shape[0]
        weights = torch.as_tensor(weights).to(torch.float64).reshape(-1)
        if weights.numel() != K or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError("weights must be K non-negative numbers with a positive sum")
        stds = torch.as_tensor(stds).to(torch.float64).reshape(-1)
        stds = stds.expand(K).clone() if stds.numel() == 1 else stds
        self._weights64 = weights / weights.sum()  # (K,)
        self._means64 = means                      # (K, D)
        self._stds64 = stds                        # (K,)
        self.weights = self._weights64.float()
        self.means = self._means64.float()
        self.stds = self._stds64.float()

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def affine(self, shift, scale: float) -> "GaussianMixture":
        """The mixture of (x - shift) / scale (scalar scale keeps components isotropic)."""
        shift = torch.as_tensor(shift).to(torch.float64)
        return GaussianMixture(self._weights64, (self._means64 - shift) / scale, self._stds64 / scale)

    def vp_marginal(self, alpha: float, sigma: float) -> "GaussianMixture":
        """Law of alpha x0 + sigma eps: means alpha mu_k, stds sqrt(alpha^2 s_k^2 + sigma^2)."""
        return GaussianMixture(self._weights64, alpha * self._means64,
                               torch.sqrt(alpha ** 2 * self._stds64 ** 2 + sigma ** 2))

    def sample(self, n: int, seed=0) -> torch.Tensor:
        g = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(int(seed))
        k = torch.multinomial(self.weights, n, replacement=True, generator=g)
        z = torch.randn(n, self.dim, generator=g)
        return self.means[k] + self.stds[k, None] * z

    @staticmethod
    def _as_points(x) -> torch.Tensor:
        """x as a floating tensor, keeping its dtype (float64 stays float64); ints become float32."""
        x = torch.as_tensor(x)
        return x if x.is_floating_point() else x.float()

    def _component_logp(self, x: torch.Tensor, sigma) -> tuple[torch.Tensor, torch.Tensor]:
        # x: (N, D); var: (N or 1, K) -- sigma may be a scalar or a per-sample (N,) tensor.
        # Everything is computed in x's dtype, from the float64 parameters.
        dt, dev = x.dtype, x.device
        sigma = torch.as_tensor(sigma).to(device=dev, dtype=dt).reshape(-1, 1)
        means = self._means64.to(device=dev, dtype=dt)                       # (K, D)
        var = self._stds64.to(device=dev, dtype=dt)[None, :] ** 2 + sigma ** 2  # (N|1, K)
        # |x - mu|^2 by explicit differences: cdist's matmul shortcut loses digits near the means
        d2 = (x[:, None, :] - means[None, :, :]).pow(2).sum(-1)             # (N, K)
        logn = -0.5 * d2 / var - 0.5 * self.dim * torch.log(2 * math.pi * var)  # (N, K)
        return logn + torch.log(self._weights64.to(device=dev, dtype=dt))[None, :], var

    def log_prob(self, x, sigma=0.0) -> torch.Tensor:
        """log p_sigma(x), (N,), in x's dtype."""
        logj, _ = self._component_logp(self._as_points(x), sigma)
        return torch.logsumexp(logj, dim=1)

    def score(self, x, sigma=0.0) -> torch.Tensor:
        """grad_x log p_sigma(x), (N, D); exact, in x's dtype."""
        x = self._as_points(x)
        logj, var = self._component_logp(x, sigma)
        r = torch.softmax(logj, dim=1)                                   # (N, K)
        diff = self._means64.to(device=x.device, dtype=x.dtype)[None, :, :] - x[:, None, :]  # (N, K, D)
        return (r[:, :, None] * diff / var[:, :, None]).sum(1)

    def denoise(self, x, sigma) -> torch.Tensor:
        """E[x0 | x0 + sigma eps = x] = x + sigma^2 score (Tweedie), in x's dtype."""
        x = self._as_points(x)
        s = torch.as_tensor(sigma).to(device=x.device, dtype=x.dtype).reshape(-1, 1)
        return x + s ** 2 * self.score(x, sigma)
