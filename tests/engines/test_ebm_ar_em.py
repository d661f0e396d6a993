"""EBM (contrastive divergence), autoregressive models on points, and the EM-fitted Gaussian mixture."""
import math

import numpy as np
import pytest
import torch

from engines.config import ConfigError, RunConfig, TrainConfig, build
from engines.families.ebm import metropolis_hastings
from engines.families.gmm_em import GMMEM, GMMEMConfig
from engines.run import Run


def make_run(family, options=None, dataset="moons", **train):
    t = dict(batch=128, n_data=2000, warmup=10, threads=1)
    t.update(train)
    return Run(RunConfig(dataset=dataset, family=family, options=options or {}, train=build(TrainConfig, t)))


def quality(run, n=1000, **kw):
    return run.evaluate(run.sample(n, **kw), n_ref=n)["energy_distance_x_iid"]


def grid_mass(log_density_fn, lim, n=300):
    """Midpoint-rule integral of exp(log p) over [-lim, lim]^2 (normalized units)."""
    h = 2 * lim / n
    c = torch.linspace(-lim + h / 2, lim - h / 2, n)
    g = torch.stack(torch.meshgrid(c, c, indexing="xy"), -1).reshape(-1, 2)
    return float(log_density_fn(g).exp().sum() * h * h)


# ----------------------------------------------------------------------------- EBM

def test_metropolis_hastings_samples_a_known_gaussian():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4000, 2, generator=g) * 6 - 3
    rates = []
    x = metropolis_hastings(lambda y: 0.5 * (y ** 2).sum(1) / 0.25, x, 0.5, 400, g,
                            callback=lambda d: rates.append(d["accept"]))
    assert len(rates) == 400 and 0.2 < rates[-1] < 0.9
    assert x.mean(0).abs().max() < 0.05
    assert torch.allclose(x.std(0), torch.full((2,), 0.5), atol=0.03)   # N(0, 0.5^2 I)


@pytest.mark.parametrize("negatives", ["langevin", "mh"])
def test_ebm_contrastive_divergence_learns_the_data(negatives):
    run = make_run("ebm", dict(negatives=negatives, hidden=32, mcmc_steps=10), ema=0.0)
    before = quality(run, 600)
    run.train(400)
    fam = run.family
    after = quality(run, 600)
    assert after < before / 3, (before, after)
    # the learned energy is lower on the data than on uniform noise around it
    data = run.train_data[:500]
    noise = (torch.rand(500, 2, generator=torch.Generator().manual_seed(1)) * 2 - 1) * 3
    assert fam.energy(data).mean() < fam.energy(noise).mean() - 1.0
    f = run.field(resolution=8)
    assert set(f) >= {"energy", "score", "log_density"} and f["score"].shape == (8, 8, 2)
    assert np.allclose(f["log_density"] - f["log_density"].max(), -(f["energy"] - f["energy"].min()), atol=1e-4)
    v = run.views({})
    assert v["chains"]["kind"] == "scatter" and v["chains"]["x"].shape[1] == 2
    assert fam.extra_state()["buffer"].shape == (fam.cfg.buffer_size, 2)
    if negatives == "mh":
        assert 0.05 < np.mean(run.history["accept"][-50:]) < 0.95


def test_ebm_replay_buffer_round_trips(tmp_path):
    run = make_run("ebm", dict(hidden=16, mcmc_steps=2, buffer_size=64))
    run.train(3)
    run.save(str(tmp_path))
    again = Run.load(str(tmp_path))
    assert torch.equal(again.family.buffer, run.family.buffer)
    a = run.sample(50, "mh", dict(n_steps=5), seed=2)
    b = again.sample(50, "mh", dict(n_steps=5), seed=2)
    assert torch.allclose(a, b, atol=1e-5)


def test_ebm_rejects_an_unstable_chain():
    with pytest.raises(ConfigError, match="step_size"):
        make_run("ebm", dict(step_size=10.0, noise=1.0))


# ----------------------------------------------------------------------------- autoregressive

