"""Stats: how fast things go (training steps/s, frames/s, event-loop lateness), how big the
model is, the sampler's network evaluations and the device."""
from __future__ import annotations

from PySide6 import QtCore, QtWidgets

from .base import Panel

ROWS = [
    ("run", "Run", "family on dataset"),
    ("device", "Device", "where the network trains (torch threads in brackets)"),
    ("parameters", "Parameters", "trainable numbers in the network"),
    ("step", "Step", "optimization steps done"),
    ("steps_per_s", "Steps / s", "training throughput of the worker thread"),
    ("lr", "Learning rate", "current base learning rate"),
    ("fps", "Frames / s", "how often the window redraws its panels"),
    ("lateness", "UI lateness p99", "99th percentile of how late a 10 ms heartbeat timer fires: "
                                    "the window's responsiveness"),
    ("nfe", "Sampler NFE", "network evaluations of the last particle run (one per step for "
                           "DDPM/Langevin; adaptive ODE solvers use more)"),
    ("sample_time", "Sampling time", "seconds the last particle run took"),
    ("metric", "Sample quality", "energy distance of the samples to held-out data, in multiples of the "
                                 "iid level (1x: as good as a fresh draw of the data)"),
    ("fid", "FID / IS", "digit images: Fréchet distance of the samples' classifier features to real digits "
                        "(lower is better) and Inception Score exp E KL(p(y|x) || p(y)) (1..10, higher is better)"),
    ("rss", "Memory", "resident memory of the process (peak)"),
]


class StatsPanel(Panel):
    title = "Stats"

    def __init__(self, parent=None):
        super().__init__(parent)
        self.values: dict = {}
        self.labels: dict[str, QtWidgets.QLabel] = {}
        form = QtWidgets.QFormLayout()
        form.setLabelAlignment(QtCore.Qt.AlignmentFlag.AlignRight)
        for key, name, tip in ROWS:
            lab = QtWidgets.QLabel("-")
            lab.setWordWrap(True)       # a long value wraps instead of widening the whole dock
            lab.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Preferred)
            lab.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
            lab.setToolTip(tip)
            head = QtWidgets.QLabel(name)
            head.setToolTip(tip)
            form.addRow(head, lab)
            self.labels[key] = lab
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(8, 8, 8, 8)
        lay.addLayout(form)
        lay.addStretch(1)

    def set_values(self, **kw):
        for k, v in kw.items():
            if self.values.get(k) != v:
                self.values[k] = v
                self.dirty = True

    def _draw(self):
        for k, v in self.values.items():
            lab = self.labels.get(k)
            if lab is not None:
                lab.setText(str(v))
