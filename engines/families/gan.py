"""Generative adversarial networks: the GAN of Goodfellow et al. 2014 (minimax or non-saturating
generator loss) and the Wasserstein GAN with a Lipschitz critic, enforced by a gradient penalty
(WGAN-GP, Gulrajani et al. 2017) or by weight clipping (Arjovsky et al. 2017). Course notes 002,
"GAN", "Comments on GAN" (mode collapse, training instability, WGAN).

A generator G: z ~ N(0, I) (B, L) -> x (B, *shape) plays against a discriminator / critic
D: x -> (B,). Two optimizers: each `train_step` does `d_steps` updates of D (k in Algorithm 1 of
Goodfellow et al.; n_critic in WGAN) and then one update of G. The reported "loss" is the
generator's loss (what the Run watches for divergence); "d_loss" is D's.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .. import metrics as M
from ..config import opt
from .base import Family, grid_lines, latent_grid


def _mlp(d_in: int, d_out: int, hidden: int, depth: int, act) -> nn.Sequential:
    layers, d = [], d_in
    for _ in range(depth):
        layers += [nn.Linear(d, hidden), act()]
        d = hidden
    return nn.Sequential(*layers, nn.Linear(d, d_out))


class GANNet(nn.Module):
    """G: (B, L) -> (B, *shape); D: (B, *shape) -> (B,). MLPs for points (ReLU generator, leaky-ReLU
    discriminator as in DCGAN), the conv nets of engines/image_nets.py for images: a decoder with
    a tanh output (images live in [-1, 1]) and an encoder without normalization layers, spectrally
    normalized (Miyato et al. 2018) for the plain GAN; a WGAN's critic gets its Lipschitz bound
    from the penalty or the clipping instead."""

    def __init__(self, data_shape: tuple, latent_dim: int, hidden: int, depth: int, spectral_norm: bool = True):
        super().__init__()
        if len(data_shape) == 1:
            D = data_shape[0]
            self.G = _mlp(latent_dim, D, hidden, depth, nn.ReLU)
            self.D = _mlp(D, 1, hidden, depth, lambda: nn.LeakyReLU(0.2))
        else:
            from ..image_nets import ConvDecoder, ConvEncoder
            self.G = nn.Sequential(ConvDecoder(latent_dim, tuple(data_shape)), nn.Tanh())
            self.D = ConvEncoder(tuple(data_shape), 1, act="lrelu", norm=False, spectral_norm=spectral_norm)

    def critic(self, x):  # (B, *shape) -> (B,)
        return self.D(x).reshape(x.shape[0])


@dataclass
class GeneratorOptions:
    temperature: float = opt(1.0, "latent temperature T (T < 1: the truncation trick, less diverse, more typical)",
                             "x = G(T z), z ~ N(0, I)", lo=0.0, hi=10.0)


def _common_options():
    return dict(
        latent_dim=opt(2, "dimension L of the latent z (2 lets the generator's grid be drawn; try 32+ for images)",
                       "x = G(z), z ~ N(0, I_L)", lo=1, hi=1024),
        hidden=opt(128, "hidden width of the generator and discriminator MLPs", lo=4, hi=4096),
        depth=opt(3, "hidden layers of the generator and discriminator MLPs", lo=1, hi=16),
    )


@dataclass
class GANConfig:
    latent_dim: int = _common_options()["latent_dim"]
    hidden: int = _common_options()["hidden"]
    depth: int = _common_options()["depth"]
    loss: str = opt("non_saturating", "generator loss: minimax min E log(1 - D(G(z))) saturates when D wins; "
                    "non-saturating max E log D(G(z)) has the same fixed point and strong early gradients",
                    "D: max E log D(x) + E log(1 - D(G(z))) (Goodfellow et al. 2014, eq. 1)",
                    choices=("non_saturating", "minimax"))
    d_steps: int = opt(1, "discriminator updates per generator update (k in Algorithm 1)", lo=1, hi=100)
    d_lr_mult: float = opt(1.0, "discriminator learning rate = this times the run's learning rate", lo=1e-3, hi=1e3, log=True)


@dataclass
class WGANConfig:
    latent_dim: int = _common_options()["latent_dim"]
    hidden: int = _common_options()["hidden"]
    depth: int = _common_options()["depth"]
    lipschitz: str = opt("gradient_penalty", "how the critic is kept 1-Lipschitz",
                         "gradient_penalty: + lambda E (|grad f(x_hat)| - 1)^2 (Gulrajani et al. 2017); "
                         "weight_clipping: w <- clip(w, -c, c) (Arjovsky et al. 2017)",
                         choices=("gradient_penalty", "weight_clipping"))
    gp_lambda: float = opt(0.1, "gradient-penalty weight lambda (the paper uses 10 for images; its 2D toy code uses 0.1, "
                           "which also trains much faster here)", "x_hat = e x + (1 - e) G(z), e ~ U[0, 1]", lo=0.0, hi=1e4)
    clip: float = opt(0.01, "weight-clipping bound c", "w <- clip(w, -c, c) after every critic step", lo=1e-5, hi=100.0, log=True)
    d_steps: int = opt(5, "critic updates per generator update (n_critic)", lo=1, hi=100)
    d_lr_mult: float = opt(1.0, "critic learning rate = this times the run's learning rate", lo=1e-3, hi=1e3, log=True)


class GAN(Family):
    name = "gan"
    title = "GAN"
    summary = "A generator and a discriminator play a minimax game; the generator learns to fool it."
    capabilities = frozenset({"discriminator", "latent"})
    Config = GANConfig
    samplers = {"generator": GeneratorOptions}
    default_sampler = "generator"
    betas = (0.5, 0.9)                   # Adam betas: beta1 = 0.5 as in DCGAN (Radford et al. 2016)

    def __init__(self, cfg, data_shape, device, context=None):
        super().__init__(cfg, data_shape, device, context)
        self.net = GANNet(self.data_shape, cfg.latent_dim, cfg.hidden, cfg.depth,
                          spectral_norm=self.name == "gan").to(self.device)

    # ---------------------------------------------------------------- losses, per sample
    def d_loss(self, real, fake, generator=None):
        """Discriminator loss and its terms; logits l: -log D(x) - log(1 - D(G(z))) = softplus(-l_r) + softplus(l_f)."""
        B = real.shape[0]
        lr, lf = self.net.critic(torch.cat([real, fake])).split([B, fake.shape[0]])  # one pass: (B,), (B',)
        loss = F.softplus(-lr).mean() + F.softplus(lf).mean()
        return loss, dict(d_real=torch.sigmoid(lr).mean().detach(), d_fake=torch.sigmoid(lf).mean().detach())

    def g_loss_per_sample(self, d_out):
        """minimax: log(1 - D(G(z))) = -softplus(l); non-saturating: -log D(G(z)) = softplus(-l). (B,)"""
        return -F.softplus(d_out) if self.cfg.loss == "minimax" else F.softplus(-d_out)

    def after_d_step(self):
        pass

    # ---------------------------------------------------------------- training
    def optimizers(self, make):
        """[opt_G, opt_D], Adam with `self.betas`."""
        opt_g = make(self.net.G.parameters(), betas=self.betas)
        g0 = opt_g.param_groups[0]["lr"]
        opt_d = make(self.net.D.parameters(), lr=g0 * self.cfg.d_lr_mult, betas=self.betas)
        return [opt_g, opt_d]

    def loss(self, batch, generator=None):
        """Both losses without updating (for evaluation): generator loss, with d_loss as a term."""
        z = torch.randn((batch.shape[0], self.cfg.latent_dim), generator=generator, device=batch.device)
        fake = self.net.G(z)
        d_loss, terms = self.d_loss(batch, fake.detach(), generator)
        return self.g_loss_per_sample(self.net.critic(fake)).mean(), dict(d_loss=d_loss.detach(), **terms)

    def train_step(self, batch, optimizers, clip, generator=None):
        """d_steps discriminator updates on the batch with fresh fakes, then one generator update."""
        opt_g, opt_d = optimizers
        G, D = self.net.G, self.net.D
        B, L = batch.shape[0], self.cfg.latent_dim
        nan = torch.tensor(float("nan"))
        for _ in range(self.cfg.d_steps):
            z = torch.randn((B, L), generator=generator, device=batch.device)
            with torch.no_grad():
                fake = G(z)                                            # (B, *shape)
            d_loss, terms = self.d_loss(batch, fake, generator)
            opt_d.zero_grad(set_to_none=True)
            if not torch.isfinite(d_loss):
                return dict(loss=nan, d_loss=d_loss.detach(), **terms)
            d_loss.backward()
            if clip > 0:
                nn.utils.clip_grad_norm_(D.parameters(), clip, foreach=True)
            opt_d.step()
            self.after_d_step()
        z = torch.randn((B, L), generator=generator, device=batch.device)
        D.requires_grad_(False)                                        # G's step needs no D gradients
        try:
            g_loss = self.g_loss_per_sample(self.net.critic(G(z))).mean()
            opt_g.zero_grad(set_to_none=True)
            if torch.isfinite(g_loss):
                g_loss.backward()
                if clip > 0:
                    nn.utils.clip_grad_norm_(G.parameters(), clip, foreach=True)
                opt_g.step()
        finally:
            D.requires_grad_(True)
        return dict(loss=g_loss.detach(), d_loss=d_loss.detach(), **terms)

    # ---------------------------------------------------------------- sampling & views
    @torch.no_grad()
    def sample(self, n, sampler=None, options=None, generator=None, callback=None):
        """x = G(T z), z ~ N(0, I): one pass of the (EMA) generator."""
        _, o = self.sampler_options(sampler, options)
        z = torch.randn((n, self.cfg.latent_dim), generator=generator, device=self.device) * o.temperature
        x = self.model.G(z)
        if callback is not None:
            callback(dict(i=0, x=x, t=None, sigma=0.0, denoised=None))
        return x

    def _d_view(self, x):  # what the field shows: D(x) as a probability (GAN), the critic f(x) (WGAN)
        return torch.sigmoid(self.net.critic(x))

    @torch.no_grad()
    def field(self, grid, level=None):
        """discriminator (G,): the current (not EMA) discriminator on the grid."""
        if len(self.data_shape) != 1 or grid.shape[1] != self.data_shape[0]:
            return {}
        return dict(discriminator=self._d_view(grid).cpu().numpy())

    def views(self, request=None):
        """generator_grid: a grid of z in [-3, 3]^2 (first two latent dims) through the generator.
        fake_grads: fake samples of the current generator with v = -d(generator loss)/dx, the
        direction the discriminator pushes each one (tiny where a minimax generator saturates)."""
        request = request or {}
        L, out = self.cfg.latent_dim, {}
        with torch.no_grad():
            if len(self.data_shape) == 1 and self.data_shape[0] == 2:
                lines = grid_lines(-3.0, 3.0, 13, 64).to(self.device)  # (2l, M, 2) in z
                if L == 1:
                    lines = lines[:1, :, :1]
                elif L > 2:
                    lines = torch.cat([lines, lines.new_zeros(lines.shape[:2] + (L - 2,))], -1)
                n_l, M = lines.shape[:2]
                x = self.model.G(lines.reshape(n_l * M, L)).reshape(n_l, M, 2)
                out["generator_grid"] = dict(kind="polylines", title="generator G(z) of a grid in z",
                                             lines=list(x.cpu().numpy()), space="data")
            elif len(self.data_shape) == 3:
                r = int(request.get("nrow", 8))
                z = latent_grid(r, L, device=self.device)
                out["generator_grid"] = dict(kind="images", title="generator G(z) of a grid in z",
                                             images=self.model.G(z).clamp(-1, 1).cpu().numpy(), nrow=r)
        if len(self.data_shape) == 1 and self.data_shape[0] == 2:
            n = int(request.get("n", 256))
            g = torch.Generator(self.device).manual_seed(0)
            z = torch.randn((n, L), generator=g, device=self.device)
            with torch.enable_grad():
                x = self.net.G(z).detach().requires_grad_(True)
                gl = self.g_loss_per_sample(self.net.critic(x)).sum()
                (grad,) = torch.autograd.grad(gl, x)
            out["fake_grads"] = dict(kind="arrows", title="fake samples and -grad of the generator loss",
                                     x=x.detach().cpu().numpy(), v=(-grad).cpu().numpy(), space="data")
        return out

    @torch.no_grad()
    def metrics(self, x, n: int = 2000, seed: int = 0, bins: int = 25) -> dict:
        """Mode-collapse numbers for model samples against data x (N, 2), normalized coordinates:
        histogram KL(data || model) and JS (engines.metrics.grid_kl_js) and, on an analytic mixture,
        how many of its modes the samples reach (engines.metrics.mode_coverage). With 2000 points
        and 25 x 25 bins, two iid draws of the moons score JS ~ 0.03; an untrained generator ~ 0.7."""
        g = torch.Generator(self.device).manual_seed(seed)
        s = self.sample(n, generator=g)
        out = M.grid_kl_js(x, s, bins=bins) if x.ndim == 2 and x.shape[1] == 2 else {}
        mix = self.context.get("mixture")
        if mix is not None:
            cov = M.mode_coverage(s, mix.means, radius=float(3 * mix.stds.max()))
            out.update(modes_covered=cov["covered"], modes_total=cov["total"])
        return out


class WGANGP(GAN):
    name = "wgan_gp"
    title = "Wasserstein GAN"
    summary = "A 1-Lipschitz critic estimates the Wasserstein distance; the generator lowers it."
    Config = WGANConfig
    betas = (0.0, 0.9)                   # Adam betas of WGAN-GP Algorithm 1: no momentum for the game

    def d_loss(self, real, fake, generator=None):
        """Critic loss E f(G(z)) - E f(x) (+ lambda E (|grad f(x_hat)|_2 - 1)^2, Gulrajani et al. Alg. 1)."""
        B = real.shape[0]
        gp_on = self.cfg.lipschitz == "gradient_penalty"
        parts = [real, fake]
        if gp_on:                                                      # x_hat on lines between real and fake pairs
            e = torch.rand((B,) + (1,) * (real.ndim - 1), generator=generator, device=real.device)
            xh = (e * real + (1 - e) * fake[:B]).detach().requires_grad_(True)
            parts.append(xh)
        out = self.net.critic(torch.cat(parts))                       # one pass over all of them: (2B or 3B,)
        fr, ff = out[:B], out[B:B + fake.shape[0]]
        w_dist = fr.mean() - ff.mean()                                 # the critic's Wasserstein-1 estimate
        loss = -w_dist
        terms = dict(d_real=fr.mean().detach(), d_fake=ff.mean().detach(), w_dist=w_dist.detach())
        if gp_on:
            (gr,) = torch.autograd.grad(out[B + fake.shape[0]:].sum(), xh, create_graph=True)
            gp = (gr.reshape(B, -1).norm(dim=1) - 1).pow(2).mean()
            loss = loss + self.cfg.gp_lambda * gp
            terms["gp"] = gp.detach()
        return loss, terms

    def g_loss_per_sample(self, d_out):
        """-f(G(z)) (B,)."""
        return -d_out

    @torch.no_grad()
    def after_d_step(self):
        if self.cfg.lipschitz == "weight_clipping":
            c = self.cfg.clip
            for p in self.net.D.parameters():
                p.clamp_(-c, c)

    def _d_view(self, x):
        return self.net.critic(x)
