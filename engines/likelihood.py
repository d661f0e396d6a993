"""Likelihoods in honest units: nats per point in the dataset's own coordinates for points, and
bits per dimension of the discrete pixel values for images.

Points. Families fit log p_norm(z) to the standardized z = (x - shift) / scale (one scalar scale),
so by the change of variables
    log p_data(x) = log p_norm(z) - D log(scale).
Images with G grey levels spaced `step` apart (8x8 digits: 17 levels, step 2/16 in [-1, 1]). A
continuous density fitted to the raw values can put unbounded mass on the grid, so density
families train on dequantized values y = x + step (u - 1/2), u ~ U[0, 1)^D (Theis et al. 2016,
"A note on the evaluation of generative models", sec. 3.1; Uria et al. 2013). Then
    log P(x) >= E_u log p(y) + D log(step)          (Jensen; the mass of a cell is <= 1),
and bits/dim = -(log p(y) + D log(step)) / (D ln 2), on held-out images with one noise draw.
A discrete model of binarized pixels (MADE) gives log P(x) directly: bits/dim = -log P / (D ln 2).

Families opt in with `likelihood_kind`: "density" (a continuous density; images are dequantized
before it is asked) or "binary" (a probability of the binarized image).
"""
from __future__ import annotations

import math

import torch

DEFAULT_STEP = 2.0 / 255.0      # 8-bit images scaled to [-1, 1]
MAX_LEVELS = 257                # more distinct values than this: not a grid, assume 8-bit


def grey_step(images: torch.Tensor, max_values: int = 1 << 20) -> float:
    """The spacing of the grey levels of images in [-1, 1]: the smallest gap between distinct
    values when all values sit on one evenly spaced grid of at most MAX_LEVELS levels, else
    DEFAULT_STEP (one 8-bit grey level)."""
    v = images.reshape(-1)[:max_values].double()
    u = torch.unique((v * 1e6).round() / 1e6)                                # sorted distinct values
    if len(u) < 2 or len(u) > MAX_LEVELS:
        return DEFAULT_STEP
    step = float((u[1:] - u[:-1]).min())
    k = (u - u[0]) / step                                                     # grid indices
    if float((k - k.round()).abs().max()) > 1e-3:
        return DEFAULT_STEP
    return step


def levels(step: float) -> int:
    """Number of grey levels on [-1, 1] with this spacing (2 / step + 1)."""
    return int(round(2.0 / step)) + 1


def dequantize(x: torch.Tensor, step: float, generator=None) -> torch.Tensor:
    """x + step (u - 1/2), u ~ U[0, 1) per value: each grid value spread over its own cell."""
    if step <= 0:
        return x
    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return x + step * (u - 0.5)


def nll_points(log_p_norm: torch.Tensor, dim: int, scale: float) -> float:
    """Mean negative log-likelihood in nats per point, data units: -(log p_norm - D log scale)."""
    return float(-(log_p_norm.double().mean() - dim * math.log(scale)))


def bits_per_dim(log_p: torch.Tensor, dim: int, step: float | None) -> float:
    """Bits per dimension of discrete values: -(log p + D log step) / (D ln 2); step=None for a
    probability mass already (binarized pixels)."""
    lp = log_p.double().mean() + (dim * math.log(step) if step else 0.0)
    return float(-lp / (dim * math.log(2.0)))


def held_out_likelihood(family, x_norm: torch.Tensor, *, scale: float, is_image: bool, step: float,
                        reference: str, generator: torch.Generator) -> dict:
    """The report for `family` on held-out data x_norm (B, *shape) in normalized coordinates:
    {nll_nats | bits_per_dim, nll_unit, nll_reference}; {} when the family declares no cheap
    likelihood (`likelihood_kind`)."""
    kind = getattr(family, "likelihood_kind", None)
    if kind is None:
        return {}
    dim = int(x_norm[0].numel())
    if not is_image:
        lp = family.log_likelihood(x_norm)
        return dict(nll_nats=nll_points(lp, dim, scale), nll_unit="nats per point (data units)",
                    nll_reference=reference)
    if kind == "binary":
        lp = family.log_likelihood(x_norm)
        return dict(bits_per_dim=bits_per_dim(lp, dim, None), nll_unit="bits/dim (binarized pixels)",
                    nll_reference=reference)
    lp = family.log_likelihood(dequantize(x_norm, step, generator))
    return dict(bits_per_dim=bits_per_dim(lp, dim, step),
                nll_unit=f"bits/dim (dequantized, {levels(step)} grey levels)", nll_reference=reference)


def summary_line(metrics: dict) -> str | None:
    """"held-out NLL 1.234 nats per point (data units)" / "... bits/dim (...)", or None."""
    unit = metrics.get("nll_unit")
    if unit is None:
        return None
    value = metrics["bits_per_dim"] if "bits_per_dim" in metrics else metrics.get("nll_nats")
    ref = metrics.get("nll_reference", "held-out")
    return f"{ref} NLL {value:.4g} {unit}"
