"""Sample-quality metrics: two sample sets in, a python float (or a small dict) out.

Inputs are torch tensors or numpy arrays of shape (N, D); images (N, C, H, W) are flattened
to (N, C*H*W). Everything is computed in float64 on the first argument's device, pairwise
distances in row chunks (so 8000 x 8000 costs a few MB at a time, never the full matrix), and
all randomness comes from an explicit seed: the same inputs give the same number.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

__all__ = ["energy_distance", "self_distance_mean", "mmd_rbf", "sliced_wasserstein", "mode_coverage",
           "fisher_divergence", "iid_energy_distance", "grid_kl_js"]

_CHUNK_ELEMS = 1 << 19  # entries of one distance block: 512K float64 = 4 MB, cache-friendly


def _as_2d(x, like: torch.Tensor | None = None) -> torch.Tensor:
    """Tensor/ndarray -> float64 (N, D); (N,) becomes (N, 1), (N, C, H, W) becomes (N, C*H*W)."""
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    t = t.detach().to(dtype=torch.float64, device=like.device if like is not None else t.device)
    if t.ndim == 1:
        return t[:, None]
    return t.reshape(t.shape[0], -1)


def _need(n: int, k: int, fn: str) -> None:
    if n < k:
        raise ValueError(f"{fn} needs at least {k} samples per set, got {n}")


def _pair_sum(a: torch.Tensor, b: torch.Tensor, fn: Callable, exclude_diag: bool) -> float:
    """sum_{i,j} fn(|a_i - b_j|) over an (n, m) distance matrix built chunk by chunk.

    exclude_diag (a is b): the i == j terms are dropped, as a U-statistic requires.
    """
    n, m = a.shape[0], b.shape[0]
    rows = max(1, _CHUNK_ELEMS // max(m, 1))
    total = torch.zeros((), dtype=torch.float64, device=a.device)
    for i0 in range(0, n, rows):
        blk = fn(torch.cdist(a[i0:i0 + rows], b))  # (r, m)
        if exclude_diag:
            r = torch.arange(blk.shape[0], device=a.device)
            blk[r, i0 + r] = 0.0
        total += blk.sum()
    return float(total)  # sync point


def _self_distance_sum(a: torch.Tensor) -> float:
    """sum_{i<j} |a_i - a_j| for a (n, D): the upper triangle only, row chunk by row chunk (half
    the distances of the full n x n matrix)."""
    n = a.shape[0]
    total = torch.zeros((), dtype=torch.float64, device=a.device)
    i0 = 0
    while i0 < n:
        r = max(1, min(n - i0, _CHUNK_ELEMS // max(n - i0, 1)))
        blk = torch.cdist(a[i0:i0 + r], a[i0:])  # (r, n - i0); column c is point i0 + c
        total += blk[:, r:].sum() + blk[:, :r].triu(1).sum()
        i0 += r
    return float(total)


def self_distance_mean(x) -> float:
    """mean_{i,j} |x_i - x_j| over all n^2 ordered pairs, the zero diagonal included (the V form
    of E|X - X'|; multiply by n / (n - 1) for the unbiased U form). x: (N, D) or images."""
    x = _as_2d(x)
    n = x.shape[0]
    _need(n, 1, "self_distance_mean")
    return 2.0 * _self_distance_sum(x) / (n * n)


# ----------------------------------------------------------------------------- energy distance

def energy_distance(x, y, unbiased: bool = False, y_self: float | None = None) -> float:
    """Energy distance (Székely & Rizzo 2013): D^2 = 2 E|X-Y| - E|X-X'| - E|Y-Y'|.

    Default: the V-statistic, i.e. the energy distance between the two empirical
    distributions (all n^2 / m^2 pairs, zero diagonal included). It is always >= 0, and for
    two iid samples of one distribution its expectation is E|X-X'| (1/n + 1/m) > 0, which is
    what makes `iid_energy_distance` a usable noise floor to report quality against.
    unbiased=True: the U-statistic (i != j pairs only, divided by n(n-1)); its expectation is
    the population value (0 for equal distributions), so it can come out slightly negative.
    x: (N, D) or (N, C, H, W); y: (M, ...) with the same trailing size.
    y_self: `self_distance_mean(y)` when already known (a fixed reference set), V form only.
    """
    x = _as_2d(x)
    y = _as_2d(y, like=x)
    n, m = x.shape[0], y.shape[0]
    _need(min(n, m), 2 if unbiased else 1, "energy_distance")
    ident = lambda d: d  # noqa: E731
    exy = _pair_sum(x, y, ident, False) / (n * m)
    # self terms from the upper triangle (each pair once, the zero diagonal never computed)
    if unbiased:
        if y_self is not None:
            raise ValueError("energy_distance: y_self is the V-statistic's term; unbiased=True cannot use it")
        exx = 2.0 * _self_distance_sum(x) / (n * (n - 1))
        eyy = 2.0 * _self_distance_sum(y) / (m * (m - 1))
    else:
        exx = 2.0 * _self_distance_sum(x) / (n * n)
        eyy = 2.0 * _self_distance_sum(y) / (m * m) if y_self is None else float(y_self)
    return 2.0 * exy - exx - eyy


def iid_energy_distance(sample_fn: Callable[[int, int], torch.Tensor], n: int,
                        repeats: int = 4, seed: int = 0) -> float:
    """The "iid level": mean energy_distance between two independent n-point draws.

    sample_fn(n, seed) -> (n, D). Repeat r uses seeds (seed + 2r, seed + 2r + 1). A model's
    energy distance to n data points is reported relative to this: ~1x means "as close as
    another fresh sample of the data would be".
    """
    vals = [energy_distance(sample_fn(n, seed + 2 * r), sample_fn(n, seed + 2 * r + 1))
            for r in range(repeats)]
    return float(sum(vals) / len(vals))


# ----------------------------------------------------------------------------- MMD

def _subsample(z: torch.Tensor, k: int) -> torch.Tensor:
    """At most k rows of z (N, D), chosen by a fixed seed (deterministic)."""
    if z.shape[0] <= k:
        return z
    g = torch.Generator().manual_seed(0)
    return z[torch.randperm(z.shape[0], generator=g)[:k].to(z.device)]


def _median_distance(x: torch.Tensor, y: torch.Tensor, per_set: int = 500) -> float:
    """Median pairwise distance (i != j) of the pooled sample, <= per_set points from each.

    Each set is subsampled on its own, so the result is symmetric in (x, y).
    """
    z = torch.cat([_subsample(x, per_set), _subsample(y, per_set)])  # (k, D)
    d = torch.cdist(z, z)  # (k, k)
    iu = torch.triu_indices(z.shape[0], z.shape[0], offset=1, device=z.device)
    med = float(d[iu[0], iu[1]].median()) if iu.shape[1] else 1.0
    return med if med > 0 else 1.0


def mmd_rbf(x, y, bandwidths: Sequence[float] | None = None) -> float:
    """Unbiased multi-bandwidth RBF MMD^2 (Gretton et al. 2012, JMLR, eq. 3).

    MMD_u^2 = 1/(n(n-1)) sum_{i!=j} k(x_i,x_j) + 1/(m(m-1)) sum_{i!=j} k(y_i,y_j)
              - 2/(nm) sum_{i,j} k(x_i,y_j),
    k(a, b) = mean_s exp(-|a-b|^2 / (2 s^2)) over bandwidths s (absolute lengths).
    Default bandwidths: median pairwise distance of the pooled sample (up to 500 + 500
    points) times (0.25, 0.5, 1, 2, 4). Unbiased, so ~0 (possibly slightly negative) for equal distributions.
    """
    x = _as_2d(x)
    y = _as_2d(y, like=x)
    n, m = x.shape[0], y.shape[0]
    _need(min(n, m), 2, "mmd_rbf")
    if bandwidths is None:
        med = _median_distance(x, y)
        bandwidths = [med * f for f in (0.25, 0.5, 1.0, 2.0, 4.0)]
    coefs = sorted(1.0 / (2.0 * float(s) ** 2) for s in bandwidths)  # ascending

    def kernel(d):  # d: (r, m) distances -> (r, m) kernel values averaged over bandwidths
        d2 = d.square_()
        total = torch.zeros_like(d2)
        e, prev = None, None
        for c in coefs:  # in place throughout: these blocks are memory-bound
            if e is not None and abs(c / prev - 4.0) < 1e-9:
                e.square_().square_()  # exp(-4c d^2) = exp(-c d^2)^4: 2 multiplies, no exp
            else:
                e = d2.mul(-c).exp_()
            total.add_(e)
            prev = c
        return total.div_(len(coefs))

    kxx = _pair_sum(x, x, kernel, True) / (n * (n - 1))
    kyy = _pair_sum(y, y, kernel, True) / (m * (m - 1))
    kxy = _pair_sum(x, y, kernel, False) / (n * m)
    return kxx + kyy - 2.0 * kxy


# ----------------------------------------------------------------------------- sliced Wasserstein

def _quantiles(sorted_v: torch.Tensor, k: int) -> torch.Tensor:
    """Empirical quantile function of sorted (n, P) columns at levels (j + 1/2)/k, j < k -> (k, P).

    Linear interpolation between order statistics; for k == n it returns sorted_v exactly.
    """
    n = sorted_v.shape[0]
    if k == n:
        return sorted_v
    pos = (torch.arange(k, dtype=torch.float64, device=sorted_v.device) + 0.5) * n / k - 0.5
    pos = pos.clamp(0, n - 1)  # (k,)
    lo = pos.floor().long()
    hi = (lo + 1).clamp(max=n - 1)
    w = (pos - lo)[:, None]  # (k, 1)
    return sorted_v[lo] * (1 - w) + sorted_v[hi] * w


def sliced_wasserstein(x, y, n_projections: int = 128, seed: int = 0) -> float:
    """Sliced 2-Wasserstein distance (Bonneel et al. 2015): SW_2 = sqrt(E_theta W_2^2).

    theta: n_projections directions uniform on the unit sphere (from `seed`); W_2 between the
    1D projections is computed from sorted samples, W_2^2 = int_0^1 |F^-1(u) - G^-1(u)|^2 du,
    with both quantile functions evaluated at max(n, m) levels (interpolated when n != m).
    Same units as the data: a shift by delta in 2D gives delta * sqrt(E cos^2) = delta / sqrt(2).
    """
    x = _as_2d(x)
    y = _as_2d(y, like=x)
    _need(min(x.shape[0], y.shape[0]), 1, "sliced_wasserstein")
    d = x.shape[1]
    g = torch.Generator().manual_seed(int(seed))
    theta = torch.randn(n_projections, d, generator=g, dtype=torch.float64).to(x.device)
    theta = theta / theta.norm(dim=1, keepdim=True)  # (P, D) unit directions
    px = (x @ theta.T).sort(dim=0).values  # (N, P)
    py = (y @ theta.T).sort(dim=0).values  # (M, P)
    k = max(px.shape[0], py.shape[0])
    w2sq = (_quantiles(px, k) - _quantiles(py, k)).square().mean(dim=0)  # (P,)
    return float(w2sq.mean().sqrt())


# ----------------------------------------------------------------------------- mode coverage

def mode_coverage(samples, means, radius, min_count: int = 1) -> dict:
    """Which mixture modes the samples reach (the VEEGAN / unrolled-GAN "modes covered" count).

    Each sample goes to its nearest mean if it lies within `radius` of it (a scalar, or one
    radius per mode), else to "outside". A mode is covered when it gets >= min_count samples.
    Returns dict(covered, total, fraction (= covered/total), weights (per-mode share of all
    samples, a list), outside (share of samples near no mode)).
    """
    s = _as_2d(samples)  # (N, D)
    mu = _as_2d(means, like=s)  # (K, D)
    n, k = s.shape[0], mu.shape[0]
    r = torch.as_tensor(radius, dtype=torch.float64, device=s.device).reshape(-1)
    r = r.expand(k) if r.numel() == 1 else r  # (K,)
    dist = torch.cdist(s, mu)  # (N, K)
    dmin, nearest = dist.min(dim=1)  # (N,), (N,)
    inside = dmin <= r[nearest]  # (N,)
    counts = torch.bincount(nearest[inside], minlength=k)  # (K,)
    covered = int((counts >= min_count).sum())
    return dict(covered=covered, total=k, fraction=covered / k if k else 0.0,
                weights=(counts.double() / max(n, 1)).tolist(),
                outside=float((~inside).sum()) / max(n, 1))


# ----------------------------------------------------------------------------- Fisher divergence

def fisher_divergence(model_score, true_score, x=None) -> float:
    """Fisher divergence 0.5 E_x |s_model(x) - s_true(x)|^2 (Hyvärinen 2005), squared L2 norm.

    model_score, true_score: (N, D) score values at the same points, or callables
    score(x) -> (N, D) evaluated at x (N, D). The expectation is the mean over the N points.
    """
    if callable(model_score) or callable(true_score):
        if x is None:
            raise ValueError("fisher_divergence: pass x when giving score functions")
        model_score = model_score(x) if callable(model_score) else model_score
        true_score = true_score(x) if callable(true_score) else true_score
    a = _as_2d(model_score)
    b = _as_2d(true_score, like=a)
    if a.shape != b.shape:
        raise ValueError(f"fisher_divergence: shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}")
    return float(0.5 * (a - b).square().sum(dim=1).mean())


# ----------------------------------------------------------------------------- histogram KL / JS

def grid_kl_js(x, y, bins: int = 50, range=None, eps: float = 1e-6) -> dict:  # noqa: A002
    """Histogram KL(P_data || Q_model) and Jensen-Shannon divergence on a bins x bins 2D grid.

    x: data (N, 2), y: model samples (M, 2). range: ((xmin, xmax), (ymin, ymax)); default
    the joint bounding box of x and y. Points outside the range are dropped. Both histograms
    are normalised, smoothed p <- (p + eps) / (1 + eps * bins^2) so empty cells do not give
    infinities, then KL = sum p log(p/q), JS = (KL(p||m) + KL(q||m)) / 2, m = (p + q)/2.
    Natural logs (nats): JS <= log 2; disjoint supports give KL ~ log(1/eps).
    """
    x = _as_2d(x)
    y = _as_2d(y, like=x)
    if x.shape[1] != 2 or y.shape[1] != 2:
        raise ValueError("grid_kl_js is for 2D points (N, 2)")
    if range is None:
        both = torch.cat([x, y])
        lo, hi = both.min(dim=0).values, both.max(dim=0).values  # (2,), (2,)
    else:
        lo = torch.tensor([range[0][0], range[1][0]], dtype=torch.float64, device=x.device)
        hi = torch.tensor([range[0][1], range[1][1]], dtype=torch.float64, device=x.device)
    span = torch.where(hi > lo, hi - lo, torch.ones_like(hi))  # (2,)

    def hist(z):  # (N, 2) -> (bins * bins,) probabilities
        keep = ((z >= lo) & (z <= hi)).all(dim=1)
        idx = ((z[keep] - lo) / span * bins).floor().long().clamp(0, bins - 1)  # (N', 2)
        counts = torch.bincount(idx[:, 0] * bins + idx[:, 1], minlength=bins * bins).double()
        p = counts / counts.sum().clamp(min=1)
        return (p + eps) / (1 + eps * bins * bins)

    p, q = hist(x), hist(y)
    mid = 0.5 * (p + q)
    kl = lambda a, b: float((a * (a / b).log()).sum())  # noqa: E731
    return dict(kl=kl(p, q), js=0.5 * kl(p, mid) + 0.5 * kl(q, mid))
