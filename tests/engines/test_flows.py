"""Normalizing flows (planar, RealNVP, MAF): exact inverses, exact log-determinants, normalized
densities, and maximum-likelihood training that lowers the held-out NLL."""
import math

import pytest
import torch

from engines.config import ConfigError, RunConfig, TrainConfig, build
from engines.families import get
from engines.families.flows import PlanarLayer
from engines.run import Run

FLOWS = ["planar_flow", "realnvp", "maf"]


def make(name, data_shape=(2,), **opts):
    cls = get(name)
    torch.manual_seed(0)
    return cls(build(cls.Config, opts), data_shape, "cpu")


def randomize(fam, scale=0.3):
    """Move every parameter off its (often identity) initial value so the tests see a real map."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in fam.net.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


def test_planar_u_hat_keeps_w_dot_u_above_minus_one():
    """Rezende & Mohamed 2015, appendix A: w^T u_hat = -1 + softplus(w^T u) > -1 for any u, w."""
    layer = PlanarLayer(2)
    g = torch.Generator().manual_seed(0)
    vals = []
    with torch.no_grad():
        for k in range(200):
            w = torch.randn(2, generator=g) * (0.1 + k / 20)
            layer.w.copy_(w)
            layer.u.copy_(-torch.rand(1, generator=g) * 20 * w / w.norm() ** 2)  # w^T u far below -1
            vals.append(float(layer.w @ layer.u_hat()))
    assert min(vals) > -1.0
    assert min(vals) < -0.99  # the constraint is active, not vacuous


@pytest.mark.parametrize("name", FLOWS)
def test_inverse_is_exact(name):
    fam = make(name)
    randomize(fam, 0.1)
    x = torch.randn(500, 2) * 1.5
    with torch.no_grad():
        z, _ = fam.net(x)
        assert 0.05 < (z - x).abs().max() and z.abs().max() < 20  # a real, moderate transformation
        assert torch.allclose(fam.net.inverse(z), x, atol=2e-5)
        z2 = torch.randn(500, 2)
        assert torch.allclose(fam.net(fam.net.inverse(z2))[0], z2, atol=2e-5)


@pytest.mark.parametrize("name", FLOWS)
def test_log_det_matches_autograd_jacobian(name):
    fam = make(name)
    randomize(fam)
    net = fam.net.double()
    x = torch.randn(6, 2, dtype=torch.float64)
    with torch.no_grad():
        _, logdet = net(x)
    for i in range(len(x)):
        J = torch.autograd.functional.jacobian(lambda v: net(v[None])[0][0], x[i])
        assert float(logdet[i]) == pytest.approx(float(torch.linalg.slogdet(J)[1]), abs=1e-9)


def grid_mass(fam, lim=6.0, n=241):
    xs = torch.linspace(-lim, lim, n)
    g = torch.cartesian_prod(xs, xs)
    return float(fam.log_likelihood(g).exp().sum() * (xs[1] - xs[0]) ** 2)


@pytest.mark.parametrize("name,opts", [("planar_flow", dict(n_layers=16)), ("realnvp", {}), ("maf", {})])
def test_training_lowers_nll_and_density_stays_normalized(name, opts):
    cfg = RunConfig(dataset="moons", family=name, options=opts,
                    train=build(TrainConfig, dict(n_data=4000, threads=1, ema=0.0)))
    run = Run(cfg)
    held_out = run.to_norm(run.reference)      # the run's held-out points (a random subset of its pool)
    nll0 = -float(run.family.log_likelihood(held_out).mean())
    ed0 = run.evaluate(run.sample(1000))["energy_distance"]
    run.train(300)
    assert not run.diverged
    nll1 = -float(run.family.log_likelihood(held_out).mean())
    ed1 = run.evaluate(run.sample(1000))["energy_distance"]
    assert nll1 < nll0 - 0.5, (nll0, nll1)
    assert nll1 < 2.3  # the best Gaussian fit of the normalized moons scores about 2.76
    assert ed1 < 0.35 * ed0, (ed0, ed1)
    assert grid_mass(run.family) == pytest.approx(1.0, abs=0.05)
    # the loss the Run records is this NLL on the training batches
    assert run.history["loss"][-1] < run.history["loss"][0] - 0.5


@pytest.mark.parametrize("name", FLOWS)
def test_field_views_and_sampler_callback(name):
    fam = make(name)
    randomize(fam, 0.1)
    grid = torch.randn(50, 2)
    f = fam.field(grid)
    assert f["log_density"].shape == (50,) and f["score"].shape == (50, 2)
    assert torch.allclose(torch.from_numpy(f["log_density"]), fam.log_likelihood(grid), atol=1e-5)
    # score = grad log p, checked by a central difference
    h = 1e-3
    e0 = torch.tensor([[h, 0.0]])
    fd = (fam.log_likelihood(grid + e0) - fam.log_likelihood(grid - e0)) / (2 * h)
    assert torch.allclose(torch.from_numpy(f["score"][:, 0]), fd, atol=2e-2)

    steps = []
    x = fam.sample(64, generator=torch.Generator().manual_seed(0), callback=lambda d: steps.append(d["x"].clone()))
    K = len(fam.net.layers)
    assert len(steps) == K + 1 and torch.equal(steps[-1], x)
    cold = fam.sample(2000, options=dict(temperature=0.5), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        z, _ = fam.net(cold)
    assert float(z.std()) == pytest.approx(0.5, rel=0.1)

    fam.loss(torch.randn(32, 2))  # fills the buffer the latent view draws
    v = fam.views({"layer": 1})
    assert v["layers"]["kind"] == "polylines" and v["layers"]["layer"] == 1 and v["layers"]["n_layers"] == K
    assert all(line.shape == (64, 2) for line in v["layers"]["lines"])
    full = fam.views({})["layers"]
    assert full["layer"] == K
    # stage 0 of the layer view is the base grid itself, [-3, 3]^2 (mapped to data coordinates by the Run)
    lines0 = fam.views({"layer": 0})["layers"]["lines"]
    assert abs(lines0[0][0, 0] - (-3.0)) < 1e-6
    assert v["latent"]["x"].shape == (32, 2)


def test_flows_on_flattened_images():
    fam = make("realnvp", (1, 4, 4), n_layers=4, hidden=16)
    x = torch.rand(16, 1, 4, 4) * 2 - 1
    loss, terms = fam.loss(x)
    assert torch.isfinite(loss) and set(terms) == {"log_pz", "log_det", "bits_per_dim"}   # images: dequantized
    s = fam.sample(5)
    assert s.shape == (5, 1, 4, 4)
    assert fam.log_likelihood(x).shape == (16,)
    assert fam.views({}) == {}


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="n_layers"):
        build(get("realnvp").Config, dict(n_layers=1))
    with pytest.raises(ConfigError, match="n_layers"):
        build(get("planar_flow").Config, dict(n_layers=0))
    with pytest.raises(ConfigError, match="permutation"):
        build(get("maf").Config, dict(permutation="sideways"))
    with pytest.raises(ConfigError, match="temperature"):
        make("maf").sample(4, options=dict(temperature=-1))


def test_nll_is_exact_for_a_gaussian():
    """An untrained RealNVP/MAF is the identity (zero-initialized last layers): log p = log N(x; 0, I)."""
    for name in ("realnvp", "maf"):
        fam = make(name)
        x = torch.randn(100, 2)
        ref = -0.5 * (x.pow(2).sum(1) + 2 * math.log(2 * math.pi))
        assert torch.allclose(fam.log_likelihood(x), ref, atol=1e-5)
