"""A tiny digit classifier and the sample-quality metrics built on it (FID and Inception Score
analogues for the 8x8 digits, the way FID/IS use an Inception net for ImageNet-sized images).

  fid              Fréchet distance between Gaussian fits of the classifier's penultimate
                   features of the samples and of the real digits (Heusel et al. 2017):
                   |mu1 - mu2|^2 + tr S1 + tr S2 - 2 tr (S1^1/2 S2 S1^1/2)^1/2
  inception_score  exp E_x KL(p(y|x) || p(y)), p(y) the mean of p(y|x) (Salimans et al. 2016);
                   1 (every sample the same class, or all undecided) .. 10 (confident, balanced)
  class_histogram  fractions of samples assigned to each digit 0..9
  confident_fraction  fraction of samples whose top class has probability > 0.9

FID depends on the number of samples (it is biased upwards for small sets): compare runs at one
sample count. The weights ship in resources/digit_classifier.safetensors (trained by
`train_classifier()`, deterministic, on a fixed 1500-image split; the other 297 are held out).
"""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .resources import resource_path

__all__ = ["DigitNet", "train_classifier", "load_classifier", "classifier_metrics", "frechet_distance",
           "inception_score", "digit_split", "accuracy", "applies_to", "run_metrics", "WEIGHTS"]

WEIGHTS = resource_path("digit_classifier.safetensors")
N_TRAIN = 1500           # of the 1797 digits, in the order of a seed-0 permutation
CONFIDENT = 0.9


class DigitNet(nn.Module):
    """(B, 1, 8, 8) in [-1, 1] -> logits (B, 10); `features` gives the 64-d penultimate layer."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.SiLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.SiLU(), nn.MaxPool2d(2),      # (B, 32, 4, 4)
            nn.Conv2d(32, 32, 3, padding=1), nn.SiLU(), nn.MaxPool2d(2))      # (B, 32, 2, 2)
        self.fc = nn.Linear(128, 64)
        self.head = nn.Linear(64, 10)

    def features(self, x):  # (B, 1, 8, 8) -> (B, 64)
        return F.silu(self.fc(self.conv(x).flatten(1)))

    def forward(self, x):  # (B, 1, 8, 8) -> (B, 10)
        return self.head(self.features(x))


def digit_split():
    """(train images, train labels, test images, test labels): 1500 / 297 of the 8x8 digits."""
    from .data.images import digits_with_labels
    x, y = digits_with_labels()                                     # (1797, 1, 8, 8), (1797,)
    p = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    tr, te = p[:N_TRAIN], p[N_TRAIN:]
    return x[tr], y[tr], x[te], y[te]


def _augment(x, g):
    """Random shifts by up to one pixel (pad with background -1 and crop) and mild pixel noise,
    so the features do not hinge on exact positions or on perfectly clean strokes."""
    B = x.shape[0]
    xp = F.pad(x, (1, 1, 1, 1), value=-1.0)                          # (B, 1, 10, 10)
    dx = torch.randint(0, 3, (B,), generator=g)
    dy = torch.randint(0, 3, (B,), generator=g)
    rows = (dy[:, None] + torch.arange(8))[:, :, None]              # (B, 8, 1)
    cols = (dx[:, None] + torch.arange(8))[:, None, :]              # (B, 1, 8)
    out = xp[torch.arange(B)[:, None, None], 0, rows, cols][:, None]  # (B, 1, 8, 8)
    return (out + 0.1 * torch.randn(out.shape, generator=g)).clamp(-1, 1)


def train_classifier(path: str | Path | None = WEIGHTS, epochs: int = 60, seed: int = 0) -> DigitNet:
    """Train DigitNet on the 1500-digit training split (Adam, batch 64, shift+noise augmentation)
    and save it as safetensors when `path` is given. Deterministic for a given seed on CPU."""
    xtr, ytr, _, _ = digit_split()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = DigitNet()
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    steps = epochs * math.ceil(len(xtr) / 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    net.train()
    for _ in range(epochs):
        p = torch.randperm(len(xtr), generator=g)
        for i in range(0, len(xtr), 64):
            idx = p[i:i + 64]
            loss = F.cross_entropy(net(_augment(xtr[idx], g)), ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    net.eval().requires_grad_(False)
    if path is not None:
        from safetensors.torch import save_file
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return net


@lru_cache(maxsize=1)
def load_classifier() -> DigitNet:
    """The shipped classifier; trained (a few seconds) and saved on first use if the file is missing."""
    if WEIGHTS.exists():
        from safetensors.torch import load_file
        net = DigitNet()
        net.load_state_dict(load_file(str(WEIGHTS)))
        return net.eval().requires_grad_(False)
    try:
        return train_classifier(WEIGHTS)
    except OSError:          # a read-only install: keep the trained net in memory only
        return train_classifier(None)


@torch.no_grad()
def accuracy(net: DigitNet | None = None) -> float:
    """Accuracy on the 297 held-out digits."""
    net = net or load_classifier()
    _, _, xte, yte = digit_split()
    return float((net(xte).argmax(1) == yte).float().mean())


def _prepare(images) -> torch.Tensor:
    """(N, C, H, W) in [-1, 1] (any size, any channels) -> (N, 1, 8, 8) float32 on the CPU."""
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    x = x.detach().float().cpu()
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise ValueError(f"classifier_metrics expects images (N, C, H, W), got shape {tuple(x.shape)}")
    x = x.mean(1, keepdim=True).nan_to_num(0.0).clamp(-1, 1)
    if x.shape[-2:] != (8, 8):
        x = F.interpolate(x, size=(8, 8), mode="area")             # 16x16 -> 2x2 means
    return x


@torch.no_grad()
def _features_probs(net, x, chunk: int = 2048):
    feats, probs = [], []
    for i in range(0, len(x), chunk):
        f = net.features(x[i:i + chunk])
        feats.append(f.double())
        probs.append(F.softmax(net.head(f), 1).double())
    return torch.cat(feats), torch.cat(probs)


@lru_cache(maxsize=4)
def _reference(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (64,) and covariance (64, 64) of the features of all 1797 real digits of dataset
    `name` (digits, digits16, digits_binary), brought to 8x8 the way samples are, so that real
    data of each set scores near 0."""
    from .data.images import digits_with_labels
    x, _ = digits_with_labels(size=16 if name == "digits16" else 8)
    if name == "digits_binary":
        x = torch.where(x >= 0, 1.0, -1.0)
    f, _ = _features_probs(load_classifier(), _prepare(x))
    return f.mean(0), torch.cov(f.T)


