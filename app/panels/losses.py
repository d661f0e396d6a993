"""Losses: every named loss term against the training step, on a log axis, with smoothing.

The history is kept in growable numpy arrays (loss_history.py: amortized doubling, bounded: past
MAX_POINTS records, records far back merge into a log-time multi-resolution history), smoothed incrementally
(a bias-corrected exponential moving average continued from its last state, scipy.signal.
lfilter with zi), mapped to log10 once per new point, and peak-decimated incrementally (min
and max per block of B points, the picture pyqtgraph's 'peak' downsampling draws) so that a
redraw of a 1M-point history draws a few thousand vertices and costs about a millisecond.
A zoomed-in view re-slices the raw history at the visible range.
"""
from __future__ import annotations

import time

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets
from scipy.signal import lfilter

from .. import theme
from .base import Panel, centered_message, plot_widget, set_range_now
from .loss_history import Peaks, Term, compact, decimate


class LossesPanel(Panel):
    title = "Losses"
    MAX_HZ = 5.0          # a loss curve needs no more; each redraw re-ranges and repaints the axes
    MAX_POINTS = 1 << 17  # records kept per term (6 float64 arrays, <= 2x capacity: <= 12 MB a term); far-back
                          # records merge (loss_history.compact): a 1,000-pixel plot needs ~2,000 points

    def __init__(self, parent=None):
        super().__init__(parent)
        self.terms: dict[str, Term] = {}
        self.curves: dict[str, tuple] = {}
        self.alpha = 0.98
        self.log = True
        self._last_draw = 0.0
        self._message = ""
        self._hover_step = None

        # no grid: grid lines make the axes repaint over the whole plot at every update;
        # hovering shows exact values instead
        self.plot = plot_widget("Training losses", "training step", "loss", grid=False)
        self.pi = self.plot.getPlotItem()
        self.legend = theme.legend(self.pi, (-10, 10))
        # No pyqtgraph auto-downsampling / clip-to-view here: they redo O(N) work on every
        # redraw and, re-running after each range change, paint the plot twice. The Peaks
        # pyramid below is the same peak decimation, done once per new point.
        self.empty = centered_message(self.pi)
        self.empty.setText("Press Play: the loss of every step appears here")
        self.vline = pg.InfiniteLine(angle=90, pen=pg.mkPen(150, 150, 160, 120, style=QtCore.Qt.PenStyle.DashLine))
        self.vline.setVisible(False)
        self.pi.addItem(self.vline, ignoreBounds=True)
        self.hover = pg.TextItem("", color=theme.FG, anchor=(1, 0), fill=pg.mkBrush(30, 32, 40, 220))
        self.hover.setZValue(300)
        self.hover.setVisible(False)
        self.pi.addItem(self.hover, ignoreBounds=True)
        self.status = pg.TextItem("", color=(255, 110, 110), anchor=(0, 1))
        self.status.setVisible(False)    # a visible TextItem re-paints itself once more after every range change
        self.pi.addItem(self.status, ignoreBounds=True)
        self._proxy = pg.SignalProxy(self.plot.scene().sigMouseMoved, rateLimit=30, slot=self._mouse)
        # The view follows the whole history ("follow") until the user pans or zooms; the "A"
        # button of the plot follows again. The range is set here, once per redraw: pyqtgraph's
        # own auto-range re-settles after the paint (curve bounds are computed lazily) and so
        # paints every update twice.
        self.follow = True
        vb = self.pi.getViewBox()
        vb.disableAutoRange()
        vb.sigRangeChangedManually.connect(self._manual_range)
        vb.sigStateChanged.connect(self._auto_button)
        vb.sigXRangeChanged.connect(self._range_changed)

        self.smooth_slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.smooth_slider.setRange(0, 999)
        self.smooth_slider.setValue(int(self.alpha * 1000))
        self.smooth_slider.setToolTip("Exponential moving average of the loss:\n"
                                      "s_k = a s_(k-1) + (1 - a) loss_k   (a = 0: raw values)")
        self.smooth_slider.valueChanged.connect(self._set_alpha)
        self.smooth_label = QtWidgets.QLabel()
        self.log_box = QtWidgets.QCheckBox("log y")
        self.log_box.setChecked(True)
        self.log_box.setToolTip("Log-scale loss axis (switched off automatically when a term is <= 0)")
        self.log_box.toggled.connect(self._set_log)
        self.raw_box = QtWidgets.QCheckBox("raw")
        self.raw_box.setChecked(True)
        self.raw_box.setToolTip("Also draw the unsmoothed values (faint)")
        self.raw_box.toggled.connect(self._relayout)
        bar = QtWidgets.QHBoxLayout()
        bar.addWidget(QtWidgets.QLabel("smoothing"))
        bar.addWidget(self.smooth_slider, 1)
        bar.addWidget(self.smooth_label)
        bar.addWidget(self.raw_box)
        bar.addWidget(self.log_box)
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addLayout(bar)
        lay.addWidget(self.plot, 1)
        self._update_label()

    # ------------------------------------------------------------ data in
    def reset(self, info):
        super().reset(info)
        self.follow = True
        self._fresh = True
        self.terms.clear()
        for raw, sm in self.curves.values():
            self.pi.removeItem(raw)
            self.pi.removeItem(sm)
            self.legend.removeItem(sm)
        self.curves.clear()
        self._message = ""
        self.status.setText("")
        self.status.setVisible(False)
        self.empty.setVisible(True)
        self.legend.setVisible(False)
        self.empty.setText("Press Play: the loss of every step appears here" if info.trainable
                           else f"{info.title} has nothing to train")

    def append(self, steps, losses: dict):
        """Add records: steps (k,), losses {name: (k,)}."""
        if len(steps) == 0:
            return
        steps = np.asarray(steps, dtype=np.float64)
        for name, vals in losses.items():
            vals = np.asarray(vals, dtype=np.float64)
            if len(vals) == 0:
                continue
            st = steps[-len(vals):] if len(vals) <= len(steps) else np.arange(len(vals), dtype=np.float64)
            t = self.terms.get(name)
            if t is None:
                t = self.terms[name] = Term()
            t.steps.extend(st)
            t.raw.extend(vals)
            t.count.extend(np.ones(len(vals)))
            sm = self._ema(t, vals)
            t.smooth.extend(sm)
            if t.positive and not (vals > 0).all():
                t.positive = False
                self._refresh_shown()      # linear from now on
            else:
                t.shown_raw.extend(self._map(vals))
                t.shown_smooth.extend(self._map(sm))
            if len(t.raw) > self.MAX_POINTS:
                compact(t, self._map, target=int(0.75 * self.MAX_POINTS))   # one pass, even for a huge append
        self.dirty = True

    def on_snapshot(self, snap):
        self.append(snap.loss_steps, snap.losses)
        if snap.diverged and snap.message != self._message:
            self._message = snap.message
            self.status.setText("⚠ " + snap.message)
            self.status.setVisible(True)
            self.dirty = True

    def _ema(self, t: Term, vals):
        """Bias-corrected exponential moving average, continued from the filter state:
        m_k = a m_(k-1) + (1 - a) x_k, m_0 = 0;  s_k = m_k / (1 - a^k)  (as Adam's moments)."""
        a = self.alpha
        if a <= 0:
            return vals
        if t.zi is None:
            t.zi, t.k = np.zeros(1), 0
        m, t.zi = lfilter([1 - a], [1, -a], vals, zi=t.zi)
        k = t.k + np.arange(1, len(vals) + 1)
        t.k += len(vals)
        with np.errstate(under="ignore"):
            return m / (1 - np.power(a, k))

    def _use_log(self):
        return self.log and all(t.positive for t in self.terms.values())

    def _map(self, v):
        return np.log10(np.maximum(v, 1e-300)) if self._use_log() else v

    def _refresh_shown(self):
        for t in self.terms.values():
            t.peaks_raw.clear()
            t.peaks_smooth.clear()
            t.shown_raw.clear()
            t.shown_raw.extend(self._map(t.raw.v))
            t.shown_smooth.clear()
            t.shown_smooth.extend(self._map(t.smooth.v))
        self.dirty = True

    def _set_alpha(self, v):
        self.alpha = v / 1000.0
        for t in self.terms.values():
            t.zi = None
            t.smooth.clear()
            if len(t.raw):
                t.smooth.extend(self._ema(t, t.raw.v))
        self._refresh_shown()
        self._update_label()

    def _update_label(self):
        self.smooth_label.setText(f"{self.alpha:.3f}")

    def _set_log(self, on):
        self.log = on
        self._refresh_shown()

    def _relayout(self, *a):
        self.dirty = True

    # ------------------------------------------------------------ drawing
    def draw(self) -> bool:
        if self.dirty and time.perf_counter() - self._last_draw < 1.0 / self.MAX_HZ:
            return False      # a 1M-point redraw 10 times a second is plenty
        return super().draw()

    def _draw(self):
        self._last_draw = time.perf_counter()
        use_log = self._use_log()
        # only on a change: each call re-renders the axis and re-lays out the plot (its width
        # and label), so the whole view repainted every draw, 8-20 ms while training
        left = self.pi.getAxis("left")
        if left.logMode != use_log:
            left.setLogMode(use_log)
        title = axis_title(list(self.terms), use_log)
        if left.labelText != title:
            self.pi.setLabel("left", title)
        can_log = all(t.positive for t in self.terms.values())
        if can_log != self.log_box.isEnabled():
            # a term <= 0 (a negative log-likelihood of a density above 1, say) rules the log
            # scale out: the box shows it off, not ticked and greyed; the choice comes back after
            self.log_box.blockSignals(True)
            self.log_box.setChecked(self.log and can_log)
            self.log_box.blockSignals(False)
            self.log_box.setEnabled(can_log)
            self.log_box.setToolTip("Log-scale loss axis" if can_log else
                                    "Off: a term is ≤ 0, which a log scale cannot show")
        show_raw = self.raw_box.isChecked() and self.alpha > 0
        for i, (name, t) in enumerate(self.terms.items()):
            if name not in self.curves:
                c = theme.series_color(i)
                raw = pg.PlotDataItem(pen=pg.mkPen(*c, 70), skipFiniteCheck=True)
                sm = pg.PlotDataItem(pen=pg.mkPen(*c, 255, width=2), name=name, skipFiniteCheck=True)
                self.pi.addItem(raw)
                self.pi.addItem(sm)
                self.curves[name] = (raw, sm)
            raw, sm = self.curves[name]
            if len(t.steps) == 0:
                continue
            if show_raw:
                raw.setData(*self._series(t, t.shown_raw.v, t.peaks_raw))
                raw.setVisible(True)
            else:
                raw.setVisible(False)
            sm.setData(*self._series(t, t.shown_smooth.v, t.peaks_smooth))
        has = any(len(t.steps) for t in self.terms.values())
        self.empty.setVisible(not has)
        self.legend.setVisible(has)
        vb = self.pi.getViewBox()
        if self.follow and has:
            self._fit(vb, show_raw)
        if self._message:
            (x0, x1), (y0, y1) = vb.viewRange()
            self.status.setPos(x0, y0)
        if self._hover_step is not None:
            self._show_hover(self._hover_step)

    def _series(self, t: Term, values, peaks: Peaks):
        """Arrays to draw: the incremental peak pyramid while the view follows the whole
        history; the visible slice, decimated on the fly, when the user has zoomed in."""
        steps = t.steps.v
        vb = self.pi.getViewBox()
        if self.follow or len(values) <= Peaks.SMALL:
            return peaks.arrays(steps, values)
        (x0, x1), _ = vb.viewRange()
        i0 = max(int(np.searchsorted(steps, x0)) - 1, 0)
        i1 = min(int(np.searchsorted(steps, x1)) + 1, len(steps))
        if i1 - i0 > 0.5 * len(steps):
            return peaks.arrays(steps, values)
        return decimate(steps[i0:i1], values[i0:i1])

    def _fit(self, vb, show_raw):
        """The whole history in view. The range moves in jumps (15% head-room on the right, y
        re-fitted only when the curves leave it or shrink well inside it), so that most
        redraws leave the axes alone: a new range means new ticks and a repaint of the axes."""
        x0 = min(t.steps.v[0] for t in self.terms.values() if len(t.steps))
        x1 = max(t.steps.v[-1] for t in self.terms.values() if len(t.steps))
        live = [t for t in self.terms.values() if len(t.steps)]
        sm = [t.shown_smooth.v for t in live]
        lo = min(float(np.min(y)) for y in sm)     # O(N), ~1 ms for 1M points
        hi = max(float(np.max(y)) for y in sm)
        if show_raw:
            # the raw band, without its rare spikes: one exploding batch (a flow's, a GAN's) would
            # otherwise flatten every curve into a line; quantiles of a <= 20k-point subsample
            for t in live:
                r = t.shown_raw.v
                r = r[:: max(1, len(r) // 20000)]
                r = r[np.isfinite(r)]
                if len(r):
                    q0, q1 = np.quantile(r, [0.002, 0.998])
                    lo, hi = min(lo, float(q0)), max(hi, float(q1))
        (vx0, vx1), (vy0, vy1) = vb.viewRange()
        span = max(x1 - x0, 1.0)
        xr = (vx0, vx1)
        if x1 > vx1 or x0 < vx0 or (x1 - x0) < 0.6 * (vx1 - vx0) or getattr(self, "_fresh", True):
            xr = (x0 - 0.01 * span, x1 + 0.15 * span)
        pad = 0.05 * (hi - lo) if hi > lo else 0.5
        yr = (vy0, vy1)
        if lo < vy0 or hi > vy1 or (hi - lo) < 0.6 * (vy1 - vy0) or getattr(self, "_fresh", True):
            yr = (lo - pad, hi + pad)
        self._fresh = False
        if (xr, yr) != ((vx0, vx1), (vy0, vy1)):
            set_range_now(self.pi, xRange=xr, yRange=yr, padding=0, disableAutoRange=False)

    def _manual_range(self, *a):
        self.follow = False

    def _auto_button(self, *a):
        vb = self.pi.getViewBox()
        if any(vb.autoRangeEnabled()):       # the "A" button: follow the history again
            vb.disableAutoRange()
            self.follow = True
            self._fresh = True
            self.dirty = True

    def _range_changed(self, *a):
        if not self.follow:
            self.dirty = True       # zoomed or panned: re-slice the history at the new range

    # ------------------------------------------------------------ hover
    def _mouse(self, evt):
        pos = evt[0]
        vb = self.pi.getViewBox()
        if not self.pi.sceneBoundingRect().contains(pos) or not self.terms:
            self.vline.setVisible(False)
            self.hover.setVisible(False)
            self._hover_step = None
            return
        x = vb.mapSceneToView(pos).x()
        self._hover_step = x
        self._show_hover(x)

    def _show_hover(self, x):
        lines = []
        step = None
        for name, t in self.terms.items():
            if not len(t.steps):
                continue
            s = t.steps.v
            k = int(np.clip(np.searchsorted(s, x), 0, len(s) - 1))
            if k > 0 and abs(s[k - 1] - x) < abs(s[k] - x):
                k -= 1
            step = s[k]
            lines.append(f"{name}: {t.raw.v[k]:.4g}" + (f"  (smoothed {t.smooth.v[k]:.4g})" if self.alpha > 0 else ""))
        if step is None:
            return
        self.vline.setPos(step)
        self.vline.setVisible(True)
        self.hover.setText(f"step {int(step)}\n" + "\n".join(lines))
        (x0, x1), (y0, y1) = self.pi.getViewBox().viewRange()
        self.hover.setPos(x1, y1)
        self.hover.setVisible(True)

    def value_at_end(self, name="loss"):
        t = self.terms.get(name)
        return None if t is None or not len(t.raw) else float(t.raw.v[-1])


# training terms that are not losses: a GAN's discriminator averages E[D(x)], E[D(G(z))]
PROBABILITY_TERMS = {"d_real": "D(x)", "d_fake": "D(G(z))"}


def axis_title(terms: list[str], log: bool) -> str:
    """The y axis names what is plotted: losses, and D(x) averages when a GAN logs them."""
    probs = [PROBABILITY_TERMS[t] for t in terms if t in PROBABILITY_TERMS]
    title = "loss" + (f", mean {' and '.join(probs)}" if probs else "")
    return title + (" (log scale)" if log else "")
