"""Family registry. Adding a family = one file in this folder + one line here."""
from __future__ import annotations

import importlib

from ..config import TrainConfig, build
from .base import Family

# registry key -> "module:Class" (imported on first use so `list` stays fast)
REGISTRY = {
    "ddpm": "ddpm:DDPM",
    "dsm": "dsm:DSM",
    "score_matching": "score_matching:ScoreMatching",
    "ncsn": "ncsn:NCSN",
    "score_sde": "score_sde:ScoreSDE",
    "exact": "exact:ExactScore",
    "flow_matching": "flow_matching:FlowMatching",
    "vae": "vae:VAE",
    "gan": "gan:GAN",
    "wgan_gp": "gan:WGANGP",
    "planar_flow": "flows:PlanarFlow",
    "realnvp": "flows:RealNVP",
    "maf": "flows:MAF",
    "ebm": "ebm:EBM",
    "autoregressive": "autoregressive:Autoregressive",
    "rbm": "rbm:RBM",
    "discrete_diffusion": "discrete_diffusion:DiscreteDiffusion",
    "gmm_em": "gmm_em:GMMEM",
}


def available() -> list[str]:
    """Families whose module imports (the registry may name ones still being written)."""
    out = []
    for n in REGISTRY:
        try:
            get(n)
            out.append(n)
        except (ImportError, AttributeError):
            pass
    return out


def names() -> list[str]:
    return list(REGISTRY)


def get(name: str) -> type[Family]:
    if name not in REGISTRY:
        raise ValueError(f"unknown family {name!r}; choose one of {', '.join(REGISTRY)}")
    mod, cls = REGISTRY[name].split(":")
    return getattr(importlib.import_module(f"{__name__}.{mod}"), cls)


def train_config(family: str, is_image: bool = False, overrides: dict | None = None) -> TrainConfig:
    """TrainConfig from the family's own defaults (Family.train_defaults) and the user's overrides.
    (Here, not in engines.config: config is below the families, which build their Configs with it.)"""
    base = get(family).train_defaults(is_image)
    return build(TrainConfig, {**base, **(overrides or {})})
