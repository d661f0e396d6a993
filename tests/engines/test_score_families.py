"""The score-based families: ncsn, score_sde (vp, ve) learn on moons and on an analytic mixture,
their learned score approaches the exact one, score_sde's ODE likelihood is a normalized
density, and the exact family (no training) samples and computes likelihoods in closed form."""
import math

import numpy as np
import pytest
import torch

from engines import metrics
from engines.config import ConfigError, RunConfig, TrainConfig, build
from engines.run import Run


def make_run(dataset, family, **options):
    small = dict(hidden=64, depth=2) if family != "exact" else {}
    small.update(options)
    return Run(RunConfig(dataset=dataset, family=family, options=small,
                         train=build(TrainConfig, dict(batch=128, n_data=2000, warmup=20, ema=0.99))))


def fisher_at_level(run, level, n=2000):
    """0.5 E ||s_theta - grad log p_level||^2 over points of the exactly noised mixture
    (normalized coordinates), i.e. the Fisher divergence the DSM loss bounds at that level."""
    fam = run.family
    a, s = fam.level_alpha_sigma(level)
    noised = fam.context["mixture"].vp_marginal(a, s)
    x = noised.sample(n, seed=5)
    return metrics.fisher_divergence(torch.as_tensor(fam.field(x, level)["score"]), noised.score(x))


CASES = [("ncsn", {}), ("score_sde", dict(sde="vp")), ("score_sde", dict(sde="ve"))]


@pytest.mark.parametrize("family,options", CASES, ids=["ncsn", "sde-vp", "sde-ve"])
def test_learns_moons(family, options):
    run = make_run("moons", family, **options)
    before = run.evaluate(run.sample(1000, seed=3))["energy_distance_x_iid"]
    assert run.train(600) == 600
    loss = run.history["loss"]
    assert np.mean(loss[-50:]) < 0.85 * np.mean(loss[:50])
    x = run.sample(1000, seed=3)
    assert torch.isfinite(x).all() and x.shape == (1000, 2)
    after = run.evaluate(x)["energy_distance_x_iid"]
    assert after < 0.05 * before and after < 40, (before, after)


@pytest.fixture(scope="module")
def trained_gmm():
    """Untrained and 600-step fits on the 0.8 / 0.2 mixture, with their Fisher divergences."""
    out = {}
    for family, options in CASES[:2]:
        run = make_run("gmm", family, **options)
        level = 0.3 if family == "ncsn" else None        # ncsn: sigma; sde: t with std ~ 0.15
        f0 = fisher_at_level(run, level)
        run.train(600)
        out[family] = (run, f0, fisher_at_level(run, level))
    return out


@pytest.mark.parametrize("family", ["ncsn", "score_sde"])
def test_fisher_divergence_to_the_exact_score_falls(trained_gmm, family):
    run, before, after = trained_gmm[family]
    assert after < 0.4 * before, (before, after)
    # the run's field overlays the analytic score of the same noise level, in data units
    fld = run.field(resolution=12)
    assert fld["score"].shape == fld["true_score"].shape == (12, 12, 2)
    assert np.isfinite(fld["score"]).all() and np.isfinite(fld["true_score"]).all()


def test_score_sde_ode_likelihood_is_a_normalized_density(trained_gmm):
    """exp(log p) from the probability-flow ODE with the instantaneous change of variables
    sums to ~1 over a grid: a wrong sign or a missing divergence term would not."""
    run, _, _ = trained_gmm["score_sde"]
    fam = run.family
    fam.cfg.likelihood_tol = 1e-3
    h = 0.25
    g = torch.arange(-4.0, 4.0 + 1e-6, h)
    grid = torch.cartesian_prod(g, g)                                       # (1089, 2) normalized
    logp = fam.log_likelihood(grid)
    assert logp.shape == (len(grid),) and torch.isfinite(logp).all()
    mass = float(logp.exp().sum() * h * h)
    assert 0.8 < mass < 1.2, mass
    # data is more likely than empty space
    x = run.to_norm(run.data[:200])
    assert fam.log_likelihood(x).mean() > logp.max() - 6


