"""Small networks: a time/sigma-conditioned MLP and a scalar energy MLP.

Conditioning is one float per sample, `c` (B,): families feed t / T, t in [0, 1] or
log(sigma) / 4, so the same net serves DDPM, NCSN and the SDEs.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .embeddings import FourierEmbedding, SinusoidalEmbedding
from .image_nets import UNet

ACTIVATIONS = {"silu": nn.SiLU, "relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "softplus": nn.Softplus}


def mlp(d_in: int, d_out: int, hidden: int, depth: int, act: str = "silu") -> nn.Sequential:
    """depth hidden layers of width `hidden`: (B, d_in) -> (B, d_out)."""
    Act = ACTIVATIONS[act]
    layers, d = [], d_in
    for _ in range(depth):
        layers += [nn.Linear(d, hidden), Act()]
        d = hidden
    layers.append(nn.Linear(d, d_out))
    return nn.Sequential(*layers)


class ConditionalMLP(nn.Module):
    """f(x, c): concatenates x (B, D) with an embedding of c (B,) and runs an MLP -> (B, D).

    The output is read by the family as epsilon, x0, v or a score; see `as_score`.
    """

    def __init__(self, dim: int, hidden: int = 128, depth: int = 3, embedding: str = "sinusoidal",
                 emb_dim: int = 32, act: str = "silu"):
        super().__init__()
        if embedding == "sinusoidal":
            self.embed = SinusoidalEmbedding(emb_dim)
        elif embedding == "fourier":
            self.embed = FourierEmbedding(emb_dim)
        else:
            raise ValueError(f"unknown embedding {embedding!r}; choose sinusoidal or fourier")
        self.net = mlp(dim + emb_dim, dim, hidden, depth, act)

    def forward(self, x, c):  # x (B, D), c (B,) -> (B, D)
        return self.net(torch.cat([x, self.embed(c)], dim=1))


class EnergyMLP(nn.Module):
    """Scalar energy E(x) (or E(x, c) when conditional): (B, D) -> (B,).

    Its score is -grad_x E, taken by autograd (`energy_score`).
    """

    def __init__(self, dim: int, hidden: int = 128, depth: int = 3, act: str = "softplus",
                 conditional: bool = False, emb_dim: int = 32):
        super().__init__()
        self.embed = SinusoidalEmbedding(emb_dim) if conditional else None
        self.net = mlp(dim + (emb_dim if conditional else 0), 1, hidden, depth, act)

    def forward(self, x, c=None):
        h = x if self.embed is None else torch.cat([x, self.embed(c)], dim=1)
        return self.net(h).squeeze(1)


def energy_score(energy: nn.Module, x, c=None, create_graph: bool = False):
    """s(x) = -grad_x E(x): (B, D). create_graph=True when the score enters a training loss."""
    with torch.enable_grad():
        x = x if x.requires_grad else x.detach().requires_grad_(True)
        e = energy(x, c) if c is not None else energy(x)
        (g,) = torch.autograd.grad(e.sum(), x, create_graph=create_graph)
    return -g


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class FlatConditionalMLP(nn.Module):
    """f(x, c) for images through a residual MLP on the flattened pixels:
    (B, C, H, W) -> (B, C*H*W) -> Linear -> depth x [h + W2 SiLU(W1 LN(h) + A emb(c))] -> Linear -> (B, C, H, W).
    The conditioning enters every block (as in the DDPM U-Net's residual blocks, Ho et al. 2020),
    not only at the input; the last layer starts at zero (output "no noise"). On a CPU its steps
    are much cheaper than the U-Net's, and on 8x8 digits many cheap steps win (python main.py bench)."""

    def __init__(self, data_shape: tuple, hidden: int = 512, depth: int = 3, embedding: str = "sinusoidal",
                 emb_dim: int = 32, act: str = "silu"):
        super().__init__()
        self.data_shape = tuple(data_shape)
        D = math.prod(self.data_shape)
        self.embed = SinusoidalEmbedding(emb_dim) if embedding == "sinusoidal" else FourierEmbedding(emb_dim)
        self.inp = nn.Linear(D, hidden)
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(depth))
        self.lin1 = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(depth))
        self.cond = nn.ModuleList(nn.Linear(emb_dim, hidden) for _ in range(depth))
        self.lin2 = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(depth))
        self.act = ACTIVATIONS[act]()
        self.out = nn.Linear(hidden, D)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x, c):  # x (B, C, H, W), c (B,) -> (B, C, H, W)
        e = self.embed(c)                                             # (B, emb_dim)
        h = self.inp(x.flatten(1))                                    # (B, hidden)
        for norm, l1, cond, l2 in zip(self.norms, self.lin1, self.cond, self.lin2):
            h = h + l2(self.act(l1(norm(h)) + cond(e)))
        return self.out(self.act(h)).view(x.shape)


IMAGE_NETS = ("auto", "mlp", "unet_small", "unet")


def image_net_for(kind: str, device) -> str:
    """"auto": the U-Net where there is a GPU; on a CPU the half-width U-Net, whose cheaper steps
    win on 8x8 digits (40 CPU-s: FID 14.9 / IS 8.8 at 955 steps against 20.3 / 8.3 at 495 steps
    for the full width, 300 samples; the pixel MLP reached FID 75-150 in as many steps)."""
    if kind not in IMAGE_NETS:
        raise ValueError(f"unknown image net {kind!r}; choose one of {', '.join(IMAGE_NETS)}")
    if kind != "auto":
        return kind
    return "unet" if torch.device(device).type in ("cuda", "mps") else "unet_small"


def conditional_net(data_shape: tuple, hidden: int = 128, depth: int = 3, embedding: str = "sinusoidal",
                    emb_dim: int = 32, image_net: str = "unet") -> nn.Module:
    """f(x, c) with the output shape of x: an MLP for points (D,). For images (C, H, W):
    image_net="unet": a conv U-Net (engines/image_nets.py) with hidden / 4 base channels, 8..64;
    "unet_small": the same with hidden / 8 (about 2x the steps per second on a CPU);
    "mlp": a residual MLP of width 4 * hidden on the flattened pixels (FlatConditionalMLP)."""
    if len(data_shape) == 1:
        return ConditionalMLP(data_shape[0], hidden, depth, embedding, emb_dim)
    if image_net == "mlp":
        return FlatConditionalMLP(tuple(data_shape), 4 * hidden, depth, embedding, emb_dim)
    base = hidden // 8 if image_net == "unet_small" else hidden // 4
    return UNet(tuple(data_shape), base=max(8, min(base, 64)), embedding=embedding)
