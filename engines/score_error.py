"""Where the model is wrong: Fisher divergence between the model's score and the exact score,
against the noise level, on analytic (Gaussian-mixture) datasets.

At each VE noise level sigma (x = x0 + sigma z, so every family is on one axis, Karras et al.
2022 sec. 2), with x drawn from the noised data p_sigma itself:

    F(sigma) = 0.5 E_{x ~ p_sigma} || s_theta(x, sigma) - grad log p_sigma(x) ||^2

(Hyvarinen 2005; the quantity denoising score matching minimizes up to a constant, Vincent
2011), computed with engines.metrics.fisher_divergence. The exact score of a mixture blurred
by N(0, sigma^2 I) is closed form (engines.data.GaussianMixture.score). The relative error
F / (0.5 E ||grad log p_sigma||^2) compares levels whose scores differ in size by orders of
magnitude. A family exposes its score either through the noise-model adapter
(`family.score(x, sigma)` with `family.process.sigma_range()`) or, for the older layout, its
field at a native level with `level_alpha_sigma(level) -> (alpha, s)`; x_t = alpha x maps
VP scores to VE ones: s_VE(x) = alpha s_VP(alpha x).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .metrics import fisher_divergence


@dataclass(frozen=True)
class FisherCurve:
    """Fisher divergence against the VE noise level, arrays (L,), sigma ascending."""
    sigma: np.ndarray
    fisher: np.ndarray           # 0.5 E || s_model - s_exact ||^2
    relative: np.ndarray         # fisher / (0.5 E || s_exact ||^2)
    step: int = 0
    label: str = ""


def _levels(family, n_levels: int):
    """[(sigma, score_fn(x) in VE coordinates)] over the family's noise range."""
    proc = getattr(family, "process", None)
    if proc is not None and hasattr(family, "score") and hasattr(proc, "sigma_range"):
        lo, hi = proc.sigma_range()
        sig = [lo] if hi <= lo else np.exp(np.linspace(math.log(lo), math.log(hi), n_levels)).tolist()
        return [(s, lambda x, s=s: family.score(x, torch.full((x.shape[0],), s, dtype=x.dtype, device=x.device)))
                for s in sig]
    lv = getattr(family, "level", None)
    if not lv or not hasattr(family, "level_alpha_sigma"):
        return []
    lo, hi = float(lv["lo"]), float(lv["hi"])
    if lv.get("log"):
        levels = np.exp(np.linspace(math.log(lo), math.log(hi), n_levels))
    else:
        levels = np.linspace(lo, hi, n_levels)
    if lv.get("integer"):
        levels = np.unique(np.round(levels))
    out = []
    for level in levels:
        a, s = family.level_alpha_sigma(float(level))

        def ve_score(x, a=a, level=float(level)):
            vp = torch.as_tensor(family.field(a * x, level)["score"], dtype=x.dtype, device=x.device)
            return a * vp
        out.append((s / a, ve_score))
    return out


def fisher_by_noise_level(family, mixture, n_levels: int = 12, n: int = 512, seed: int = 0,
                          step: int = 0, label: str = "") -> FisherCurve:
    """The model's score error at each of n_levels noise levels of its range, in the family's
    (normalized) coordinates; `mixture` is the data's GaussianMixture in the same coordinates."""
    levels = sorted(_levels(family, n_levels), key=lambda p: p[0])
    if not levels:
        raise ValueError(f"{getattr(family, 'name', 'this family')} has no score at a noise level to compare")
    g = torch.Generator().manual_seed(seed)
    x0 = mixture.sample(n, seed=g)                                          # (n, D), the same for every level
    z = torch.randn(x0.shape, generator=g)
    dev = getattr(family, "device", torch.device("cpu"))
    sig, fis, rel = [], [], []
    for s, model_score in levels:
        x = x0 + s * z                                                      # x ~ p_sigma
        exact = mixture.score(x, s)                                         # (n, D)
        model = model_score(x.to(dev)).detach().float().cpu()       # some scores need autograd (energy nets)
        f = fisher_divergence(model, exact)
        scale = 0.5 * float(exact.double().pow(2).sum(1).mean())
        sig.append(s)
        fis.append(f)
        rel.append(f / max(scale, 1e-300))
    return FisherCurve(np.asarray(sig), np.asarray(fis), np.asarray(rel), step, label)


def fisher_for_run(run, n_levels: int = 12, n: int = 512, seed: int = 0) -> FisherCurve | None:
    """The curve for a Run on an analytic dataset, in the data's own units (sigma x scale,
    Fisher / scale^2); None when the dataset has no exact score or the family no noise levels."""
    mix = run.family.context.get("mixture")
    if mix is None or getattr(run, "is_image", False):
        return None
    fam = run.family
    was_training = fam.model.training
    fam.model.eval()
    try:
        c = fisher_by_noise_level(fam, mix, n_levels, n, seed, step=run.step, label=fam.name)
    except ValueError:
        return None
    finally:
        fam.model.train(was_training)
    sc = float(run.scale)
    return FisherCurve(c.sigma * sc, c.fisher / sc ** 2, c.relative, c.step, c.label)
