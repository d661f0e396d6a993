"""Time / noise-level embeddings shared by the point networks (nets.py) and the image
networks (image_nets.py), in a module of their own so neither imports the other's module back."""
from __future__ import annotations

import math

import torch
from torch import nn


class SinusoidalEmbedding(nn.Module):
    """Transformer-style features [sin(w_k c), cos(w_k c)], w_k log-spaced in [1, 1000] (DDPM)."""

    def __init__(self, dim: int, max_freq: float = 1000.0):
        super().__init__()
        half = dim // 2
        self.register_buffer("freqs", torch.exp(torch.linspace(0, math.log(max_freq), half)))

    def forward(self, c):  # (B,) -> (B, dim)
        a = c[:, None] * self.freqs[None, :]
        return torch.cat([a.sin(), a.cos()], dim=1)


class FourierEmbedding(nn.Module):
    """Random Fourier features [sin(2 pi W c), cos(2 pi W c)], W ~ N(0, scale^2), fixed
    (Tancik et al. 2020; the Gaussian Fourier projection of Song et al. 2021)."""

    def __init__(self, dim: int, scale: float = 16.0):
        super().__init__()
        self.register_buffer("W", torch.randn(dim // 2) * scale)

    def forward(self, c):
        a = 2 * math.pi * c[:, None] * self.W[None, :]
        return torch.cat([a.sin(), a.cos()], dim=1)
