"""Schedule: the family's noise schedule curves (Family.schedule(): {name: (x, y)} + x_label),
one small plot per curve sharing the x axis, with the sampler's current time marked while
the particles animate."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtWidgets

from .. import theme
from .base import Panel

STACK_MAX = 4      # more curves than this share one plot with a legend


class SchedulePanel(Panel):
    title = "Schedule"

    def __init__(self, parent=None):
        super().__init__(parent)
        self.glw = pg.GraphicsLayoutWidget()
        self.glw.setMinimumSize(160, 140)
        self.plots: list[pg.PlotItem] = []
        self.markers: list[pg.InfiniteLine] = []
        self.x_kind = "t"
        self.mark = None
        self.note = QtWidgets.QLabel("")
        self.note.setWordWrap(True)
        self.note.setObjectName("hint")
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.glw, 1)
        lay.addWidget(self.note)

    def reset(self, info):
        super().reset(info)
        self.glw.clear()
        self.plots, self.markers = [], []
        sch = dict(info.get("schedule") or {})
        x_label = str(sch.pop("x_label", "t"))
        curves = {k: v for k, v in sch.items() if isinstance(v, tuple) and len(v) == 2}
        xl = x_label.lower()
        self.x_kind = "sigma" if ("sigma" in xl or "σ" in xl) else "t"
        if not curves:
            p = self.glw.addPlot()
            theme.style_plot(p, "Schedule", grid=False)
            p.hideAxis("left")
            p.hideAxis("bottom")
            t = pg.TextItem(f"{info.get('title', 'This family')} has no noise schedule", color=theme.FG, anchor=(0.5, 0.5))
            p.addItem(t)
            t.setPos(0.5, 0.5)
            p.setRange(xRange=(0, 1), yRange=(0, 1))
            self.note.setText("")
            return
        stack = len(curves) <= STACK_MAX
        first = None
        for i, (name, (x, y)) in enumerate(curves.items()):
            if stack or i == 0:
                p = self.glw.addPlot(row=i if stack else 0, col=0)
                # no grid: a grid-drawing axis spans the view, so the moving marker would repaint it
                theme.style_plot(p, "Noise schedule" if i == 0 else "", x_label if (not stack or i == len(curves) - 1) else "",
                                 name if stack else "value", grid=False)
                p.getAxis("left").setWidth(48)
                if first is None:
                    first = p
                    if not stack:
                        p.addLegend(labelTextColor=theme.FG)
                else:
                    p.setXLink(first)
                m = pg.InfiniteLine(angle=90, pen=pg.mkPen(*theme.MARKER, 220, width=2))
                m.setVisible(False)
                p.addItem(m, ignoreBounds=True)
                self.plots.append(p)
                self.markers.append(m)
            x, y = np.asarray(x, float), np.asarray(y, float)
            curve = pg.PlotDataItem(x, y, pen=pg.mkPen(*theme.series_color(i), width=2), name=name)
            self.plots[-1].addItem(curve)
            if stack:
                # a log axis where the curve spans decades (betas, sigmas)
                pos = y[np.isfinite(y)]
                if len(pos) and (pos > 0).all() and pos.max() / max(pos.min(), 1e-300) > 100:
                    self.plots[-1].setLogMode(y=True)
                    self.plots[-1].setLabel("left", f"{name} (log)")
        self.note.setText("Red line: where the sampler is now (during the particle animation).")

    def set_time(self, frame: dict):
        v = frame.get("sigma") if self.x_kind == "sigma" else frame.get("t")
        if v is None:
            for m in self.markers:
                m.setVisible(False)
            return
        for m, p in zip(self.markers, self.plots):
            m.setPos(np.log10(v) if p.ctrl.logXCheck.isChecked() and v > 0 else v)
            m.setVisible(True)
