"""Loss per noise-level bin during training: which noise levels the network has learned.

The noise-based families draw a time per example (DDPM's t, NCSN's sigma rung, a score SDE's t)
and call `report_t_loss(self, t_norm, per_example_loss)` in their `loss`, with t_norm the
example's normalized time in [0, 1] (the axis of engines.schedule_inspect). A `LossBins`
attached to the family adds every batch into n_bins bins on the family's device (no sync per
step) and closes one row of bin means every `row_steps` batches; the last `max_rows` rows are
kept, so memory is bounded whatever the length of training. Rows over time make the heat strip.
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


class LossBins:
    """A bounded accumulator of per-example losses binned by normalized time."""

    def __init__(self, n_bins: int = 32, row_steps: int = 50, max_rows: int = 200):
        if n_bins < 1 or row_steps < 1 or max_rows < 1:
            raise ValueError("n_bins, row_steps and max_rows must be positive")
        self.n_bins, self.row_steps = int(n_bins), int(row_steps)
        self.rows: deque = deque(maxlen=int(max_rows))   # (step, sums (n_bins,), counts (n_bins,))
        self._sums = self._counts = None                  # (n_bins,) on the loss's device
        self._batches = 0
        self.step = 0                                     # batches seen in total

    def attach(self, family) -> "LossBins":
        """Feed every loss the family computes from now on into these bins."""
        family.t_loss_hook = self.add
        return self

    @staticmethod
    def detach(family) -> None:
        family.t_loss_hook = None

    def add(self, t_norm: torch.Tensor, per_example: torch.Tensor) -> None:
        """One batch: t_norm (B,), per_example (B,)."""
        t = t_norm.reshape(-1).float()
        loss = per_example.reshape(-1).float()
        if self._sums is None or self._sums.device != loss.device:
            self._sums = torch.zeros(self.n_bins, device=loss.device)
            self._counts = torch.zeros(self.n_bins, device=loss.device)
        idx = (t.clamp(0, 1) * self.n_bins).long().clamp_(max=self.n_bins - 1)   # (B,)
        finite = torch.isfinite(loss)
        self._sums.index_add_(0, idx, torch.where(finite, loss, torch.zeros_like(loss)))
        self._counts.index_add_(0, idx, finite.float())
        self._batches += 1
        self.step += 1
        if self._batches >= self.row_steps:
            self.close_row()

    def close_row(self, step: int | None = None) -> None:
        """End the current row (now, e.g. at a snapshot) if it holds any example."""
        if self._sums is None or self._batches == 0:
            return
        sums, counts = self._sums.cpu().numpy().astype(np.float64), self._counts.cpu().numpy().astype(np.float64)
        self.rows.append((self.step if step is None else int(step), sums, counts))
        self._sums.zero_()
        self._counts.zero_()
        self._batches = 0

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
