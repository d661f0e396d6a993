"""Score matching without noise (Hyvärinen 2005) and its sliced estimators (Song et al. 2019),
sampled with Langevin dynamics.

The Fisher divergence 1/2 E_p || s_theta(x) - grad log p(x) ||^2 needs the unknown data score;
integrating by parts (course notes 000, "Score matching"; Hyvärinen 2005, Theorem 1) turns it,
up to a constant, into

    exact:      J(theta) = E_p [ tr(grad_x s_theta(x)) + 1/2 || s_theta(x) ||^2 ]

The trace of the Jacobian costs D backward passes (fine for 2D points, hopeless for images).
Sliced score matching (Song, Garg, Shi & Ermon 2019, eq. 7; course notes 002, "Sliced Score
Matching") projects onto random directions v with E[v v^T] = I:

    sliced:     J = E_p E_v [ v^T grad_x (v^T s_theta(x)) + 1/2 (v^T s_theta(x))^2 ]
    sliced_vr:  J = E_p E_v [ v^T grad_x (v^T s_theta(x)) ] + 1/2 E_p || s_theta(x) ||^2

(SSM-VR, the variance-reduced form, integrates the second term over v in closed form). Both are
unbiased for the exact J and cost one extra backward pass per projection. (The slide in course
notes 002 writes the objective as ||s||^2 - 2 tr(Ds); the sign of the trace is an OCR slip: the
paper's objective is ||s||^2 / 2 + tr(Ds).) The loss reports the two parts as terms "trace" and
"norm"; J itself goes to -1/2 E||grad log p||^2 (not 0) at the optimum, and can be negative.

`noise` (default 0.05, normalized units) adds x <- x + noise z before the objective, i.e. it
matches the score of p_data * N(0, noise^2 I) rather than of p_data. This is a practical
smoothing, not part of Hyvärinen's method: the toy datasets are nearly concentrated on curves,
where the exact objective can be pushed down without bound by a net that makes the score diverge
onto the data, and where no data point ever says what the score is a little off the curve
(Song & Ermon 2019, sec. 3). It is still score matching (the trace objective), not DSM: the
regression target -z/sigma of DSM is never used. Set noise = 0 for the textbook method.

The score is a network output (model = score) or minus the gradient of a scalar energy
(model = energy: s = -grad_x E, the score-matching EBM of Hyvärinen 2005).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..config import ConfigError, opt
from .dsm import SMOOTH_ACTS, SingleScoreFamily

MAX_EXACT_DIM = 64   # the exact trace costs D backward passes per step


@dataclass
class ScoreMatchingConfig:
    objective: str = opt("sliced_vr", "how the trace of the score's Jacobian is computed: exactly (D backward "
                         "passes), or estimated with random projections v",
                         "exact: E[tr(grad s) + ||s||^2/2]; sliced: E[v^T grad(v^T s) + (v^T s)^2/2]; "
                         "sliced_vr: E[v^T grad(v^T s)] + E||s||^2/2", choices=("exact", "sliced", "sliced_vr"))
    n_projections: int = opt(1, "random projections v per data point (sliced objectives)",
                             "average over M directions v_1..v_M", lo=1, hi=256)
    projection: str = opt("gaussian", "distribution of the projections v (both have E[v v^T] = I)",
                          "v ~ N(0, I) or uniform on {-1, +1}^D (Rademacher)", choices=("gaussian", "rademacher"))
    noise: float = opt(0.05, "smooth the data with N(0, noise^2 I) before the objective (0: textbook score "
                       "matching); a small value keeps the score defined just off the data",
                       "x <- x + noise z, then match the score of p_data * N(0, noise^2 I)", lo=0.0, hi=10.0)
    model: str = opt("score", "what the network outputs: the score directly, or a scalar energy whose "
                     "negative gradient is the score", "energy: s(x) = -grad_x E_theta(x)",
                     choices=("score", "energy"))
    hidden: int = opt(128, "hidden width of the MLP", lo=4, hi=4096)
    depth: int = opt(3, "hidden layers of the MLP", lo=1, hi=16)
    act: str = opt("silu", "activation (smooth: the loss differentiates the net twice)", choices=SMOOTH_ACTS)


def exact_trace(s: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """tr(grad_x s(x)) per sample, (B,), by D autograd passes; s (B, *shape) must depend on x with a
    graph, and the result keeps its graph (create_graph) so it can be trained on."""
    B = x.shape[0]
    sf = s.reshape(B, -1)                                                 # (B, D)
    tr = x.new_zeros(B)
    for d in range(sf.shape[1]):
        (g,) = torch.autograd.grad(sf[:, d].sum(), x, create_graph=True)  # (B, *shape)
        tr = tr + g.reshape(B, -1)[:, d]
    return tr


def projections(shape, kind: str, generator=None, device=None) -> torch.Tensor:
    """Random directions v with E[v v^T] = I: Gaussian or Rademacher, `shape` = (M B, *data_shape)."""
    if kind == "rademacher":
        return torch.randint(0, 2, shape, generator=generator, device=device).float() * 2 - 1
    return torch.randn(shape, generator=generator, device=device)


def score_matching_terms(score_fn, x, objective: str, n_projections: int = 1, projection: str = "gaussian",
                         generator=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample (trace, norm) parts of the score-matching objective at points x (B, *shape):
    exact:     tr(grad s), ||s||^2/2                      (B,), (B,)
    sliced:    v^T grad(v^T s), (v^T s)^2/2               (M B,), (M B,)  [M projections per point]
    sliced_vr: v^T grad(v^T s), ||s||^2/2                 (M B,), (M B,)
    Their sum's mean is an unbiased estimate of J = E[tr(grad s) + ||s||^2/2].
    score_fn(x) must build a graph from x (for an energy: -grad E with create_graph=True)."""
    B = x.shape[0]
    if objective == "exact":
        x = x.detach().requires_grad_(True)
        s = score_fn(x)                                                   # (B, *shape)
        return exact_trace(s, x), 0.5 * s.reshape(B, -1).pow(2).sum(1)
    if objective not in ("sliced", "sliced_vr"):
        raise ValueError(f"unknown objective {objective!r}; choose exact, sliced or sliced_vr")
    M = n_projections
    # one batched pass: each point repeated M times, each copy with its own direction
    xr = x.detach().repeat((M,) + (1,) * (x.ndim - 1)).requires_grad_(True)  # (M B, *shape)
    v = projections(xr.shape, projection, generator, x.device)              # (M B, *shape)
    s = score_fn(xr)                                                         # (M B, *shape)
    vs = (v * s).reshape(M * B, -1).sum(1)                                   # (M B,)  v^T s
    (g,) = torch.autograd.grad(vs.sum(), xr, create_graph=True)             # (M B, *shape) J^T v
    vjv = (v * g).reshape(M * B, -1).sum(1)                                  # (M B,)  v^T J v
    if objective == "sliced":
        return vjv, 0.5 * vs ** 2
    return vjv, 0.5 * s.reshape(M * B, -1).pow(2).sum(1)


