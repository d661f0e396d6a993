"""engines.metrics: ~0 for equal distributions, grows with a shift, deterministic."""

import math

import numpy as np
import pytest
import torch

from engines import metrics as M


def gauss(n, seed, shift=(0.0, 0.0), scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, generator=g) * scale + torch.tensor(shift)


def test_energy_distance_same_vs_shifted():
    x, y = gauss(1000, 0), gauss(1000, 1)
    same = M.energy_distance(x, y)
    far = M.energy_distance(x, gauss(1000, 2, shift=(2.0, 0.0)))
    assert 0.0 <= same < 0.02
    assert far > 1.0
    assert far > 50 * same
    # symmetric; V-statistic is >= 0 and exactly 0 for identical sets; U-statistic near 0
    assert M.energy_distance(x, y) == pytest.approx(M.energy_distance(y, x), rel=1e-9)
    assert M.energy_distance(x, x) == pytest.approx(0.0, abs=1e-9)
    assert abs(M.energy_distance(x, y, unbiased=True)) < 0.01


def test_energy_distance_population_value():
    # 1D N(0,1) vs N(d,1): D^2 = 2 E|Z + d| - 2 E|Z|, Z ~ N(0, 2)  (E|N(m,s^2)| closed form)
    d, s = 1.0, math.sqrt(2.0)

    def e_abs(m):  # E|N(m, s^2)| (folded normal mean)
        return (s * math.sqrt(2 / math.pi) * math.exp(-m * m / (2 * s * s))
                + m * math.erf(m / (s * math.sqrt(2))))
    expected = 2 * e_abs(d) - 2 * e_abs(0.0)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(4000, generator=g), torch.randn(4000, generator=g) + d
    assert M.energy_distance(x, y, unbiased=True) == pytest.approx(expected, abs=0.03)


def test_energy_distance_accepts_numpy_and_images():
    x = np.random.default_rng(0).normal(size=(50, 1, 4, 4))
    assert M.energy_distance(x, x + 1.0) > 0
    assert M.energy_distance(torch.zeros(5, 2), np.ones((7, 2))) == pytest.approx(2 * math.sqrt(2))


def test_iid_energy_distance_matches_expectation():
    # E[V-statistic] between two iid n-samples = E|X - X'| * 2/n; for N(0, I_2): E|X-X'| = sqrt(pi)
    n = 500
    level = M.iid_energy_distance(lambda n, s: gauss(n, s), n, repeats=8, seed=0)
    assert level == pytest.approx(math.sqrt(math.pi) * 2 / n, rel=0.3)
    assert level == M.iid_energy_distance(lambda n, s: gauss(n, s), n, repeats=8, seed=0)


def test_mmd_detects_shift():
    x, y = gauss(800, 0), gauss(800, 1)
    same = M.mmd_rbf(x, y)
    shifted = M.mmd_rbf(x, gauss(800, 2, shift=(0.5, 0.0)))
    assert abs(same) < 0.005
    assert shifted > 0.02 and shifted > 10 * abs(same)
    assert M.mmd_rbf(x, y) == pytest.approx(M.mmd_rbf(y, x), rel=1e-6)
    assert M.mmd_rbf(x, y, bandwidths=[0.3, 0.7]) == pytest.approx(
        M.mmd_rbf(y, x, bandwidths=[0.7, 0.3]))


def test_mmd_fast_path_matches_plain_exp():
    # default bandwidths use exp(-4c d^2) = exp(-c d^2)^4; compare with a direct computation
    x, y = gauss(60, 0), gauss(70, 1, shift=(0.3, 0.0))
    s = [0.2, 0.4, 0.8]
    xd, yd = x.double(), y.double()

    def k(a, b):
        d2 = torch.cdist(a, b).square()
        return sum(torch.exp(-d2 / (2 * h * h)) for h in s) / len(s)
    kxx, kyy, kxy = k(xd, xd), k(yd, yd), k(xd, yd)
    n, m = len(x), len(y)
    ref = ((kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
           + (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1)) - 2 * kxy.mean())
    assert M.mmd_rbf(x, y, bandwidths=s) == pytest.approx(float(ref), abs=1e-12)


@pytest.mark.parametrize("m", [3000, 1700])  # equal and unequal sizes
def test_sliced_wasserstein_shift(m):
    # SW_2 = sqrt(E_theta W_2^2); W_2 along theta of a shift delta e_1 is |delta cos theta|,
    # so SW_2 = delta * sqrt(E cos^2 theta) = delta / sqrt(2) in 2D (+ small sampling noise).
    delta = 2.0
    x, y = gauss(3000, 0), gauss(m, 1, shift=(delta, 0.0))
    sw = M.sliced_wasserstein(x, y, n_projections=256, seed=0)
    assert sw == pytest.approx(delta / math.sqrt(2), rel=0.05)
    assert M.sliced_wasserstein(x, gauss(m, 2), n_projections=256) < 0.1
    assert sw == M.sliced_wasserstein(x, y, n_projections=256, seed=0)  # deterministic


def test_sliced_wasserstein_equal_sizes_is_exact_1d():
    x, y = torch.tensor([[0.0], [1.0], [5.0]]), torch.tensor([[2.0], [0.0], [1.0]])
    # 1D: the only direction is +-1; sorted pairs (0,0), (1,1), (5,2) -> W_2 = sqrt(9/3)
    assert M.sliced_wasserstein(x, y, n_projections=4) == pytest.approx(math.sqrt(3.0))


def test_mode_coverage():
    means = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    samples = torch.cat([torch.full((6, 2), 0.1),                   # 6 near mode 0
                         torch.tensor([[10.0, 0.5], [10.0, 0.5]]),  # 2 near mode 1
                         torch.tensor([[5.0, 5.0], [-20.0, 0.0]])])  # 2 near no mode
    out = M.mode_coverage(samples, means, radius=1.0)
    assert out["covered"] == 2 and out["total"] == 3
    assert out["fraction"] == pytest.approx(2 / 3)
    assert out["weights"] == pytest.approx([0.6, 0.2, 0.0])
    assert out["outside"] == pytest.approx(0.2)
    assert M.mode_coverage(samples, means, radius=1.0, min_count=3)["covered"] == 1
    # per-mode radius: mode 1's samples (0.5 away) no longer count
    assert M.mode_coverage(samples, means, radius=[1.0, 0.1, 1.0])["covered"] == 1


def test_fisher_divergence():
    x = gauss(100, 0)
    true = -x  # score of N(0, I)
    assert M.fisher_divergence(true, true) == 0.0
    assert M.fisher_divergence(-x + 1.0, true) == pytest.approx(0.5 * 2.0)  # 0.5 * |(1, 1)|^2
    assert M.fisher_divergence(lambda z: -z / 2, lambda z: -z, x) == pytest.approx(
        0.5 * float((x / 2).square().sum(1).mean()))


def test_grid_kl_js():
    x = gauss(2000, 0)
    same = M.grid_kl_js(x, x)
    assert same["kl"] == pytest.approx(0.0, abs=1e-12)
    assert same["js"] == pytest.approx(0.0, abs=1e-12)
    near = M.grid_kl_js(x, gauss(2000, 1), bins=20)
    far = M.grid_kl_js(x, gauss(2000, 2, shift=(20.0, 20.0)))
    assert far["kl"] > 5.0 and far["js"] == pytest.approx(math.log(2), rel=0.01)
    assert near["kl"] < 1.0 and near["js"] < 0.1
    r = M.grid_kl_js(x, x, range=((-1, 1), (-1, 1)))
    assert r["kl"] == pytest.approx(0.0, abs=1e-12)
