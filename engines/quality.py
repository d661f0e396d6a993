"""The "x iid" quality score: a sample set's energy distance to reference data, divided by what a
perfect sampler would get at the same sizes, with the noise band of one reading.

Energy distance V-statistic (Székely & Rizzo 2013), n samples x against m reference points y:
    V = 2/(nm) sum_ij |x_i - y_j| - 1/n^2 sum_ij |x_i - x_j| - 1/m^2 sum_ij |y_i - y_j|.
For a perfect sampler (x and y independent draws of one law) E|x_i - x_j| = delta for i != j and 0
on the diagonal, so
    E V = 2 delta - (n-1)/n delta - (m-1)/m delta = delta (1/n + 1/m)          (the floor),
with delta = E|X - X'|, estimated once per run by the U-statistic over all pairs of up to
`DELTA_POINTS` random data points. x iid = V / floor reads 1 on average at any n and m.

Noise of one reading. Energy distance is 2 x the squared MMD of the distance-induced kernel
k(x, y) = (|x - z0| + |y - z0| - |x - y|) / 2 (Sejdinovic et al. 2013, Ann. Stat., Thm. 22), so
V = 2 |mean phi(x) - mean phi(y)|^2 in its feature space. Under a perfect sampler the difference
of means is asymptotically Gaussian with covariance (1/n + 1/m) C, C the covariance operator of
the centred kernel with eigenvalues lambda_k (Gretton et al. 2012, JMLR, Thm. 12):
    V / floor  ->  sum_k lambda_k chi2_1 / sum_k lambda_k,
whatever n and m are: the ratio's spread does not shrink with more samples. Its mean is 1 and its
variance 2 sum lambda^2 / (sum lambda)^2 = 2 / nu; we match it with chi2_nu / nu (Satterthwaite's
effective degrees of freedom) and give the 5 % and 95 % quantiles by the Wilson-Hilferty cube-root
approximation. The lambdas come from the doubly centred distance matrix of up to `DOF_POINTS`
points: K = -H Dist H / 2, sum lambda ~ tr K / k, sum lambda^2 ~ sum_{i != j} K_ij^2 / (k (k-1)).
For 2D toy data nu is about 2-5 (a single reading of a perfect sampler falls anywhere in about
[0.2, 2.4]); for 8x8 digits it is about 40 ([0.7, 1.35]).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from . import metrics

HOLD_OUT_FRACTION = 0.2      # share of the data kept away from training as the reference set
HOLD_OUT_MAX = 2000          # at most this many reference points
HOLD_OUT_MIN_DATA = 1000     # smaller datasets train on everything and are scored on the training set
DELTA_POINTS = 2000          # E|X - X'| from all pairs of this many random points (2 M pairs)
DOF_POINTS = 600             # the band's effective degrees of freedom from a 600 x 600 matrix
MIN_DISTINCT = 5             # fewer distinct points than this: no score, a message instead
BAND_Z = 1.6448536269514722  # standard normal 95 % quantile: the band holds 90 % of readings

HELD_OUT, TRAINING_SET = "held-out", "training set"


def held_out_split(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(training indices, reference indices or None): a random HOLD_OUT_FRACTION (<= HOLD_OUT_MAX)
    of n points is held out when n >= HOLD_OUT_MIN_DATA. One random permutation of one pool, so the
    reference is an iid subset even for generators that space points evenly (make_moons)."""
    if n < HOLD_OUT_MIN_DATA:
        return torch.arange(n), None
    m = min(HOLD_OUT_MAX, int(n * HOLD_OUT_FRACTION))
    p = torch.randperm(n, generator=generator)
    return p[m:].sort().values, p[:m]


def chi2_band(dof: float, z: float = BAND_Z) -> tuple[float, float]:
    """Quantiles (Phi(-z), Phi(z)) of chi2_dof / dof by Wilson & Hilferty (1931):
    chi2_nu / nu ~ (1 - 2/(9 nu) + z sqrt(2/(9 nu)))^3."""
    a = 2.0 / (9.0 * dof)
    lo, hi = (max(0.0, 1 - a - z * math.sqrt(a)) ** 3, (1 - a + z * math.sqrt(a)) ** 3)
    return lo, hi


