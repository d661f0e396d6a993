"""Where the model is wrong: the Fisher divergence between the model's score and the exact score
against the noise level sigma (engines.score_error, analytic datasets only), updated live. The
latest curve is drawn bright, a few earlier ones fade behind it, so one sees which noise levels
training has fixed and which it has not. Left: the absolute divergence; right: relative to the
size of the exact score, 0.5 E|grad log p_sigma|^2 (1 = no better than predicting zero)."""
from __future__ import annotations

from collections import deque

import numpy as np
import pyqtgraph as pg
from PySide6 import QtWidgets

from engines.inspector import InspectorExtras
from engines.score_error import FisherCurve

from .. import theme
from .base import Panel, plot_widget

HISTORY = 6          # curves kept (the newest bright, older ones fading)


class ScoreErrorPanel(Panel):
    title = "Score error"

    def __init__(self, parent=None):
        super().__init__(parent)
        self.curves: deque = deque(maxlen=HISTORY)
        self.abs_plot = plot_widget("Fisher divergence 0.5 E|s_model - s_exact|^2", "noise level sigma", "")
        self.rel_plot = plot_widget("relative to 0.5 E|s_exact|^2", "noise level sigma", "")
        for p in (self.abs_plot, self.rel_plot):
            p.setLogMode(x=True, y=True)
        self.rel_plot.setXLink(self.abs_plot)
        self.note = QtWidgets.QLabel("")
        self.note.setObjectName("hint")
        self.note.setWordWrap(True)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.abs_plot)
        row.addWidget(self.rel_plot)
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addLayout(row, 1)
        lay.addWidget(self.note)

    def reset(self, info):
        super().reset(info)
        self.curves.clear()
        analytic = bool(getattr(info, "analytic", False))
        self.note.setText("" if analytic else "The exact score is known only for the analytic datasets "
                                              "(8gaussians, 25gaussians, gmm): pick one to see where the model is wrong.")

    def on_message(self, msg):
        if isinstance(msg, InspectorExtras) and msg.fisher is not None:
            self.add_curve(msg.fisher)

    def add_curve(self, curve: FisherCurve):
        if self.curves and self.curves[-1].step == curve.step:
            self.curves.pop()
        self.curves.append(curve)
        self.dirty = True

    def _draw(self):
        for p in (self.abs_plot, self.rel_plot):
            p.clear()
        n = len(self.curves)
        if not n:
            return
        base = theme.SAMPLES[:3]
        for i, c in enumerate(self.curves):
            newest = i == n - 1
            alpha = 255 if newest else int(50 + 120 * (i + 1) / n)
            pen = pg.mkPen((*base, alpha), width=2.5 if newest else 1)
            ok = (c.sigma > 0) & (c.fisher > 0) & np.isfinite(c.fisher)
            sym = dict(symbol="o", symbolSize=5, symbolBrush=(*base, alpha), symbolPen=None) if newest else {}
            self.abs_plot.plot(c.sigma[ok], c.fisher[ok], pen=pen, **sym)
            okr = (c.sigma > 0) & (c.relative > 0) & np.isfinite(c.relative)
            self.rel_plot.plot(c.sigma[okr], c.relative[okr], pen=pen, **sym)
        last = self.curves[-1]
        self.rel_plot.addItem(pg.InfiniteLine(pos=0.0, angle=0, pen=pg.mkPen(theme.FG, style=pg.QtCore.Qt.PenStyle.DashLine)))
        worst = int(np.nanargmax(last.relative)) if np.isfinite(last.relative).any() else 0
        theme.style_plot(self.rel_plot.getPlotItem(),
                         f"relative error, step {last.step:,}: worst at sigma = {last.sigma[worst]:.3g} "
                         f"({last.relative[worst]:.2g})")
