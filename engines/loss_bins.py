"""Loss per noise-level bin during training: which noise levels the network has learned.

The noise-based families draw a time per example (DDPM's t, NCSN's sigma rung, a score SDE's t)
and call `report_t_loss(self, t_norm, per_example_loss)` in their `loss`, with t_norm the
example's normalized time in [0, 1] (the axis of engines.schedule_inspect). A `LossBins`
attached to the family keeps references to the batches' (t, loss) tensors (no copy, no device
sync: a few microseconds per step) and bins them once per row, every `row_steps` batches, into
n_bins bin means; the last `max_rows` rows are kept, so memory is bounded whatever the length of
training (at most row_steps pending batches). Rows over time make the heat strip.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import torch


def report_t_loss(family, t_norm: torch.Tensor, per_example: torch.Tensor) -> None:
    """Called from a family's loss: t_norm (B,) in [0, 1], per_example (B,) losses. Keeps the
    last batch as `family.last_t_loss` and feeds an attached LossBins, if any."""
    t_norm, per_example = t_norm.detach(), per_example.detach()
    family.last_t_loss = (t_norm, per_example)
    hook = getattr(family, "t_loss_hook", None)
    if hook is not None:
        hook(t_norm, per_example)


@dataclass(frozen=True)
class LossStrip:
    """The heat strip: rows = training time, columns = normalized-time bins."""
    steps: np.ndarray        # (R,) the training step each row closed at
    edges: np.ndarray        # (n_bins + 1,) bin edges on normalized t in [0, 1]
    mean_loss: np.ndarray    # (R, n_bins) mean per-example loss, NaN where a bin got no example
    counts: np.ndarray       # (R, n_bins) examples per cell

    @property
    def centers(self) -> np.ndarray:
        return 0.5 * (self.edges[1:] + self.edges[:-1])

    def relative(self) -> np.ndarray:
        """(R, n_bins) each bin's mean loss over its first recorded mean: below 1 where training has
        improved that noise level (the raw loss differs by orders of magnitude between levels,
        which hides progress at the levels with a small loss). NaN before a bin's first record."""
        out = np.full_like(self.mean_loss, np.nan)
        for b in range(self.mean_loss.shape[1]):
            col = self.mean_loss[:, b]
            seen = np.flatnonzero(np.isfinite(col) & (col > 0))
            if len(seen):
                out[:, b] = col / col[seen[0]]
                out[: seen[0], b] = np.nan
        return out


class LossBins:
    """A bounded accumulator of per-example losses binned by normalized time."""

    def __init__(self, n_bins: int = 32, row_steps: int = 50, max_rows: int = 200):
        if n_bins < 1 or row_steps < 1 or max_rows < 1:
            raise ValueError("n_bins, row_steps and max_rows must be positive")
        self.n_bins, self.row_steps = int(n_bins), int(row_steps)
        self.rows: deque = deque(maxlen=int(max_rows))   # (step, sums (n_bins,), counts (n_bins,))
        self._pending: list = []                          # [(t (B,), loss (B,))] since the last row
        self.step = 0                                     # batches seen in total

    def attach(self, family) -> "LossBins":
        """Feed every loss the family computes from now on into these bins."""
        family.t_loss_hook = self.add
        return self

    @staticmethod
    def detach(family) -> None:
        family.t_loss_hook = None

    def add(self, t_norm: torch.Tensor, per_example: torch.Tensor) -> None:
        """One batch: t_norm (B,), per_example (B,) (detached; kept by reference until the row closes)."""
        self._pending.append((t_norm, per_example))
        self.step += 1
        if len(self._pending) >= self.row_steps:
            self.close_row()

    def close_row(self, step: int | None = None) -> None:
        """End the current row (now, e.g. at a snapshot) if it holds any example. Non-finite
        losses (a diverging batch) are left out of the means."""
        if not self._pending:
            return
        t = torch.cat([p[0].reshape(-1) for p in self._pending]).double().cpu()       # (R * B,)
        loss = torch.cat([p[1].reshape(-1) for p in self._pending]).double().cpu()
        self._pending = []
        idx = (t.clamp(0, 1) * self.n_bins).long().clamp_(max=self.n_bins - 1)
        ok = torch.isfinite(loss)                      # weights, not a boolean mask (which copies)
        sums = torch.bincount(idx, weights=torch.where(ok, loss, 0.0), minlength=self.n_bins).numpy()
        counts = torch.bincount(idx, weights=ok.double(), minlength=self.n_bins).numpy()
        self.rows.append((self.step if step is None else int(step), sums, counts))

    def strip(self) -> LossStrip:
        edges = np.linspace(0.0, 1.0, self.n_bins + 1)
        if not self.rows:
            empty = np.zeros((0, self.n_bins))
            return LossStrip(np.zeros(0, np.int64), edges, empty, empty)
        steps = np.array([r[0] for r in self.rows], dtype=np.int64)
        sums = np.stack([r[1] for r in self.rows])                  # (R, n_bins)
        counts = np.stack([r[2] for r in self.rows])
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        return LossStrip(steps, edges, mean, counts)
