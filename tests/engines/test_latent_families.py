"""VAE, GAN and WGAN: brief training improves samples; ELBO/IWAE bounds; the GAN training step's
contract (d_steps, both generator losses, gradient penalty, weight clipping); views and options."""
import math

import numpy as np
import pytest
import torch

from engines.config import ConfigError, RunConfig, TrainConfig, build
from engines.families import get
from engines.run import Run


def make(name, data_shape=(2,), **opts):
    cls = get(name)
    torch.manual_seed(0)
    return cls(build(cls.Config, opts), data_shape, "cpu")


def run_for(name, steps=0, dataset="moons", **opts):
    cfg = RunConfig(dataset=dataset, family=name, options=opts,
                    train=build(TrainConfig, dict(n_data=4000, threads=1)))
    run = Run(cfg)
    run.train(steps)
    return run


def ed(run):
    return run.evaluate(run.sample(1000))["energy_distance"]


# ------------------------------------------------------------------------------------- VAE

@pytest.fixture(scope="module")
def vae_run():
    run = run_for("vae")
    ed0 = ed(run)
    run.train(700)
    return run, ed0


def test_vae_training_lowers_loss_and_improves_samples(vae_run):
    run, ed0 = vae_run
    assert not run.diverged
    h = run.history
    assert {"loss", "recon", "kl"} <= set(h)
    assert sum(h["loss"][-50:]) / 50 < sum(h["loss"][:50]) / 50 - 1.0
    assert min(h["kl"][-50:]) > 0.5  # the latent is used (no posterior collapse)
    assert ed(run) < 0.15 * ed0
    noisy = run.sample(1000, options=dict(decoder_noise=True))
    assert run.evaluate(noisy)["energy_distance"] < 0.15 * ed0


def test_vae_elbo_below_iwae_and_iwae_grows_with_k(vae_run):
    run, _ = vae_run
    fam, x = run.family, run.train_data[:500]
    m = fam.metrics(x, k=16)
    assert m["elbo"] <= m["iwae"] + 1e-6
    assert m["iwae"] - m["elbo"] > 1e-3
    # IWAE_K is non-decreasing in K in expectation (Burda et al. 2016, Theorem 1): average over seeds
    means = []
    for K in (1, 8, 64):
        vals = [float(fam.log_likelihood(x, k=K, generator=torch.Generator().manual_seed(s)).mean()) for s in range(3)]
        means.append(sum(vals) / 3)
    assert means[0] < means[1] < means[2], means
    # and K = 1 is the ELBO itself (beta = 1)
    assert means[0] == pytest.approx(m["elbo"], abs=0.1)


def test_vae_kl_term_is_the_closed_form():
    """The kl term equals a Monte-Carlo estimate of E_q[log q(z|x) - log p(z)]."""
    fam = make("vae", beta=1.0)
    x = torch.randn(8, 2)
    with torch.no_grad():
        mu, lv = fam.net.encode(x)
        z = mu + (0.5 * lv).exp() * torch.randn((20000,) + mu.shape)
        log_q = -0.5 * (((z - mu) ** 2) / lv.exp() + lv + math.log(2 * math.pi)).sum(-1)
        log_p = -0.5 * (z ** 2 + math.log(2 * math.pi)).sum(-1)
        mc = (log_q - log_p).mean(0).mean()
        _, terms = fam.loss(x)
    assert float(terms["kl"]) == pytest.approx(float(mc), abs=0.02)


def test_vae_beta_and_warmup_weight_the_kl():
    fam = make("vae", beta=0.5, kl_warmup=0)
    x = torch.randn(64, 2)
    loss, t = fam.loss(x, torch.Generator().manual_seed(0))
    assert float(loss.detach()) == pytest.approx(float(t["recon"] + 0.5 * t["kl"]), rel=1e-5)
    warm = make("vae", kl_warmup=10)
    loss0, t0 = warm.loss(x, torch.Generator().manual_seed(0))   # step 0: KL weight 0
    assert float(loss0.detach()) == pytest.approx(float(t0["recon"]), rel=1e-5)