def frechet_distance(mu1, s1, mu2, s2) -> float:
    """|mu1 - mu2|^2 + tr S1 + tr S2 - 2 tr (S1^1/2 S2 S1^1/2)^1/2 (Dowson & Landau 1982).
    tr sqrtm(S1 S2) is computed as the sum of the square roots of the eigenvalues of the
    symmetric PSD matrix S1^1/2 S2 S1^1/2 (S1^1/2 from an eigendecomposition): no scipy."""
    mu1, mu2, s1, s2 = (torch.as_tensor(a, dtype=torch.float64) for a in (mu1, mu2, s1, s2))
    w, V = torch.linalg.eigh((s1 + s1.T) / 2)
    r1 = (V * w.clamp(min=0).sqrt()) @ V.T                          # S1^1/2
    m = r1 @ s2 @ r1
    ev = torch.linalg.eigvalsh((m + m.T) / 2).clamp(min=0)
    d = (mu1 - mu2).pow(2).sum() + s1.trace() + s2.trace() - 2 * ev.sqrt().sum()
    return float(d.clamp(min=0))


def inception_score(probs) -> float:
    """exp E_x KL(p(y|x) || p(y)) for class probabilities (N, K)."""
    p = torch.as_tensor(probs, dtype=torch.float64).clamp(min=1e-12)
    py = p.mean(0, keepdim=True)
    return float(torch.exp((p * (p.log() - py.log())).sum(1).mean()))


def classifier_metrics(images, reference: str | None = None) -> dict:
    """fid, inception_score, class_histogram (10 fractions), confident_fraction for digit images
    (N, 1, 8, 8) or (N, 1, 16, 16) in [-1, 1] (see the module docstring). `reference`: the real
    set the FID compares with, digits / digits16 / digits_binary (default: by image size).
    Needs N >= 2."""
    raw = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    x = _prepare(raw)
    if len(x) < 2:
        raise ValueError("classifier_metrics needs at least 2 images")
    if reference is None:
        reference = "digits16" if tuple(raw.shape[-2:]) == (16, 16) else "digits"
    if reference not in ("digits", "digits16", "digits_binary"):
        raise ValueError(f"unknown reference {reference!r}; choose digits, digits16 or digits_binary")
    f, p = _features_probs(load_classifier(), x)
    mu_r, s_r = _reference(reference)
    fid = frechet_distance(f.mean(0), torch.cov(f.T), mu_r, s_r)
    hist = torch.bincount(p.argmax(1), minlength=10).double() / len(p)
    return dict(fid=fid, inception_score=inception_score(p), class_histogram=hist.tolist(),
                confident_fraction=float((p.max(1).values > CONFIDENT).double().mean()))


def applies_to(dataset, data_shape) -> bool:
    """Whether the digit metrics mean something for a run: one-channel 8x8 or 16x16 images of
    a digits dataset (or any 8x8 grey set, most likely the user's own digits)."""
    shape = tuple(data_shape)
    if shape not in ((1, 8, 8), (1, 16, 16)):
        return False
    name = str(dataset)
    return name.startswith("digits") or shape == (1, 8, 8)


def run_metrics(dataset, samples) -> dict:
    """classifier_metrics for a run's samples (N, C, H, W) when `applies_to` its dataset, else {}."""
    samples = torch.as_tensor(samples)
    if samples.ndim != 4 or len(samples) < 2 or not applies_to(dataset, samples.shape[1:]):
        return {}
    ref = dataset if dataset in ("digits", "digits16", "digits_binary") else None
    return classifier_metrics(samples, ref)
