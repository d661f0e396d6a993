"""Which mode the samples sit in: the share of samples per mixture component, to set beside the
mixture's weights (the exact-score lesson's 0.8 / 0.2 split, shown as numbers).

A sample belongs to its most responsible component, r_k(x) ∝ w_k N(x; μ_k, s_k² I) (the E-step
of EM, Bishop 2006 eq. 9.23); shares_k = #{x : argmax_j r_j(x) = k} / #finite samples.
"""
from __future__ import annotations

import math

import numpy as np
import torch


def component_shares(mixture, x) -> np.ndarray:
    """(K,) share of the finite samples x (N, D) assigned to each component; NaN when none is finite."""
    x = torch.as_tensor(np.asarray(x), dtype=torch.float64)
    k = len(mixture.weights)
    finite = torch.isfinite(x).all(1)
    if not bool(finite.any()):
        return np.full(k, math.nan)
    x = x[finite]
    means = torch.as_tensor(mixture.means, dtype=torch.float64)                 # (K, D)
    var = torch.as_tensor(mixture.stds, dtype=torch.float64).reshape(-1) ** 2   # (K,) or (1,)
    var = var.expand(k) if var.numel() == 1 else var
    d2 = (x[:, None, :] - means[None]).pow(2).sum(-1)                           # (N, K)
    log_r = (torch.log(torch.as_tensor(mixture.weights, dtype=torch.float64))[None]
             - 0.5 * d2 / var[None] - 0.5 * x.shape[1] * torch.log(var)[None])  # (N, K), up to a constant
    owner = log_r.argmax(1)                                                     # (N,)
    return (torch.bincount(owner, minlength=k).double() / len(x)).numpy()