def test_vae_views_and_field(vae_run):
    run, _ = vae_run
    v = run.views({"n": 300})
    assert v["latent"]["kind"] == "scatter" and v["latent"]["x"].shape == (300, 2)
    assert v["latent"]["color"].shape == (300,)
    man = v["manifold"]
    assert man["kind"] == "polylines" and man["space"] == "data" and len(man["lines"]) == 26
    # the decoded grid lies on the data: its points sit within the data's bounding box, mostly
    pts = torch.from_numpy(np.concatenate(man["lines"]))
    x0, x1, y0, y1 = run.bounds(0.5)
    inside = ((pts[:, 0] > x0) & (pts[:, 0] < x1) & (pts[:, 1] > y0) & (pts[:, 1] < y1)).float().mean()
    assert inside > 0.9
    f = run.field(16)
    assert f["log_density"].shape == (16, 16) and f["log_density"].max() > f["log_density"].min() + 2


def test_vae_options():
    fam = make("vae", latent_dim=3, decoder_variance="fixed", decoder_sigma=0.2)
    x = torch.randn(32, 2)
    _, lv = fam.net.decode(fam.net.encode(x)[0])
    assert torch.allclose(lv.exp().sqrt(), torch.tensor(0.2))
    fam.loss(x)
    assert fam.views({})["manifold"]["lines"][0].shape == (64, 2)
    assert fam.sample(7).shape == (7, 2)
    with pytest.raises(ConfigError, match="beta"):
        build(get("vae").Config, dict(beta=-1))
    with pytest.raises(ConfigError, match="decoder_variance"):
        build(get("vae").Config, dict(decoder_variance="sometimes"))
    with pytest.raises(ConfigError, match="min_sigma"):
        build(get("vae").Config, dict(decoder_sigma=0.001, min_sigma=0.01))
    with pytest.raises(ConfigError, match="latent_dim"):
        build(get("vae").Config, dict(latent_dim=0))


# ------------------------------------------------------------------------------------- GAN

def test_gan_training_improves_samples():
    run = run_for("gan")
    ed0 = ed(run)
    js0 = run.family.metrics(run.train_data[:2000])["js"]
    run.train(800)
    assert not run.diverged
    assert {"loss", "d_loss", "d_real", "d_fake"} <= set(run.history)
    assert ed(run) < 0.1 * ed0
    # the discriminator is near chance once the generator has caught up
    assert 0.3 < sum(run.history["d_real"][-50:]) / 50 < 0.8
    f = run.field(12)
    assert f["discriminator"].shape == (12, 12)
    assert 0 <= f["discriminator"].min() and f["discriminator"].max() <= 1
    m = run.family.metrics(run.train_data[:2000])
    assert 0 <= m["js"] < js0 - 0.1, (js0, m["js"])


@pytest.mark.parametrize("loss", ["minimax", "non_saturating"])
def test_gan_d_steps_and_both_losses(loss):
    run = run_for("gan", loss=loss, d_steps=3)
    opt_g, opt_d = run.optimizers
    assert opt_d.param_groups[0]["betas"] == (0.5, 0.9)
    run.train(4)
    steps = lambda opt: int(next(iter(opt.state.values()))["step"])  # noqa: E731
    assert steps(opt_d) == 12 and steps(opt_g) == 4
    last = {k: v[-1] for k, v in run.history.items()}
    assert all(math.isfinite(v) for v in last.values())
    if loss == "minimax":   # log(1 - D(G(z))) <= 0
        assert last["loss"] < 0
    else:                   # -log D(G(z)) >= 0
        assert last["loss"] > 0


def test_gan_fake_grads_point_where_d_pushes():
    fam = make("gan")
    v = fam.views({"n": 100})
    arrows = v["fake_grads"]
    assert arrows["kind"] == "arrows" and arrows["x"].shape == (100, 2) and arrows["v"].shape == (100, 2)
    # moving a fake sample along v lowers its generator loss (raises D there)
    x = torch.from_numpy(arrows["x"])
    step = 1e-3 * torch.from_numpy(arrows["v"])
    with torch.no_grad():
        before = fam.g_loss_per_sample(fam.net.critic(x))
        after = fam.g_loss_per_sample(fam.net.critic(x + step))
    assert (after <= before + 1e-7).float().mean() > 0.95
    grid = v["generator_grid"]
    assert grid["kind"] == "polylines" and len(grid["lines"]) == 26 and grid["space"] == "data"