def test_config_errors_are_clear():
    with pytest.raises(ConfigError, match="sigma_min"):
        make_run("moons", "ncsn", sigma_min=2.0, sigma_max=1.0)
    with pytest.raises(ConfigError, match="beta_min"):
        make_run("moons", "score_sde", beta_min=30.0)
    with pytest.raises(ConfigError, match="parametrization"):
        make_run("moons", "ncsn", parametrization="nope")


# ----------------------------------------------------------------------------- exact


def test_exact_needs_an_analytic_dataset():
    with pytest.raises(ConfigError, match="known density"):
        make_run("moons", "exact")


@pytest.mark.parametrize("process", ["vp", "subvp"])
def test_exact_ode_likelihood_matches_the_closed_form(process):
    run = make_run("gmm", "exact", process=process)
    fam = run.family
    x = fam.mixture.sample(300, seed=3)                                     # normalized coordinates
    ll = fam.ode_log_likelihood(x)
    exact = fam.log_prob_at_eps(x)
    assert (ll - exact).abs().max() < 0.05, (ll - exact).abs().max()
    # at eps the data is barely blurred: the ODE value is also close to log p_data itself
    assert (ll - fam.log_likelihood(x)).abs().mean() < 0.05
    # the Hutchinson estimate is unbiased: noisy per point, right on average
    hutch = fam.ode_log_likelihood(x, rtol=1e-4, atol=1e-4, hutchinson="rademacher", generator=torch.Generator().manual_seed(0))
    err = hutch - exact
    assert err.abs().mean() > 1e-3 and abs(float(err.mean())) < 4 * float(err.std()) / math.sqrt(len(x)) + 0.02


def test_exact_samplers_work_through_the_run():
    run = make_run("gmm", "exact")
    assert run.family.trainable is False and run.train(5) == 0
    fast = dict(ddpm={}, ddim=dict(steps=50), annealed_langevin=dict(steps_per_level=50), langevin=dict(n_steps=300),
                euler_maruyama=dict(steps=200), pc=dict(steps=100), ode=dict(rtol=1e-3, atol=1e-3),
                # the generic samplers of the NoiseModel adapter (families/noise_model.py)
                euler=dict(steps=40), heun=dict(steps=20), dpmpp_2m=dict(steps=20), ddim_sigma=dict(steps=40, eta=1.0),
                ode_rk4=dict(steps=10), ode_dopri5=dict(rtol=1e-3, atol=1e-3))
    assert set(fast) == set(run.family.samplers)
    for name, opts in fast.items():
        steps = []
        x = run.sample(600, name, opts, seed=1, callback=lambda info: steps.append(info["i"]))
        ev = run.evaluate(x)
        assert steps and torch.isfinite(x).all(), name
        assert ev["modes_covered"] == 2, (name, ev)
        if name != "langevin":          # plain Langevin cannot fix the mode weights (the NCSN lesson)
            assert ev["energy_distance_x_iid"] < 5, (name, ev)
    # the field is the analytic one: score equals the run's true-score overlay, density integrates
    fld = run.field(resolution=40, bounds=(-6, 6, -6, 6))
    assert np.allclose(fld["score"], fld["true_score"], atol=1e-3 * (1 + np.abs(fld["true_score"]).max()))
    cell = (12 / 39) ** 2
    assert abs(np.exp(fld["log_density"]).sum() * cell - 1) < 0.05


@pytest.mark.parametrize("process", ["ddpm", "ncsn", "vp", "ve", "subvp"])
def test_exact_processes_give_levels_and_default_samplers(process):
    run = make_run("8gaussians", "exact", process=process)
    fam = run.family
    lv = fam.level
    assert lv["lo"] < lv["default"] < lv["hi"]
    a, s = fam.level_alpha_sigma(lv["default"])
    assert 0 < a <= 1 and s > 0
    assert fam.schedule()["x_label"]
    x = run.sample(300, seed=2)                                              # the process's default sampler
    assert run.evaluate(x)["modes_covered"] == 8
