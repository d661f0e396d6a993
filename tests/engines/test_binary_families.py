"""Families on discrete data: RBM, MADE (autoregressive on binary images), discrete diffusion (D3PM)."""
import itertools

import numpy as np
import pytest
import torch

from engines.config import ConfigError, RunConfig, TrainConfig, build
from engines.families.autoregressive import BinaryMADE
from engines.families.discrete_diffusion import (DiscreteDiffusion, DiscreteDiffusionConfig, alpha_bars,
                                                 reverse_probs, transition_matrices)
from engines.families.rbm import RBMParams, ais_log_partition, exact_log_partition
from engines.run import Run


def make_run(family, options=None, dataset="digits_binary", **train):
    t = dict(batch=128, n_data=1797, warmup=10, threads=1)
    t.update(train)
    return Run(RunConfig(dataset=dataset, family=family, options=options or {}, train=build(TrainConfig, t)))


# ----------------------------------------------------------------------------- RBM

def test_rbm_refuses_points():
    with pytest.raises(ConfigError, match="digits_binary"):
        make_run("rbm", dataset="moons")


@pytest.mark.parametrize("pcd", [False, True])
def test_rbm_cd_and_pcd_lower_the_free_energy_of_data(pcd):
    run = make_run("rbm", dict(hidden=32, pcd=pcd, chains=64), lr=5e-3, ema=0.0)
    fam = run.family
    data = run.train_data[:500]
    noise = torch.where(torch.rand(data.shape, generator=torch.Generator().manual_seed(0)) < 0.5, -1.0, 1.0)

    def gap():  # F(noise) - F(data): how much more probable the data are than random pixels
        with torch.no_grad():
            return float(fam.free_energy(noise, fam.net).mean() - fam.free_energy(data, fam.net).mean())
    g0, pll0 = gap(), run.history.get("pseudo_ll")
    run.train(150)
    assert gap() > g0 + 10, (g0, gap())
    pll = run.history["pseudo_ll"]
    assert pll0 is None and np.mean(pll[-10:]) > np.mean(pll[:10]) + 5
    if pcd:
        assert fam.extra_state()["chains"].shape == (64, 64)
    v = run.views({})
    assert v["filters"]["images"].shape == (32, 1, 8, 8) and np.abs(v["filters"]["images"]).max() <= 1 + 1e-6
    assert v["chain"]["images"].shape[1:] == (1, 8, 8)


def test_rbm_gibbs_sampler_animates_images():
    run = make_run("rbm", dict(hidden=16))
    run.train(5)
    seen = []
    x = run.sample(10, options=dict(steps=7), callback=lambda d: seen.append(d["x"]))
    assert len(seen) == 7 and seen[-1].shape == (10, 1, 8, 8)
    assert set(torch.unique(seen[-1]).tolist()) <= {-1.0, 1.0} and torch.equal(x, seen[-1])


def test_rbm_partition_function_ais_matches_enumeration():
    torch.manual_seed(0)
    rbm = RBMParams(16, 10, init_std=0.3)
    with torch.no_grad():
        rbm.b.normal_(0, 0.5)
        rbm.c.normal_(0, 0.5)
    exact = exact_log_partition(rbm)
    # brute force over the visible states agrees with the sum over hidden ones
    vs = torch.tensor(list(itertools.product([0.0, 1.0], repeat=16)))
    with torch.no_grad():
        brute = float(torch.logsumexp(-rbm.free_energy(vs), 0))
    assert abs(exact - brute) < 1e-3
    ais = ais_log_partition(rbm, n_chains=200, n_betas=500, generator=torch.Generator().manual_seed(0))
    assert abs(ais - exact) < 0.1, (ais, exact)


# ----------------------------------------------------------------------------- MADE

def test_made_is_autoregressive_and_normalized():
    torch.manual_seed(0)
    D_ = 6
    made = BinaryMADE(D_, hidden=16, depth=2)
    x = torch.rand(1, D_).round().requires_grad_(True)
    out = made(x)
    for d in range(D_):
        (g,) = torch.autograd.grad(out[0, d], x, retain_graph=True)
        assert (g[0, d:] == 0).all()          # logit d sees only pixels before d
    # the Bernoulli chain rule sums to one over all 2^D images
    vs = torch.tensor(list(itertools.product([0.0, 1.0], repeat=D_)))
    with torch.no_grad():
        lp = -torch.nn.functional.binary_cross_entropy_with_logits(made(vs), vs, reduction="none").sum(1)
    assert abs(float(lp.exp().sum()) - 1) < 1e-5


def test_made_trains_and_samples_pixel_by_pixel():
    run = make_run("autoregressive", dict(hidden=128))
    fam = run.family
    assert "images" in fam.capabilities
    x = run.train_data[:500]
    nll0 = -float(fam.log_likelihood(x).mean())
    run.train(200)
    nll1 = -float(fam.log_likelihood(x).mean())
    assert nll0 > 40 and nll1 < nll0 - 15, (nll0, nll1)   # nats per 8x8 image; log(2) * 64 = 44 at random
    seen = []
    s = run.sample(20, callback=lambda d: seen.append(d["x"]))
    assert len(seen) == 64 and (seen[0][:, 0, 0, 1:] == 0).all()   # not-yet-sampled pixels are grey
    assert set(torch.unique(s).tolist()) <= {-1.0, 1.0}


