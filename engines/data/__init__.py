"""Datasets: 2D toys, analytic mixtures, user files (and image sets, registered in IMAGES).

`load(name, n, seed)` returns (n, 2) points in the dataset's own coordinates, or
(n, C, H, W) images scaled to [-1, 1]. `name` may also be the path of a user file.
"""
from __future__ import annotations

import os

import torch

from .files import load_points_file
from .images import is_image_path, load_images
from .mixture import GaussianMixture
from .registry import IMAGES
from .toys import GENERATORS, MIXTURES, gmm

__all__ = ["GaussianMixture", "names", "load", "mixture", "is_image", "is_file", "gmm", "IMAGES"]


def names() -> list[str]:
    return list(GENERATORS) + list(MIXTURES) + list(IMAGES)


def is_file(name: str) -> bool:
    """Whether `name` means a path (a separator, an extension, or something that exists) rather
    than a dataset name; a missing path then gets the file loader's clear error."""
    name = str(name)
    return os.sep in name or os.path.splitext(name)[1] != "" or os.path.exists(name)


def is_image(name: str) -> bool:
    """A registered image set, or the path of an image folder / image, IDX or 3-4-D array file."""
    if name in IMAGES:
        return True
    if is_file(name) or os.path.isdir(str(name)):
        return is_image_path(name)
    return False


def mixture(name: str) -> GaussianMixture | None:
    """The analytic GaussianMixture behind a dataset, or None if it has none."""
    f = MIXTURES.get(name)
    return f() if f else None


def load(name: str, n: int, seed: int = 0) -> torch.Tensor:
    """n points (n, 2) or images (n, C, H, W) of dataset `name` (or a user file path)."""
    g = torch.Generator().manual_seed(int(seed))
    if name in GENERATORS:
        return GENERATORS[name](n, g)
    if name in MIXTURES:
        return MIXTURES[name]().sample(n, g)
    if name in IMAGES:
        return IMAGES[name](n, g)
    if is_file(name) or os.path.isdir(str(name)):
        # a folder, an image/IDX file, or a .npy/.npz with 3-4 dims holds images; else points
        x = load_images(name) if is_image_path(name) else load_points_file(name)
        if n and n < len(x):  # a user file is used whole unless asked for fewer examples
            x = x[torch.randperm(len(x), generator=g)[:n]]
        return x
    raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(names())}, or a file path")
