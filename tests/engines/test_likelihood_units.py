"""Likelihoods in honest units (issue 8, items 2 and 3): data-unit NLLs for points, dequantized
bits/dim for images, and exact float64 mixture oracles."""
import math

import numpy as np
import pytest
import torch

from engines import data as D
from engines import likelihood as L
from engines.config import RunConfig, TrainConfig, build
from engines.data.mixture import GaussianMixture
from engines.run import Run


# ----------------------------------------------------------------------------- item 3: exact oracles

def mixtures():
    return [D.mixture("gmm"), D.mixture("8gaussians").vp_marginal(0.8, 0.3),
            GaussianMixture([0.2, 0.5, 0.3], [[0.1, -0.3, 1.0], [1.7, 0.2, -0.4], [-1.0, 1.0, 0.0]], [0.5, 0.9, 0.7])]


def closed_form_log_prob(mix, x):
    """log sum_k w_k N(x; mu_k, s_k^2 I) in numpy float64, written out independently."""
    w, mu, s = (np.asarray(t, dtype=np.float64) for t in (mix._weights64, mix._means64, mix._stds64))
    x = np.asarray(x, dtype=np.float64)
    d = x.shape[1]
    log_terms = (np.log(w)[None] - 0.5 * ((x[:, None, :] - mu[None]) ** 2).sum(-1) / s[None] ** 2
                 - 0.5 * d * np.log(2 * math.pi * s[None] ** 2))
    top = log_terms.max(1, keepdims=True)
    return (top + np.log(np.exp(log_terms - top).sum(1, keepdims=True)))[:, 0]


