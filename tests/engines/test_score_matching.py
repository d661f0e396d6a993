"""Score matching families: dsm (Vincent 2011) and score_matching (Hyvärinen 2005 exact, sliced
SM and SSM-VR of Song et al. 2019): closed forms, unbiasedness, and brief training."""
import math

import pytest
import torch
from torch import nn

from engines import metrics as M
from engines.config import ConfigError, RunConfig, TrainConfig, build
from engines.families.dsm import DSM, DSMConfig
from engines.families.score_matching import (ScoreMatching, ScoreMatchingConfig, exact_trace,
                                             score_matching_terms)
from engines.run import Run

A = torch.tensor([[2.0, 0.5], [-0.3, 1.0]])           # a non-symmetric linear score s(x) = -A x
C_SQRT = torch.tensor([[1.0, 0.0], [0.6, 0.5]])       # data x = C_SQRT z: covariance C = L L^T


def gaussian_data(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, generator=g) @ C_SQRT.T


def test_exact_loss_of_a_linear_score_is_the_closed_form():
    x = gaussian_data(20000)
    trace, norm = score_matching_terms(lambda y: -y @ A.T, x, "exact")
    # per sample: tr(grad s) = tr(-A) exactly, ||s||^2/2 = ||A x||^2/2 exactly
    assert torch.allclose(trace, torch.full_like(trace, -float(A.trace())), atol=1e-5)
    assert torch.allclose(norm, 0.5 * (x @ A.T).pow(2).sum(1), rtol=1e-5)
    # population value J = -tr(A) + tr(A C A^T)/2, and J = Fisher divergence - E||grad log p||^2/2
    C = C_SQRT @ C_SQRT.T
    J = -float(A.trace()) + 0.5 * float((A @ C @ A.T).trace())
    P = torch.linalg.inv(C)                                # true score -P x
    fisher = 0.5 * float(((A - P) @ C @ (A - P).T).trace())
    assert J == pytest.approx(fisher - 0.5 * float(P.trace()), rel=1e-5)
    est = (trace + norm).detach()
    assert abs(float(est.mean()) - J) < 5 * float(est.std()) / math.sqrt(len(est))


@pytest.mark.parametrize("model", ["score", "energy"])
def test_family_loss_uses_the_exact_objective(model):
    """The family's loss with a hand-set linear net (energy: E = x^T S x / 2, score -S x)."""
    S = 0.5 * (A + A.T)                                   # symmetric: a gradient field
    cfg = build(ScoreMatchingConfig, dict(objective="exact", noise=0.0, model=model))
    fam = ScoreMatching(cfg, (2,), "cpu")
    if model == "score":
        lin = nn.Linear(2, 2, bias=False)
        lin.weight.data = -S.clone()
        fam.net = lin
    else:
        class Quadratic(nn.Module):
            def forward(self, x):
                return 0.5 * ((x @ S) * x).sum(1)
        fam.net = Quadratic()
    x = gaussian_data(4096, seed=1)
    loss, terms = fam.loss(x)
    assert float(terms["trace"]) == pytest.approx(-float(S.trace()), rel=1e-5)
    assert float(terms["norm"]) == pytest.approx(float(0.5 * (x @ S).pow(2).sum(1).mean()), rel=1e-5)
    assert float(loss.detach()) == pytest.approx(float(terms["trace"] + terms["norm"]), rel=1e-6)


def test_exact_trace_matches_the_jacobian():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 16), nn.SiLU(), nn.Linear(16, 3))
    x = torch.randn(5, 3, requires_grad=True)
    tr = exact_trace(net(x), x).detach()
    for i in range(5):
        J = torch.autograd.functional.jacobian(net, x[i].detach())
        assert float(tr[i]) == pytest.approx(float(J.trace()), abs=1e-5)


@pytest.mark.parametrize("projection", ["gaussian", "rademacher"])
def test_sliced_objectives_are_unbiased_for_the_exact_one(projection):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 2))
    x = torch.randn(16, 2)
    tr, nm = score_matching_terms(net, x, "exact")
    exact_trace_mean, exact_norm_mean = float(tr.detach().mean()), float(nm.detach().mean())
    M_ = 4000
    g = torch.Generator().manual_seed(1)
    for obj in ("sliced", "sliced_vr"):
        t, n = score_matching_terms(net, x, obj, n_projections=M_, projection=projection, generator=g)
        t, n = t.detach(), n.detach()
        assert t.shape == (M_ * 16,)
        # mean over many projections -> exact value, within 5 standard errors
        se_t = float(t.std()) / math.sqrt(len(t))
        assert abs(float(t.mean()) - exact_trace_mean) < 5 * se_t + 1e-6
        if obj == "sliced":
            se_n = float(n.std()) / math.sqrt(len(n))
            assert abs(float(n.mean()) - exact_norm_mean) < 5 * se_n + 1e-6
            assert float(n.std()) > 0                     # (v^T s)^2 / 2 really is random
        else:                                             # VR: the norm is exact per point
            assert torch.allclose(n.reshape(M_, 16), nm.detach().expand(M_, 16), rtol=1e-5)
    # one projection is noisy: a single draw differs from the exact value
    t1, _ = score_matching_terms(net, x, "sliced", n_projections=1, generator=g)
    assert float((t1.detach() - tr.detach()).abs().max()) > 1e-3