# ----------------------------------------------------------------------------- discrete diffusion

@pytest.mark.parametrize("corruption", ["uniform", "absorbing"])
@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_d3pm_marginals_match_iterating_the_one_step_kernel(corruption, schedule):
    T, K = 12, 5
    Q, Qbar = transition_matrices(corruption, K, alpha_bars(schedule, T))
    prod = torch.eye(Q.shape[1], dtype=torch.float64)
    for t in range(1, T + 1):
        prod = prod @ Q[t]
        assert torch.allclose(prod, Qbar[t], atol=1e-10), t
        assert torch.allclose(Q[t].sum(1), torch.ones(Q.shape[1], dtype=torch.float64))
    if corruption == "absorbing":
        assert torch.allclose(Qbar[T][:, K], torch.ones(K + 1, dtype=torch.float64))   # everything is [MASK]
    else:
        assert torch.allclose(Qbar[T], torch.full((K, K), 1 / K, dtype=torch.float64))


@pytest.mark.parametrize("corruption", ["uniform", "absorbing"])
def test_d3pm_reverse_step_with_the_true_x0_is_the_exact_posterior(corruption):
    T, K = 10, 4
    Q, Qbar = transition_matrices(corruption, K, alpha_bars("cosine", T))
    S = Q.shape[1]
    for t in (1, 4, T):
        for x0, xt in itertools.product(range(K), range(S)):
            if Qbar[t, x0, xt] == 0:
                continue
            p0 = torch.zeros(1, 1, S, dtype=torch.float64)
            p0[0, 0, x0] = 1
            p = reverse_probs(p0, torch.tensor([[xt]]), Q[t], Qbar[t], Qbar[t - 1])[0, 0]
            # Bayes: q(x_{t-1} | x_t, x_0) ∝ q(x_t | x_{t-1}) q(x_{t-1} | x_0), by brute force
            joint = torch.tensor([Q[t, j, xt] * Qbar[t - 1, x0, j] for j in range(S)], dtype=torch.float64)
            assert torch.allclose(p, joint / joint.sum(), atol=1e-9)


def test_d3pm_absorbing_masks_everything_at_the_last_step():
    fam = DiscreteDiffusion(build(DiscreteDiffusionConfig, dict(T=20, hidden=16, depth=1)), (2,), "cpu")
    x = torch.randn(300, 2)
    g = torch.Generator().manual_seed(0)
    xT = fam.q_sample(fam.encode(x), torch.full((300,), 20), g)
    assert (xT == fam.mask).all()
    x1 = fam.q_sample(fam.encode(x), torch.full((300,), 1), g)
    assert (x1 == fam.mask).float().mean() < 0.05
    assert torch.equal(fam.decode(fam.prior(4)), torch.zeros(4, 2))   # masked tokens sit at 0


@pytest.mark.parametrize("corruption", ["uniform", "absorbing"])
def test_d3pm_learns_points(corruption):
    t = dict(batch=128, n_data=2000, warmup=10, threads=1)
    run = Run(RunConfig(dataset="moons", family="discrete_diffusion", train=build(TrainConfig, t),
                        options=dict(corruption=corruption, hidden=128, depth=2, T=20)))
    q0 = run.evaluate(run.sample(600), n_ref=600)["energy_distance_x_iid"]
    run.train(300)
    ce = run.history["ce"]
    assert np.mean(ce[-20:]) < np.mean(ce[:20]) - 0.2
    steps = []
    s = run.sample(600, callback=lambda d: steps.append(d["t"]))
    assert steps == list(range(19, -1, -1))
    q1 = run.evaluate(s, n_ref=600)["energy_distance_x_iid"]
    assert q1 < q0 / 5, (q0, q1)
    v = run.views(dict(level=19))["forward"]
    assert v["kind"] == "scatter" and v["x"].shape[1] == 2


def test_d3pm_images_train_and_show_the_forward_process():
    run = make_run("discrete_diffusion", dict(hidden=128, depth=2, T=20))
    assert {"images", "noise_levels"} <= run.family.capabilities
    run.train(150)
    ce = run.history["ce"]
    assert np.mean(ce[-20:]) < np.mean(ce[:20]) - 0.1
    first = run.views(dict(level=0))["forward"]["images"]
    last = run.views(dict(level=19))["forward"]["images"]
    assert first.shape[1:] == (1, 8, 8) and set(np.unique(first)) <= {-1.0, 0.0, 1.0}
    assert (last == 0).all() and (first != 0).mean() > 0.9     # all [MASK] (grey) at the end, little at t=0
    s = run.sample(16)
    assert s.shape == (16, 1, 8, 8) and set(torch.unique(s).tolist()) <= {-1.0, 1.0}