@pytest.mark.parametrize("k", range(3))
def test_mixture_keeps_float64_and_is_exact(k):
    mix = mixtures()[k]
    g = torch.Generator().manual_seed(k)
    x = torch.randn(50, mix.dim, generator=g, dtype=torch.float64) * 1.5
    lp, sc = mix.log_prob(x), mix.score(x)
    assert lp.dtype == torch.float64 and sc.dtype == torch.float64
    assert mix.denoise(x, 0.3).dtype == torch.float64
    np.testing.assert_allclose(lp.numpy(), closed_form_log_prob(mix, x.numpy()), rtol=0, atol=1e-12)
    # score = grad log p by a 5-point central difference in float64 (error ~ h^4, round-off ~ 1e-16 / h)
    h = 1e-4
    fd = torch.zeros_like(x)
    for d in range(mix.dim):
        e = torch.zeros_like(x)
        e[:, d] = h
        f = lambda t: mix.log_prob(x + t * e)  # noqa: E731
        fd[:, d] = (-f(2) + 8 * f(1) - 8 * f(-1) + f(-2)) / (12 * h)
    np.testing.assert_allclose(sc.numpy(), fd.numpy(), rtol=0, atol=1e-9)
    # float32 in, float32 out, and the same numbers to float32 precision
    assert mix.log_prob(x.float()).dtype == torch.float32
    np.testing.assert_allclose(mix.score(x.float()).numpy(), sc.numpy(), rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- item 2: points

def flow_run(data, seed=0, family="realnvp"):
    tc = build(TrainConfig, dict(n_data=len(data), batch=128, warmup=5, ema=0.0, seed=seed))
    return Run(RunConfig(dataset="moons", family=family, train=tc), data=data)


def test_untrained_realnvp_nll_is_the_gaussian_closed_form_in_data_units():
    data = D.load("moons", 3000, seed=1) * 3.0 + torch.tensor([5.0, -2.0])
    run = flow_run(data)                     # zero-initialized couplings: f = identity, p_norm = N(0, I)
    rep = run.held_out_likelihood()
    z = run.to_norm(run.reference).double()
    expected = float((0.5 * z.pow(2).sum(1) + math.log(2 * math.pi)).mean()) + 2 * math.log(run.scale)
    assert rep["nll_nats"] == pytest.approx(expected, abs=1e-5)
    assert rep["nll_unit"] == "nats per point (data units)" and rep["nll_reference"] == "held-out"
    assert run.evaluate(run.sample(300))["nll_nats"] == rep["nll_nats"]


@pytest.mark.parametrize("family", ["realnvp", "autoregressive"])
def test_2d_nll_shifts_by_exactly_D_log_c_when_the_data_are_scaled(family):
    # c a power of two: c x, its mean and its std are exact in float32, so both runs see bit-identical
    # standardized data, train identically, and differ only by the change of variables D log c
    data, c = D.load("moons", 2000, seed=3), 4.0
    runs = [flow_run(data, family=family), flow_run(data * c, family=family)]
    for r in runs:
        r.train(30)
    a, b = (r.held_out_likelihood()["nll_nats"] for r in runs)
    assert b - a == pytest.approx(2 * math.log(c), rel=1e-9, abs=1e-9)
    assert torch.equal(runs[0].train_data, runs[1].train_data)


# ----------------------------------------------------------------------------- item 2: images

def test_grey_step_finds_the_grid():
    digits = D.load("digits", 300, seed=0)
    assert L.grey_step(digits) == pytest.approx(2 / 16) and L.levels(2 / 16) == 17
    assert L.grey_step(torch.tensor([-1.0, 1.0])) == 2.0
    eight_bit = torch.arange(256.0) / 255 * 2 - 1
    assert L.grey_step(eight_bit) == pytest.approx(2 / 255, rel=1e-4)
    assert L.grey_step(torch.rand(5000) * 2 - 1) == L.DEFAULT_STEP       # no grid: one 8-bit level


def test_flow_trains_on_dequantized_images():
    run = Run(RunConfig(dataset="digits", family="realnvp", options=dict(n_layers=2, hidden=16),
                        train=dict(ema=0.0, batch=32, n_data=300)))
    fam, x = run.family, run.train_data[:32]
    assert fam.grey_step == pytest.approx(0.125)
    loss, terms = fam.loss(x, torch.Generator().manual_seed(5))
    loss = loss.item()
    y = L.dequantize(x, 0.125, torch.Generator().manual_seed(5))
    assert loss == pytest.approx(-float(fam.log_likelihood(y).mean()), rel=1e-5)
    assert abs(loss + float(fam.log_likelihood(x).mean())) > 1e-2     # not the raw grid values
    assert ((y - x).abs() <= 0.0625).all() and (y != x).all()
    assert float(terms["bits_per_dim"]) == pytest.approx(
        (loss - 64 * math.log(0.125)) / (64 * math.log(2)), rel=1e-5)


def test_realnvp_on_digits_cannot_pile_density_on_the_grid():
    """Without dequantization this configuration's log p of the training images runs away from
    that of the same images moved by < half a grey level (gap 22 nats at step 200, measured);
    dequantized it stays within a few nats, and held-out bits/dim is a bound >= 0."""
    run = Run(RunConfig(dataset="digits", family="realnvp", options=dict(n_layers=6),
                        train=dict(ema=0.0, batch=64, lr=5e-3, warmup=10)))
    run.train(200)
    assert not run.diverged
    x = run.train_data[:500]
    moved = x + 0.45 * 0.125 * (2 * torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) - 1)
    gap = float(run.family.log_likelihood(x).mean() - run.family.log_likelihood(moved).mean())
    assert abs(gap) < 12.0, gap
    rep = run.evaluate(run.sample(64))
    assert rep["nll_unit"] == "bits/dim (dequantized, 17 grey levels)" and rep["nll_reference"] == "held-out"
    assert 0.0 < rep["bits_per_dim"] < math.log2(17)   # better than uniform over the 17 levels


def test_made_reports_exact_bits_per_dim_of_binarized_images():
    run = Run(RunConfig(dataset="digits_binary", family="autoregressive", options=dict(hidden=32, depth=1),
                        train=dict(ema=0.0, batch=64)))
    rep = run.held_out_likelihood()
    x = run.to_norm(run.reference[:2000])
    lp = run.family.log_likelihood(x)
    assert rep["bits_per_dim"] == pytest.approx(-float(lp.double().mean()) / (64 * math.log(2)), rel=1e-9)
    assert rep["nll_unit"] == "bits/dim (binarized pixels)"
    before = rep["bits_per_dim"]
    assert 0.9 < before < 1.1                    # untrained: about a fair coin per pixel
    run.train(100)
    assert run.held_out_likelihood()["bits_per_dim"] < 0.8 * before


def test_families_without_a_cheap_likelihood_report_none():
    run = Run(RunConfig(dataset="moons", family="ddpm", options=dict(hidden=16, T=20),
                        train=dict(n_data=1000)))
    rep = run.evaluate(run.sample(200))
    assert not any(k in rep for k in ("nll_nats", "bits_per_dim", "nll_unit"))
