"""Sampler lab: which sampler to use at a budget of network evaluations, by evidence. "Run lab"
sends a RunLab command (the NFE budgets typed here); the session runs engines.lab.run_lab on its
model, then on the exact-score oracle of an analytic dataset, and sends LabProgress rows and one
LabResult whose curves (engines.lab.LabCurve) this panel draws and nothing more:

  left   sample quality (energy distance in multiples of the iid level, 1 = as good as fresh data)
         against NFE, log-log, one colour per sampler; the oracle's curves dashed: the ceiling.
         The gap between a solid curve and its dashed one is the model's error; the dashed
         curve's distance from 1x is the sampler's discretization error.
         Each point is the mean of K readings (starting-noise seeds shared by model and oracle);
         the shaded band is where a perfect sampler's mean of K falls 90 % of the time.
  right  wall time of sampling against NFE (per reading).
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from engines import messages as M
from engines.config import ConfigError

from .. import theme
from .base import Panel, plot_widget

DEFAULT_NFE = "5, 10, 20, 50"


class LabPanel(Panel):
    title = "Sampler lab"
    runRequested = QtCore.Signal(object)     # an engines.messages.RunLab
    stopRequested = QtCore.Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.result: M.LabResult | None = None
        self.progress: M.LabProgress | None = None
        self.running = False
        self.nfe = QtWidgets.QLineEdit(DEFAULT_NFE)
        self.nfe.setToolTip("budgets of network evaluations per sample, comma-separated (1 to 1000)")
        self.nfe.returnPressed.connect(self._run_clicked)
        self.n = QtWidgets.QSpinBox()
        self.n.setRange(100, 20_000)
        self.n.setSingleStep(500)
        self.n.setValue(1000)
        self.n.setToolTip("samples per row: the energy distance's noise falls as 1/sqrt(n)")
        self.button = QtWidgets.QPushButton("Run lab")
        self.button.setToolTip("every applicable sampler at each budget, on this model as it is now "
                               "(and on the exact score of an analytic dataset, dashed)")
        self.button.clicked.connect(self._run_clicked)
        self.status = QtWidgets.QLabel("")
        self.status.setObjectName("hint")
        self.status.setWordWrap(True)
        self.quality = plot_widget("quality vs network evaluations", "NFE", "energy distance (× iid)")
        self.time = plot_widget("wall time", "NFE", "seconds")
        for p in (self.quality, self.time):
            p.setLogMode(x=True, y=True)
        self.time.setXLink(self.quality)
        self.legend = theme.legend(self.quality.getPlotItem(), offset=(-5, 5))   # top right: empty at large NFE
        top = QtWidgets.QHBoxLayout()
        top.addWidget(QtWidgets.QLabel("NFE"))
        top.addWidget(self.nfe, 1)
        top.addWidget(QtWidgets.QLabel("samples"))
        top.addWidget(self.n)
        top.addWidget(self.button)
        plots = QtWidgets.QHBoxLayout()
        plots.addWidget(self.quality, 3)
        plots.addWidget(self.time, 2)
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addLayout(top)
        lay.addLayout(plots, 1)
        lay.addWidget(self.status)

    # ------------------------------------------------------------------ controls
    def _run_clicked(self):
        if self.running:
            self.stopRequested.emit()
            return
        try:
            cmd = M.RunLab(self.nfe.text(), self.n.value())
        except ConfigError as e:
            self.status.setText(f"⚠ {e}")
            return
        self.nfe.setText(", ".join(map(str, cmd.nfe)))
        self._set_running(True)
        self.status.setText(f"running the samplers at NFE {', '.join(map(str, cmd.nfe))}…")
        self.runRequested.emit(cmd)

    def _set_running(self, on: bool):
        self.running = on
        self.button.setText("Stop lab" if on else "Run lab")

    # ------------------------------------------------------------------ messages
    def reset(self, info):
        super().reset(info)
        self.result = self.progress = None
        self._set_running(False)
        can = bool(getattr(info, "samplers", ()))
        self.button.setEnabled(can)
        self.status.setText("" if can else "this family has no sampler to compare")

    def on_message(self, msg):
        if isinstance(msg, M.LabProgress):
            self.progress = msg
            self._set_running(True)
            self.status.setText(f"{msg.done}/{msg.total}: {msg.source} {msg.sampler} at {msg.nfe} NFE "
                                f"→ {msg.x_iid:.2f}× iid")
        elif isinstance(msg, M.LabResult):
            self.set_result(msg)

    def set_result(self, result: M.LabResult):
        self.result = result
        self._set_running(False)
        what = f"{len(result.rows)} rows, {result.n_samples:,} samples per reading, model at step {result.step:,}"
        if result.message and not result.rows:
            self.status.setText(result.message)
        elif result.cancelled:
            self.status.setText(f"{result.message or 'stopped'}: {what} (those finished)")
        else:
            self.status.setText(f"{what}. Dashed: the exact score (the ceiling); 1× = as good as fresh data."
                                f"{self._band_note(result)}")
        self.dirty = True

    @staticmethod
    def _band_note(result) -> str:
        band = next((r.band for r in result.rows if getattr(r, "band", None)), None)
        if band is None:
            return ""
        k = max((len(r.x_iid_readings) for r in result.rows), default=1)
        return (f" Each point: mean of {k} seeds; shaded: a perfect sampler's mean reads "
                f"{band[0]:.2f}–{band[1]:.2f}× (90 %), so points inside it differ by noise alone.")

    # ------------------------------------------------------------------ drawing
    def _draw(self):
        for p in (self.quality, self.time):
            p.clear()
        self.legend.clear()
        r = self.result
        if r is None or not r.curves:
            return
        names = sorted({c.sampler for c in r.curves})
        colour = {name: theme.series_color(i) for i, name in enumerate(names)}
        for c in r.curves:
            oracle = c.source == "oracle"
            style = QtCore.Qt.PenStyle.DashLine if oracle else QtCore.Qt.PenStyle.SolidLine
            pen = pg.mkPen(colour[c.sampler], width=1.5 if oracle else 2.5, style=style)
            sym = dict(symbol="t" if oracle else "o", symbolSize=6, symbolBrush=colour[c.sampler], symbolPen=None)
            ok = np.isfinite(c.x_iid) & (c.x_iid > 0) & (c.nfe > 0)       # log axes: positive values only
            # one legend entry per sampler (its colour); the status line says dashed = exact score
            self.quality.plot(c.nfe[ok], c.x_iid[ok], pen=pen, name=None if oracle else c.sampler, **sym)
            okt = (c.seconds > 0) & (c.nfe > 0)
            self.time.plot(c.nfe[okt], c.seconds[okt], pen=pen, **sym)
        band = next((r.band for r in r.rows if getattr(r, "band", None)), None)
        if band is not None and band[0] > 0:   # a perfect sampler's mean of K readings, 90 % (log10 axis)
            shade = pg.mkColor(theme.FG)
            shade.setAlpha(36)
            region = pg.LinearRegionItem(values=(np.log10(band[0]), np.log10(band[1])), orientation="horizontal",
                                         movable=False, brush=pg.mkBrush(shade), pen=pg.mkPen(None))
            region.setZValue(-10)
            self.quality.addItem(region)
        # 1x: a perfect sampler on a perfect model (log10(1) = 0 on the log axis)
        self.quality.addItem(pg.InfiniteLine(pos=0.0, angle=0,
                                             pen=pg.mkPen(theme.FG, style=QtCore.Qt.PenStyle.DotLine)))