def test_wgan_gp_reports_penalty_and_trains():
    run = run_for("wgan_gp", d_steps=2)
    ed0 = ed(run)
    assert run.optimizers[1].param_groups[0]["betas"] == (0.0, 0.9)
    run.train(300)
    assert not run.diverged
    h = run.history
    assert {"loss", "d_loss", "gp", "w_dist"} <= set(h)
    assert all(math.isfinite(g) and g >= 0 for g in h["gp"])
    assert ed(run) < 0.5 * ed0
    assert run.field(8)["discriminator"].shape == (8, 8)


def test_wgan_gradient_penalty_is_the_formula():
    fam = make("wgan_gp", gp_lambda=3.0)
    real, fake = torch.randn(16, 2), torch.randn(16, 2) + 1
    g = torch.Generator().manual_seed(0)
    loss, t = fam.d_loss(real, fake, g)
    e = torch.rand((16, 1), generator=torch.Generator().manual_seed(0))
    xh = (e * real + (1 - e) * fake).requires_grad_(True)
    (gr,) = torch.autograd.grad(fam.net.critic(xh).sum(), xh)
    gp = ((gr.norm(dim=1) - 1) ** 2).mean()
    assert float(t["gp"]) == pytest.approx(float(gp), rel=1e-5)
    assert float(loss.detach()) == pytest.approx(float(-t["w_dist"] + 3.0 * gp), rel=1e-5)


def test_weight_clipping_keeps_critic_weights_in_range():
    run = run_for("wgan_gp", lipschitz="weight_clipping", clip=0.02, d_steps=2)
    run.train(20)
    ws = torch.cat([p.detach().flatten() for p in run.family.net.D.parameters()])
    assert ws.abs().max() <= 0.02 + 1e-7
    assert ws.abs().max() > 0.019          # the bound is reached, so clipping did the work
    assert "gp" not in run.history


def test_gan_options_and_sampler():
    fam = make("gan", latent_dim=4)
    assert fam.sample(5).shape == (5, 2)
    cold = fam.sample(3, options=dict(temperature=0.0))
    assert torch.allclose(cold, cold[:1].expand(3, 2))   # T = 0: every z is 0
    assert fam.views({})["generator_grid"]["lines"][0].shape == (64, 2)
    with pytest.raises(ConfigError, match="d_steps"):
        build(get("gan").Config, dict(d_steps=0))
    with pytest.raises(ConfigError, match="loss"):
        build(get("gan").Config, dict(loss="hinge"))
    with pytest.raises(ConfigError, match="lipschitz"):
        build(get("wgan_gp").Config, dict(lipschitz="spectral"))
    with pytest.raises(ConfigError, match="clip"):
        build(get("wgan_gp").Config, dict(clip=0))


def test_gan_mode_coverage_metric_on_a_mixture():
    run = run_for("gan", dataset="8gaussians")
    m = run.family.metrics(run.train_data[:2000])
    assert m["modes_total"] == 8 and 0 <= m["modes_covered"] <= 8 and "js" in m


# ------------------------------------------------------------------------------------- images

@pytest.mark.parametrize("name", ["vae", "gan", "wgan_gp"])
def test_image_families_run(name):
    pytest.importorskip("engines.image_nets")
    fam = make(name, (1, 8, 8), latent_dim=4)
    opts = fam.optimizers(lambda p, lr=1e-3, betas=(0.9, 0.999): torch.optim.Adam(p, lr=lr, betas=betas))
    x = torch.rand(16, 1, 8, 8) * 2 - 1
    terms = fam.train_step(x, opts, 1.0, torch.Generator().manual_seed(0))
    assert math.isfinite(float(terms["loss"]))
    assert fam.sample(3).shape == (3, 1, 8, 8)
    v = fam.views({"nrow": 4})
    grid = v["manifold" if name == "vae" else "generator_grid"]
    assert grid["kind"] == "images" and grid["images"].shape == (16, 1, 8, 8)