def null_dof(x: torch.Tensor) -> float:
    """nu = (sum lambda)^2 / sum lambda^2 of the centred distance kernel on the rows of x (k, D)."""
    d = torch.cdist(x, x)                                                   # (k, k), symmetric
    k = d.shape[0]
    row = d.mean(1)                                                         # (k,) = column means
    cent = d.sub_(row[None, :]).sub_(row[:, None]).add_(row.mean()).mul_(-0.5)  # in place: (k, k)
    diag = cent.diagonal()
    trace, diag_sq = diag.mean(), diag.square().sum()                       # read before squaring in place
    off = (cent.square_().sum() - diag_sq) / (k * (k - 1))
    return float(trace * trace / off.clamp(min=1e-300))


@dataclass(frozen=True)
class QualityScore:
    """One reading: the energy distance, its x-iid ratio and band (None on degenerate data)."""
    energy_distance: float
    x_iid: float | None
    band: tuple[float, float] | None
    floor: float | None
    n_samples: int
    n_reference: int
    reference: str                 # HELD_OUT or TRAINING_SET
    note: str = ""                 # why there is no ratio

    def as_metrics(self) -> dict:
        out = dict(energy_distance=self.energy_distance, reference_set=self.reference,
                   n_scored=self.n_samples, n_reference=self.n_reference)
        if self.x_iid is None:
            out["quality_note"] = self.note
        else:
            out.update(energy_distance_x_iid=self.x_iid, x_iid_band=self.band, energy_distance_floor=self.floor)
        return out


class QualityReference:
    """The reference set and the floor statistics of one run, computed once.

    pool: every data point (N, ...) in data coordinates, for delta and nu; reference: the points
    samples are scored against (held-out, or the training set, as `kind` says)."""

    def __init__(self, pool: torch.Tensor, reference: torch.Tensor, kind: str, seed: int = 0):
        self.reference = reference
        self.kind = kind
        flat = pool.reshape(len(pool), -1).to(torch.float64)
        g = torch.Generator().manual_seed(seed)
        sub = flat[torch.randperm(len(flat), generator=g)[:DELTA_POINTS]]  # (k, D)
        distinct = len(torch.unique(sub, dim=0))
        k = len(sub)
        self.delta = metrics.self_distance_mean(sub) * k / max(k - 1, 1)  # U-statistic: i != j only
        span = float((sub.max(0).values - sub.min(0).values).abs().max()) if k else 0.0
        self.note = ""
        if distinct < MIN_DISTINCT or not self.delta > 1e-9 * max(span, 1e-30):
            self.note = (f"no quality score: the data have only {distinct} distinct "
                         f"{'point' if distinct == 1 else 'points'}, too few to compare samples with")
            self.dof = None
        else:
            self.dof = null_dof(sub[:DOF_POINTS])
        self._self_terms: dict[int, float] = {}                           # m -> mean |y - y'| (V form)

    def floor(self, n: int, m: int) -> float:
        """E V for a perfect sampler: delta (1/n + 1/m)."""
        return self.delta * (1.0 / n + 1.0 / m)

    def band(self) -> tuple[float, float] | None:
        return None if self.dof is None else chi2_band(self.dof)

    def score(self, samples, n_ref: int | None = None, max_samples: int | None = None) -> QualityScore:
        """Score samples (n, ...) in data coordinates against the first n_ref reference points."""
        y = self.reference if n_ref is None else self.reference[:n_ref]
        x = torch.as_tensor(samples)
        x = x if max_samples is None else x[:max_samples]
        m, n = len(y), len(x)
        if m not in self._self_terms:
            self._self_terms[m] = metrics.self_distance_mean(y)
        ed = metrics.energy_distance(x, y, y_self=self._self_terms[m])
        if self.dof is None:
            return QualityScore(ed, None, None, None, n, m, self.kind, self.note)
        fl = self.floor(n, m)
        return QualityScore(ed, ed / fl, self.band(), fl, n, m, self.kind)


def summary_lines(metrics: dict) -> list[str]:
    """Short lines for a screen or a log: the x-iid reading with its reference, then the band a
    perfect sampler's reading falls in 90 % of the time; or the note on degenerate data; [] when
    metrics hold no quality score."""
    if metrics.get("quality_note"):
        return [metrics["quality_note"]]
    r = metrics.get("energy_distance_x_iid")
    if r is None:
        return []
    band, ref = metrics.get("x_iid_band"), metrics.get("reference_set", HELD_OUT)
    hi = band[1] if band else 1.5
    verdict = "≈ fresh data" if r <= hi else "close" if r < 4 * hi else "still far" if r < 30 else "far"
    lines = [f"energy distance {r:.2f} × iid ({verdict}; {ref})"]
    if band:
        lines.append(f"a perfect sampler reads {band[0]:.2f}–{band[1]:.2f} × iid (90 %)")
    return lines
