"""Schedule: the family's noise schedule curves (Family.schedule(): {name: (x, y)} + x_label),
one small plot per curve sharing the x axis, with the sampler's current time marked while
the particles animate."""
from __future__ import annotations


import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from engines.families.base import time_display_offset

from .. import theme
from .base import Panel

STACK_MAX = 4      # more curves than this share one plot with a legend


def _geometric(x, y) -> bool:
    """Draw y on a log axis when it is positive, spans more than two decades and is closer to
    a straight line in log space than in linear space (a geometric sigma ladder, not a cosine)."""
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(y) < 3 or (y <= 0).any() or y.max() / y.min() < 100:
        return False

    def r2(v):
        c = np.polyfit(x, v, 1)
        res = v - np.polyval(c, x)
        return 1 - res.var() / max(v.var(), 1e-300)
    return r2(np.log(y)) > r2(y) + 0.05


class SchedulePanel(Panel):
    title = "Schedule"

    def __init__(self, parent=None):
        super().__init__(parent)
        self.glw = theme.fast_view(pg.GraphicsLayoutWidget())
        self.glw.setMinimumSize(160, 140)
        self.plots: list[pg.PlotItem] = []
        self.markers: list[pg.InfiniteLine] = []
        self.x_kind = "t"
        self.mark = None
        self._pending_time = None      # the particle frame whose t the marker shows next (set_time)
        self.note = QtWidgets.QLabel("")
        self.note.setWordWrap(True)
        self.note.setObjectName("hint")
        self.message = QtWidgets.QLabel("")
        self.message.setWordWrap(True)
        self.message.setObjectName("hint")
        self.message.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self.message.setVisible(False)
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.glw, 1)
        lay.addWidget(self.message, 1)
        lay.addWidget(self.note)

    def reset(self, info):
        super().reset(info)
        self.glw.clear()
        self.plots, self.markers = [], []
        sch = dict(info.schedule or {})
        x_label = str(sch.pop("x_label", "t"))
        curves = {k: v for k, v in sch.items() if isinstance(v, tuple) and len(v) == 2}
        xl = x_label.lower()
        self.x_kind = "sigma" if ("sigma" in xl or "σ" in xl) else "t"
        # a discrete chain's steps are drawn as the papers number them, 1..T (the particles' frames
        # already carry that t for the marker)
        x_shift = time_display_offset(info.level) if self.x_kind == "t" else 0
        if not curves:
            self.glw.setVisible(False)
            self.message.setText(f"{info.title} has no noise schedule: it does not "
                                 "train on noised data. Diffusion and score families (DDPM, NCSN, score SDE, "
                                 "discrete diffusion) draw theirs here.")
            self.message.setVisible(True)
            self.note.setText("")
            return
        self.glw.setVisible(True)
        self.message.setVisible(False)
        stack = len(curves) <= STACK_MAX
        first = None
        for i, (name, (x, y)) in enumerate(curves.items()):
            if stack or i == 0:
                p = self.glw.addPlot(row=i if stack else 0, col=0)
                # no grid: a grid-drawing axis spans the view, so the moving marker would repaint it
                theme.style_plot(p, "Noise schedule" if i == 0 else "", x_label if (not stack or i == len(curves) - 1) else "",
                                 curve_symbol(name) if stack else "value", grid=False)
                p.getAxis("left").setWidth(48)
                if first is None:
                    first = p
                    if not stack:
                        theme.legend(p, (-5, 5))
                else:
                    p.setXLink(first)
                m = pg.InfiniteLine(angle=90, pen=pg.mkPen(*theme.MARKER, 220, width=2))
                m.setVisible(False)
                p.addItem(m, ignoreBounds=True)
                self.plots.append(p)
                self.markers.append(m)
            x, y = np.asarray(x, float) + x_shift, np.asarray(y, float)
            curve = pg.PlotDataItem(x, y, pen=pg.mkPen(*theme.series_color(i), width=2), name=name)
            self.plots[-1].addItem(curve)
            if stack and _geometric(x, y):
                self.plots[-1].setLogMode(y=True)
                self.plots[-1].setLabel("left", f"{curve_symbol(name)} (log)")
        self.note.setText("Red line: where the sampler is now (during the particle animation).")

    def set_time(self, frame: dict):
        """The particle frame on screen, dict(i, t, sigma): the marker moves on this panel's next
        turn to draw (app/frame_turns.py), not in the particles' paint pass. The particles panel
        emits frames at ~8 Hz, always including the first and the last; only the newest pending
        one is drawn, so the final t = 0 is never dropped."""
        self._pending_time = frame
        self.dirty = True

    def _draw(self):
        frame, self._pending_time = self._pending_time, None
        if frame is None:
            return
        v = frame.get("sigma") if self.x_kind == "sigma" else frame.get("t")
        if v is None:
            for m in self.markers:
                m.setVisible(False)
            return
        for m, p in zip(self.markers, self.plots):
            m.setPos(np.log10(v) if p.ctrl.logXCheck.isChecked() and v > 0 else v)
            m.setVisible(True)


# the schedules' curve names as the papers write them: a stacked plot's rotated axis title must
# fit its height (at 768 px, "log_snr", "alpha_bar", "beta (log)" ran into each other)
SYMBOLS = {"beta": "β_t", "alpha_bar": "ᾱ_t", "log_snr": "log SNR", "sigma": "σ(t)", "std": "s(t)",
           "mean_coef": "α(t)", "level i": "level i", "step alpha_i": "step α_i"}


def curve_symbol(name: str) -> str:
    return SYMBOLS.get(name, name)