class ScoreMatching(SingleScoreFamily):
    name = "score_matching"
    title = "Score matching (exact / sliced)"
    summary = ("Fit the data score directly with Hyvärinen's trace objective or its sliced estimate, "
               "then sample with Langevin dynamics.")
    Config = ScoreMatchingConfig

    def __init__(self, cfg, data_shape, device, context=None):
        D = math.prod(data_shape)
        if cfg.objective == "exact" and D > MAX_EXACT_DIM:
            raise ConfigError(f"objective exact needs {D} backward passes per step for {D}-dimensional data "
                              f"(at most {MAX_EXACT_DIM} allowed); use sliced or sliced_vr")
        super().__init__(cfg, data_shape, device, context)

    def loss(self, x, generator=None):
        if self.cfg.noise > 0:
            x = x + self.cfg.noise * torch.randn(x.shape, generator=generator, device=x.device)
        trace, norm = score_matching_terms(lambda y: self.net_score(y, self.net, create_graph=True), x,
                                           self.cfg.objective, self.cfg.n_projections, self.cfg.projection,
                                           generator)
        trace, norm = trace.mean(), norm.mean()
        return trace + norm, dict(trace=trace.detach(), norm=norm.detach())

    def level_sigma(self):
        """The learned field targets the score of x + noise z: alpha = 1, sigma = noise."""
        return float(self.cfg.noise)