def test_bad_options_raise_config_errors():
    with pytest.raises(ConfigError, match="objective"):
        build(ScoreMatchingConfig, dict(objective="hessian"))
    with pytest.raises(ConfigError, match="sigma"):
        build(DSMConfig, dict(sigma=0.0))
    with pytest.raises(ConfigError, match="n_projections"):
        build(ScoreMatchingConfig, dict(n_projections=0))
    with pytest.raises(ConfigError, match="sliced"):    # exact on images: D backward passes
        ScoreMatching(build(ScoreMatchingConfig, dict(objective="exact")), (1, 16, 16), "cpu")
    # sliced works on image-shaped data
    fam = ScoreMatching(build(ScoreMatchingConfig, dict(objective="sliced", hidden=16, depth=1)), (1, 4, 4), "cpu")
    loss, terms = fam.loss(torch.randn(8, 1, 4, 4))
    assert loss.shape == () and set(terms) == {"trace", "norm"}
    assert fam.sample(3, options=dict(n_steps=2)).shape == (3, 1, 4, 4)


def small_run(family, options, dataset="moons", seed=0, batch=256):
    train = build(TrainConfig, dict(batch=batch, n_data=4000, warmup=20, threads=1, seed=seed))
    options = dict(dict(hidden=64, depth=3), **options)
    return Run(RunConfig(dataset=dataset, family=family, options=options, train=train))


SAMPLE = dict(n_steps=300)


# an energy net learns its score (a gradient) more slowly: width 128 for SM, whose 64-wide energy
# still has wrong well depths after 1200 steps (loss -50 against about -64 for the 128-wide one);
# batch 128 there keeps the test's cost down
@pytest.mark.parametrize("family, options, batch", [
    ("dsm", {}, 256),
    ("dsm", dict(model="energy"), 256),
    ("score_matching", dict(objective="exact"), 256),
    ("score_matching", dict(objective="sliced"), 256),
    ("score_matching", dict(objective="sliced_vr", model="energy", hidden=128), 128),
])
def test_brief_training_on_moons_improves_loss_and_samples(family, options, batch):
    run = small_run(family, options, batch=batch)
    before = run.evaluate(run.sample(1000, options=SAMPLE))["energy_distance_x_iid"]
    run.train(800)
    h = run.history["loss"]
    assert sum(h[-50:]) / 50 < sum(h[:20]) / 20 - 0.1
    if family == "score_matching":
        assert set(run.history) == {"loss", "trace", "norm"}
        assert sum(run.history["trace"][-50:]) < 0       # the trace term rewards contracting onto data
    after = run.evaluate(run.sample(1000, options=SAMPLE))["energy_distance_x_iid"]
    # seed 0 gives 3.3, 5.3, 2.6, 8.8, 3.6 x iid from ~92 untrained (the defaults, 128 wide and
    # 4000 steps, reach 0.3-2); plain Langevin with one noise level is not expected to reach 1
    assert after < min(0.2 * before, 20), (before, after)
    f = run.field(8)
    assert f["score"].shape == (8, 8, 2) and ("energy" in f) == (options.get("model") == "energy")
    assert ("energy" in run.family.capabilities) == (options.get("model") == "energy")


def test_dsm_learns_the_noised_mixture_score():
    run = small_run("dsm", dict(sigma=0.2), dataset="8gaussians")
    mix, sigma = run.family.context["mixture"], run.family.cfg.sigma   # normalized coordinates
    x = mix.vp_marginal(1.0, sigma).sample(2000, seed=5)                 # x~ = x + sigma z
    truth = mix.score(x, sigma)

    def fisher():
        with torch.no_grad():
            return M.fisher_divergence(run.family.score(x), truth)

    before = fisher()
    run.train(600)
    after = fisher()
    ref = 0.5 * float(truth.pow(2).sum(1).mean())                      # the Fisher divergence of s = 0
    assert after < 0.2 * before and after < 0.2 * ref, (before, after, ref)
    # the Run overlays the same analytic score on its field, in data units
    f = run.field(6)
    pts = torch.tensor([[x_, y_] for y_ in f["ys"] for x_ in f["xs"]], dtype=torch.float32)
    want = run.family.context["mixture_data"].score(pts, sigma * run.scale).numpy().reshape(6, 6, 2)
    assert torch.allclose(torch.from_numpy(f["true_score"]).float(), torch.from_numpy(want), rtol=1e-4, atol=1e-4)
    assert run.family.level is None and run.family.level_alpha_sigma(None) == (1.0, sigma)
