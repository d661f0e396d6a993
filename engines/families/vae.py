"""Variational autoencoder (Kingma & Welling 2014, "Auto-Encoding Variational Bayes"; course notes
000, 003 and 004, "VAE"), with the beta weight of Higgins et al. 2017 and the importance-weighted
likelihood estimate of Burda et al. 2016.

Encoder q(z|x) = N(mu(x), diag sigma^2(x)), decoder p(x|z) = N(m(z), diag s^2(z)) (or a fixed s),
prior p(z) = N(0, I). Training minimizes the negative ELBO split into its two terms,
    recon = -E_q log p(x|z)          (one reparameterized sample z = mu + sigma eps, eps ~ N(0, I))
    kl    = KL(q(z|x) || p(z)) = 1/2 sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2)   (closed form)
    loss  = recon + beta kl.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ConfigError, opt
from ..nets import mlp
from .base import Family, grid_lines, latent_grid

LOG_2PI = math.log(2 * math.pi)


@dataclass
class VAEConfig:
    latent_dim: int = opt(2, "dimension of the latent z (2 lets the latent space be drawn)", lo=1, hi=1024)
    hidden: int = opt(128, "hidden width of the encoder and decoder MLPs", lo=4, hi=4096)
    depth: int = opt(3, "hidden layers of the encoder and decoder MLPs", lo=1, hi=16)
    beta: float = opt(1.0, "weight of the KL term (beta-VAE; 1 is the true ELBO)", "L = recon + beta KL(q(z|x) || N(0, I))",
                      lo=0.0, hi=1000.0)
    decoder_variance: str = opt("learned", "decoder variance: learned by the decoder (per z; for images one per pixel) or fixed",
                                "p(x|z) = N(m(z), s(z)^2 I)", choices=("learned", "fixed"))
    decoder_sigma: float = opt(0.1, "decoder std s when the variance is fixed, its starting value when learned "
                               "(normalized units)", lo=1e-4, hi=100.0, log=True)
    min_sigma: float = opt(0.01, "floor on the learned decoder std (keeps log p(x|z) bounded)",
                           "log s^2 = log s_min^2 + softplus(raw - log s_min^2)", lo=1e-5, hi=10.0, log=True)
    kl_warmup: int = opt(1000, "steps over which the KL weight ramps from 0 to beta (0: off); avoids the decoder "
                         "explaining a coordinate as noise early on (posterior collapse)",
                         "beta_k = beta min(1, k / kl_warmup) (Bowman et al. 2016; Sonderby et al. 2016)", lo=0, hi=10 ** 7)
    iw_k: int = opt(64, "importance samples K for log p(x) (IWAE bound, Burda et al. 2016)",
                    "log p(x) ~ log 1/K sum_k p(x|z_k) p(z_k) / q(z_k|x)", lo=1, hi=100000)

    def validate(self):
        if self.decoder_variance == "learned" and self.decoder_sigma < self.min_sigma:
            raise ConfigError(f"decoder_sigma ({self.decoder_sigma}), where the learned decoder std starts, is below "
                              f"its floor min_sigma ({self.min_sigma}); raise decoder_sigma or lower min_sigma")


@dataclass
class AncestralOptions:
    decoder_noise: bool = opt(False, "add the decoder noise: x = m(z) + s(z) eps (off: the decoder mean m(z))",
                              "z ~ N(0, T^2 I), x ~ p(x|z)")
    temperature: float = opt(1.0, "prior temperature T", "z ~ N(0, T^2 I)", lo=0.0, hi=10.0)


def gaussian_logp(x, mean, logvar):
    """log N(x; mean, diag exp(logvar)) summed over all but the batch dims: (B, ...) -> (B,)."""
    lp = -0.5 * ((x - mean) ** 2 * torch.exp(-logvar) + logvar + LOG_2PI)
    return lp.reshape(lp.shape[0], -1).sum(1)


class VAENet(nn.Module):
    """Encoder (B, *shape) -> (mu, logvar) (B, L); decoder (B, L) -> (mean, logvar) (B, *shape).
    Points use MLPs; images (C, H, W) the conv nets of engines/image_nets.py."""

    def __init__(self, data_shape: tuple, cfg: VAEConfig):
        super().__init__()
        self.data_shape, self.L = tuple(data_shape), cfg.latent_dim
        self.learned = cfg.decoder_variance == "learned"
        self.min_logvar = 2 * math.log(cfg.min_sigma)
        self.fixed_logvar = 2 * math.log(cfg.decoder_sigma)
        self.per_z_var = self.learned and len(data_shape) == 1
        if len(data_shape) == 1:
            D = data_shape[0]
            self.enc = mlp(D, 2 * self.L, cfg.hidden, cfg.depth, "silu")
            self.dec = mlp(self.L, 2 * D if self.per_z_var else D, cfg.hidden, cfg.depth, "silu")
        else:
            from ..image_nets import ConvDecoder, ConvEncoder
            self.enc = ConvEncoder(self.data_shape, 2 * self.L)
            self.dec = ConvDecoder(self.L, self.data_shape)
        if self.learned and not self.per_z_var:
            self.pixel_logvar = nn.Parameter(torch.zeros(self.data_shape))

    def encode(self, x):  # (B, *shape) -> mu (B, L), logvar (B, L)
        mu, lv = self.enc(x).chunk(2, dim=1)
        return mu, lv.clamp(-14.0, 8.0)

    def decode(self, z):  # (B, L) -> mean (B, *shape), logvar broadcastable to it
        out = self.dec(z)
        if self.per_z_var:
            mean, raw = out.chunk(2, dim=1)
        elif self.learned:
            mean, raw = out, self.pixel_logvar[None]
        else:
            return out, torch.full_like(out[:1], self.fixed_logvar)
        raw = raw + self.fixed_logvar                                  # the learned variance starts near s^2
        return mean, self.min_logvar + F.softplus(raw - self.min_logvar)

    def log_weights(self, x, K: int, generator=None):
        """log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x), z_k ~ q(z|x): (K, B)."""
        B = x.shape[0]
        mu, lv = self.encode(x)                                        # (B, L)
        eps = torch.randn((K, B, self.L), generator=generator, device=x.device)
        z = mu + (0.5 * lv).exp() * eps                                # (K, B, L)
        mean, dlv = self.decode(z.reshape(K * B, self.L))
        xk = x.unsqueeze(0).expand((K,) + x.shape).reshape((K * B,) + x.shape[1:])
        log_px = gaussian_logp(xk, mean, dlv.expand_as(mean)).reshape(K, B)
        log_pz = -0.5 * (z.pow(2) + LOG_2PI).sum(-1)                   # (K, B)
        log_qz = -0.5 * (eps.pow(2) + lv + LOG_2PI).sum(-1)            # (K, B)
        return log_px + log_pz - log_qz


class VAE(Family):
    name = "vae"
    title = "Variational autoencoder"
    summary = "Encode to a Gaussian latent, decode back; maximize the ELBO = reconstruction - KL."
    capabilities = frozenset({"latent", "likelihood", "density"})
    Config = VAEConfig
    samplers = {"ancestral": AncestralOptions}
    default_sampler = "ancestral"

    def __init__(self, cfg, data_shape, device, context=None):
        super().__init__(cfg, data_shape, device, context)
        self.net = VAENet(self.data_shape, cfg).to(self.device)
        self._seen = None                                              # recent training points, for the latent view
        self._steps = 0                                                # loss evaluations so far (KL warm-up clock)

    def loss(self, batch, generator=None):
        """-ELBO with beta: recon + beta kl, one reparameterized sample (AEVB, Kingma & Welling eq. 10)."""
        with torch.no_grad():
            keep = 256 if len(self.data_shape) > 1 else 1024
            self._seen = batch[:keep].detach() if self._seen is None else torch.cat([batch[:64].detach(), self._seen])[:keep]
        net = self.net
        mu, lv = net.encode(batch)                                     # (B, L)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device)
        z = mu + (0.5 * lv).exp() * eps                                # reparameterization trick
        mean, dlv = net.decode(z)
        recon = -gaussian_logp(batch, mean, dlv.expand_as(mean))       # (B,)
        kl = 0.5 * (mu.pow(2) + lv.exp() - 1.0 - lv).sum(1)            # (B,)
        w = self.cfg.beta * (min(1.0, self._steps / self.cfg.kl_warmup) if self.cfg.kl_warmup else 1.0)
        self._steps += 1
        loss = (recon + w * kl).mean()
        return loss, dict(recon=recon.mean().detach(), kl=kl.mean().detach())

    @torch.no_grad()
    def sample(self, n, sampler=None, options=None, generator=None, callback=None):
        """Ancestral sampling: z ~ N(0, T^2 I), x = m(z) (+ s(z) eps with decoder_noise)."""
        _, o = self.sampler_options(sampler, options)
        z = torch.randn((n, self.cfg.latent_dim), generator=generator, device=self.device) * o.temperature
        mean, lv = self.model.decode(z)
        x = mean
        if o.decoder_noise:
            x = mean + (0.5 * lv).exp() * torch.randn(mean.shape, generator=generator, device=self.device)
        if callback is not None:
            callback(dict(i=0, x=x, t=None, sigma=0.0, denoised=mean))
        return x

    @torch.no_grad()
    def log_likelihood(self, x, k: int | None = None, generator=None, chunk: int = 1 << 16):
        """IWAE estimate log 1/K sum_k w_k (Burda et al. 2016, eq. 8): (B,), normalized coordinates.
        A lower bound on log p(x) in expectation, tightening as K grows (K = 1 is the ELBO)."""
        K = k or self.cfg.iw_k
        out = []
        for xb in torch.split(x, max(1, chunk // K)):
            lw = self.model.log_weights(xb, K, generator)              # (K, b)
            out.append(torch.logsumexp(lw, 0) - math.log(K))
        return torch.cat(out)

    @torch.no_grad()
    def metrics(self, x, k: int | None = None, seed: int = 0) -> dict:
        """Mean ELBO (beta = 1) and IWAE-K bound over the points x, from the same K samples each,
        so elbo <= iwae holds exactly (Jensen)."""
        K = k or self.cfg.iw_k
        g = torch.Generator(self.device).manual_seed(seed)
        lw = self.model.log_weights(x, K, g)                          # (K, B)
        return dict(elbo=float(lw.mean()), iwae=float((torch.logsumexp(lw, 0) - math.log(K)).mean()))

    def field(self, grid, level=None):
        """log_density (G,): the IWAE estimate of log p(x) on the grid with K = min(iw_k, 8) (a
        picture, redrawn often: K decoder passes per grid point), seeded so the map is smooth."""
        if len(self.data_shape) != 1 or grid.shape[1] != self.data_shape[0]:
            return {}
        g = torch.Generator(self.device).manual_seed(0)
        lp = self.log_likelihood(grid, k=min(self.cfg.iw_k, 8), generator=g)
        return dict(log_density=lp.cpu().numpy())

    def extra_state(self):
        return dict(kl_steps=torch.tensor(self._steps))

    def load_extra_state(self, sd):
        if "kl_steps" in sd:
            self._steps = int(sd["kl_steps"])

    @torch.no_grad()
    def views(self, request=None):
        """latent: encoder means mu(x) of recent training points, coloured by the point's first
        coordinate (first two latent dims). manifold: a grid of z in [-3, 3]^2 through the decoder
        mean (polylines for 2D points, an image grid for images)."""
        request = request or {}
        m, L, out = self.model, self.cfg.latent_dim, {}
        if self._seen is not None:
            x = self._seen[: int(request.get("n", 1024))]
            mu, _ = m.encode(x)
            z2 = mu[:, :2] if L >= 2 else torch.cat([mu, torch.zeros_like(mu)], 1)
            color = x[:, 0] if x.ndim == 2 else x.reshape(len(x), -1).mean(1)
            out["latent"] = dict(kind="scatter", title="latent means mu(x) of data points (colour: x coordinate)",
                                 x=z2.cpu().numpy(), color=color.cpu().numpy(), x_label="μ₁(x)",
                                 y_label="μ₂(x)" if L >= 2 else "")
        if len(self.data_shape) == 1 and self.data_shape[0] == 2:
            lines = grid_lines(-3.0, 3.0, 13, 64).to(self.device)     # (2l, M, 2) in z
            if L == 1:
                lines = lines[:1, :, :1]                               # one line along z_1
            elif L > 2:
                lines = torch.cat([lines, lines.new_zeros(lines.shape[:2] + (L - 2,))], -1)
            n_l, M = lines.shape[:2]
            mean, _ = m.decode(lines.reshape(n_l * M, L))
            out["manifold"] = dict(kind="polylines", title="decoder mean m(z) of a grid in z",
                                   lines=list(mean.reshape(n_l, M, 2).cpu().numpy()), space="data")
        elif len(self.data_shape) == 3:
            r = int(request.get("nrow", 8))
            z = latent_grid(r, L, device=self.device)
            mean, _ = m.decode(z)
            out["manifold"] = dict(kind="images", title="decoder mean m(z) of a grid in z",
                                   images=mean.clamp(-1, 1).cpu().numpy(), nrow=r)
        return out