@pytest.mark.parametrize("conditional, lim", [("histogram", 4.0), ("logistic_mixture", 8.0)])
def test_autoregressive_exact_density_and_training(conditional, lim):
    run = make_run("autoregressive", dict(conditional=conditional, hidden=64))
    fam = run.family
    x = run.train_data[:1000]
    nll0 = -float(fam.log_likelihood(x).mean())
    q0 = quality(run, 600)
    run.train(400)
    nll1 = -float(fam.log_likelihood(x).mean())
    assert nll1 < nll0 - 0.5, (nll0, nll1)
    assert quality(run, 600) < q0 / 5
    # the chain rule with normalized 1D conditionals integrates to 1
    mass = grid_mass(fam.log_likelihood, lim)
    assert abs(mass - 1) < 0.02, mass
    # the field is the same exact density, shifted into data units by -2 log(scale)
    f = run.field(resolution=6)
    pts = torch.from_numpy(np.stack(np.meshgrid(f["xs"], f["ys"], indexing="xy"), -1).reshape(-1, 2)).float()
    ll = fam.log_likelihood(run.to_norm(pts)).numpy().reshape(6, 6) - 2 * math.log(run.scale)
    assert np.allclose(f["log_density"], ll, atol=1e-4)
    curves = run.views({})["conditionals"]["curves"]
    xs, p1 = curves["p(x1)"]
    assert len(curves) == 5 and (p1 >= 0).all()
    if conditional == "histogram":  # all of the histogram's mass is on [-R, R]
        assert abs(np.trapezoid(p1, xs) - 1) < 0.03


def test_autoregressive_temperature_sharpens_samples():
    run = make_run("autoregressive", dict(hidden=32))
    run.train(200)
    steps = []
    cold = run.sample(2000, options=dict(temperature=0.3), callback=lambda d: steps.append(d["i"]))
    warm = run.sample(2000, options=dict(temperature=2.0))
    assert steps == [0, 1]
    lp = lambda s: float(run.family.log_likelihood(run.to_norm(s)).mean())  # noqa: E731
    assert lp(cold) > lp(warm) + 0.5


# ----------------------------------------------------------------------------- EM

def _normed_moons(n=2000):
    from engines import data as D
    x = D.load("moons", n, seed=1)
    return (x - x.mean(0)) / x.std(0).mean()


def test_em_log_likelihood_never_decreases_full_batch():
    x = _normed_moons()
    torch.manual_seed(0)
    fam = GMMEM(build(GMMEMConfig, dict(components=6, cov_floor=0.0)), (2,), "cpu")
    fam.initialize(x, torch.Generator().manual_seed(0))
    lls = [fam.em_step(x) for _ in range(40)]
    assert min(b - a for a, b in zip(lls, lls[1:])) > -1e-9
    assert lls[-1] > lls[0] + 0.5


def test_em_recovers_a_separated_mixture():
    g = torch.Generator().manual_seed(0)
    means = torch.tensor([[-4.0, 0.0], [3.0, 3.0], [2.0, -4.0]])
    z = torch.multinomial(torch.tensor([0.5, 0.3, 0.2]), 3000, replacement=True, generator=g)
    x = means[z] + 0.5 * torch.randn(3000, 2, generator=g)
    torch.manual_seed(0)
    fam = GMMEM(build(GMMEMConfig, dict(components=3)), (2,), "cpu")
    fam.initialize(x, torch.Generator().manual_seed(0))
    for _ in range(30):
        fam.em_step(x)
    m = fam.net.means.float()
    order = torch.cdist(means, m).argmin(1)
    assert torch.allclose(m[order], means, atol=0.1)
    assert torch.allclose(fam.net.log_weights.exp()[order].float(), torch.tensor([0.5, 0.3, 0.2]), atol=0.03)
    assert torch.allclose(fam.net.covs[order].float(), 0.25 * torch.eye(2).expand(3, 2, 2), atol=0.05)


def test_gmm_em_run_trains_without_an_optimizer():
    run = make_run("gmm_em", dict(components=8))
    assert run.optimizers == [] and run.family.ema_net is None
    q0 = quality(run, 800)
    run.train(150)
    losses = run.history["loss"]
    assert np.mean(losses[-10:]) < losses[0] - 0.5
    assert quality(run, 800) < min(q0 / 10, 5.0)
    assert abs(grid_mass(run.family.log_likelihood, 6.0) - 1) < 0.01
    comp = run.views({})["components"]
    assert comp["centers"].shape == (8, 2) and comp["covs"].shape == (8, 2, 2)
    assert abs(comp["weights"].sum() - 1) < 1e-5
    # the ellipses are in data coordinates: their weighted centre is the data mean
    assert np.allclose((comp["weights"][:, None] * comp["centers"]).sum(0), run.data.mean(0).numpy(), atol=0.1)
