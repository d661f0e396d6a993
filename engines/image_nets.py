"""Small conv nets for (C, H, W) images: a time/sigma-conditioned U-Net, an encoder, a decoder.

Sized for a laptop CPU and 8x8 .. 32x32 images. Resolution levels halve the image while both
sides stay even and the smaller half is at least 4 pixels: 8x8 -> [8, 4], 16x16 -> [16, 8, 4],
28x28 -> [28, 14, 7], 32x32 -> [32, 16, 8] (at most 3 levels); odd sizes get one level.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .embeddings import FourierEmbedding, SinusoidalEmbedding


def level_sizes(h: int, w: int, max_levels: int = 3) -> list[tuple[int, int]]:
    """[(h, w), (h/2, w/2), ...]: the resolutions a net visits, largest first."""
    sizes = [(h, w)]
    while len(sizes) < max_levels and h % 2 == 0 and w % 2 == 0 and min(h, w) // 2 >= 4:
        h, w = h // 2, w // 2
        sizes.append((h, w))
    return sizes


def _groups(ch: int, max_groups: int = 8) -> int:
    """The largest group count <= max_groups dividing ch (GroupNorm, Wu & He 2018)."""
    return math.gcd(ch, max_groups)


def _embedding(kind: str, dim: int) -> nn.Module:
    if kind == "sinusoidal":
        return SinusoidalEmbedding(dim)
    if kind == "fourier":
        return FourierEmbedding(dim)
    raise ValueError(f"unknown embedding {kind!r}; choose sinusoidal or fourier")


class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> conv3x3, + a per-channel shift from the embedding, GroupNorm -> SiLU
    -> conv3x3, plus the (1x1-projected) input (the DDPM U-Net's residual block, Ho et al. 2020,
    after Wide ResNet). (B, cin, H, W), emb (B, E) -> (B, cout, H, W)."""

    def __init__(self, cin: int, cout: int, emb_dim: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, cout)
        self.norm2 = nn.GroupNorm(_groups(cout), cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)   # each block starts as the identity: stable early training
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))                         # (B, cout, H, W)
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


class UNet(nn.Module):
    """f(x, c): a small conditional U-Net (Ronneberger et al. 2015; the DDPM variant of Ho et al.
    2020 without attention). x (B, C, H, W), c (B,) one float per sample (t/T, or a log sigma)
    -> (B, C, H, W). One residual block per level on the way down, two in the middle, one per
    level on the way up (concatenating the skip); channels base * (1, 2, 2)."""

    def __init__(self, data_shape: tuple, base: int = 32, embedding: str = "sinusoidal",
                 channel_mult: tuple = (1, 2, 2), max_levels: int = 3):
        super().__init__()
        C, H, W = data_shape
        self.data_shape = tuple(data_shape)
        self.sizes = level_sizes(H, W, max_levels)
        chans = [base * channel_mult[min(i, len(channel_mult) - 1)] for i in range(len(self.sizes))]
        E = 4 * base
        self.embed = nn.Sequential(_embedding(embedding, base), nn.Linear(base, E), nn.SiLU(), nn.Linear(E, E))
        self.conv_in = nn.Conv2d(C, chans[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        ch = chans[0]
        for i, c in enumerate(chans):
            self.down.append(ResBlock(ch, c, E))
            ch = c
            if i + 1 < len(chans):
                self.downsample.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
        self.mid = nn.ModuleList([ResBlock(ch, ch, E), ResBlock(ch, ch, E)])
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(len(chans))):
            self.up.append(ResBlock(ch + chans[i], chans[i], E))
            ch = chans[i]
            if i > 0:
                self.upsample.append(nn.Conv2d(ch, chans[i - 1], 3, padding=1))
                ch = chans[i - 1]
        self.norm_out = nn.GroupNorm(_groups(ch), ch)
        self.conv_out = nn.Conv2d(ch, C, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)   # output 0 at init: the eps/score guess "no signal"
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x, c):  # x (B, C, H, W), c (B,) -> (B, C, H, W)
        emb = self.embed(c)                                           # (B, 4 base)
        h = self.conv_in(x)
        skips = []
        for i, block in enumerate(self.down):
            h = block(h, emb)                                         # (B, ch_i, H_i, W_i)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)                             # (B, ch_i, H_i/2, W_i/2)
        for block in self.mid:
            h = block(h, emb)
        for j, block in enumerate(self.up):
            h = block(torch.cat([h, skips.pop()], 1), emb)
            if j < len(self.upsample):
                size = self.sizes[len(self.sizes) - 2 - j]
                h = self.upsample[j](F.interpolate(h, size=size, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))


def _act(name: str) -> nn.Module:
    if name == "silu":
        return nn.SiLU()
    if name in ("lrelu", "leaky_relu"):
        return nn.LeakyReLU(0.2)
    if name == "relu":
        return nn.ReLU()
    raise ValueError(f"unknown activation {name!r}; choose silu, lrelu or relu")


class ConvEncoder(nn.Module):
    """(B, C, H, W) -> (B, out_dim): conv3x3, then a stride-2 conv per resolution level
    (channels base, 2 base, 4 base), flatten, linear. GroupNorm keeps samples independent of
    the batch (no BatchNorm: a VAE's q(z|x) must not depend on the other examples).
    For a GAN discriminator: act="lrelu", norm=False, spectral_norm=True (Miyato et al. 2018)."""

    def __init__(self, data_shape: tuple, out_dim: int, base: int = 32, act: str = "silu",
                 norm: bool = True, spectral_norm: bool = False, max_levels: int = 3):
        super().__init__()
        C, H, W = data_shape
        sizes = level_sizes(H, W, max_levels)
        sn = nn.utils.parametrizations.spectral_norm if spectral_norm else (lambda m: m)
        layers, ch = [sn(nn.Conv2d(C, base, 3, padding=1)), _act(act)], base
        for i in range(1, len(sizes)):
            c = base * 2 ** i
            layers += [sn(nn.Conv2d(ch, c, 3, stride=2, padding=1))]
            if norm:
                layers += [nn.GroupNorm(_groups(c), c)]
            layers += [_act(act)]
            ch = c
        h, w = sizes[-1]
        self.features = nn.Sequential(*layers)
        self.out = sn(nn.Linear(ch * h * w, out_dim))

    def forward(self, x):  # (B, C, H, W) -> (B, out_dim)
        return self.out(self.features(x).flatten(1))


class ConvDecoder(nn.Module):
    """(B, in_dim) -> (B, C, H, W): linear to (4 base, h, w) at the smallest level, then
    nearest-upsample + conv3x3 + GroupNorm + SiLU per level (upsample+conv avoids the
    checkerboard of transposed convs, Odena et al. 2016), a final conv3x3 to C channels.
    No output activation: a family adds tanh (GAN) or reads a Gaussian mean (VAE)."""

    def __init__(self, in_dim: int, data_shape: tuple, base: int = 32, max_levels: int = 3):
        super().__init__()
        C, H, W = data_shape
        self.sizes = level_sizes(H, W, max_levels)
        L = len(self.sizes)
        ch = base * 2 ** (L - 1)
        h, w = self.sizes[-1]
        self.ch0 = ch
        self.inp = nn.Linear(in_dim, ch * h * w)
        self.blocks = nn.ModuleList()
        for i in range(L - 1, 0, -1):
            c = base * 2 ** (i - 1)
            self.blocks.append(nn.Sequential(nn.Conv2d(ch, c, 3, padding=1), nn.GroupNorm(_groups(c), c), nn.SiLU()))
            ch = c
        self.pre = nn.Sequential(nn.GroupNorm(_groups(self.ch0), self.ch0), nn.SiLU())
        self.out = nn.Conv2d(ch, C, 3, padding=1)

    def forward(self, z):  # (B, in_dim) -> (B, C, H, W)
        h, w = self.sizes[-1]
        x = self.pre(self.inp(z).view(z.shape[0], self.ch0, h, w))
        for j, block in enumerate(self.blocks):
            size = self.sizes[len(self.sizes) - 2 - j]
            x = block(F.interpolate(x, size=size, mode="nearest"))
        return self.out(x)
