"""Schedule inspector: noise schedules overlaid on one normalized time axis (the run's own
highlighted), its warnings with their fix, the forward process of two schedules side by side at
a time t, the loss per t-bin as a heat strip over training, and a custom schedule typed as a
formula or as points. Everything drawn comes from engines.inspector (reset: the run's RunInfo;
on_message: InspectorExtras with the loss strip)."""
from __future__ import annotations

import html

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from engines.inspector import InspectorExtras, custom_spec, forward_pair, inspect_schedule
from engines.schedule_inspect import QUANTITIES, ScheduleError, schedule_curves

from .. import theme
from .base import Panel, plot_widget

CURVES = (("alpha_bar", "alpha-bar_t", False), ("log_snr", "log-SNR", False),
          ("beta", "beta_t", True), ("sigma", "sigma(t) = sqrt((1 - abar) / abar)", True))
FORWARD_POINTS = 1500


class ScheduleInspectorPanel(Panel):
    title = "Schedule inspector"

    def __init__(self, parent=None):
        super().__init__(parent)
        self.report = None
        self.custom: list = []                 # ScheduleCurves the user added
        self.strip = None
        self.t = 1.0
        # ---- warnings
        self.warnings = QtWidgets.QLabel("")
        self.warnings.setWordWrap(True)
        self.warnings.setTextFormat(QtCore.Qt.TextFormat.RichText)
        # ---- curves, 2 x 2, one x axis: normalized t
        self.curve_view = theme.fast_view(pg.GraphicsLayoutWidget())
        self.curve_view.setMinimumSize(300, 260)
        self.curve_plots = {}
        for i, (key, name, log) in enumerate(CURVES):
            p = self.curve_view.addPlot(row=i // 2, col=i % 2)
            theme.style_plot(p, name, "normalized time t" if i >= 2 else "")
            p.setLogMode(y=log)
            self.curve_plots[key] = p
        self.curve_plots["log_snr"].setXLink(self.curve_plots["alpha_bar"])
        self.legend = QtWidgets.QLabel("")          # one line of coloured names (an in-plot legend hides curves)
        self.legend.setWordWrap(True)
        self.legend.setTextFormat(QtCore.Qt.TextFormat.RichText)
        # ---- forward process, two schedules side by side
        self.fwd_a = plot_widget("", aspect=True)
        self.fwd_b = plot_widget("", aspect=True)
        self.fwd_b.setXLink(self.fwd_a)
        self.fwd_b.setYLink(self.fwd_a)
        self.scatter_a = pg.ScatterPlotItem(size=2, pen=None, brush=pg.mkBrush(*theme.SAMPLES[:3], 160))
        self.scatter_b = pg.ScatterPlotItem(size=2, pen=None, brush=pg.mkBrush(*theme.SAMPLES[:3], 160))
        self.fwd_a.addItem(self.scatter_a)
        self.fwd_b.addItem(self.scatter_b)
        self.other = QtWidgets.QComboBox()
        self.other.currentIndexChanged.connect(self._forward_changed)
        self.slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.slider.setRange(0, 1000)
        self.slider.setValue(1000)
        self.slider.valueChanged.connect(self._t_changed)
        self.t_label = QtWidgets.QLabel("t = 1.000")
        # ---- loss per t-bin over training
        self.strip_plot = plot_widget("loss per t-bin over training (log10 mean loss)", "normalized time t",
                                      "training step")
        self.strip_image = pg.ImageItem()
        self.strip_image.setColorMap(pg.colormap.get("viridis"))
        self.strip_plot.addItem(self.strip_image)
        self.strip_note = pg.TextItem("no loss per t yet: train a noise-based family", color=theme.FG)
        self.strip_plot.addItem(self.strip_note)
        self.strip_relative = QtWidgets.QCheckBox("relative to each bin's first row")
        self.strip_relative.setToolTip("log10(loss / the bin's first recorded loss): below 0 where that noise level improved")
        self.strip_relative.toggled.connect(lambda _: self._draw_strip())
        # ---- a custom schedule
        self.kind = QtWidgets.QComboBox()
        self.kind.addItems(["formula", "points"])
        self.quantity = QtWidgets.QComboBox()
        self.quantity.addItems(list(QUANTITIES))
        self.text = QtWidgets.QLineEdit("cos(pi / 2 * t) ** 2")
        self.text.setPlaceholderText("formula in t (and T), or points t:value, t:value")
        self.steps = QtWidgets.QSpinBox()
        self.steps.setRange(2, 5000)
        self.steps.setValue(100)
        self.add = QtWidgets.QPushButton("Add")
        self.add.clicked.connect(self._add_custom)
        self.text.returnPressed.connect(self._add_custom)
        self.manage = QtWidgets.QPushButton("Manage…")
        self.manage.setToolTip("list and remove the custom schedules")
        self.manage.clicked.connect(lambda: self.edit_dialog().open())
        self.custom_error = QtWidgets.QLabel("")
        self.custom_error.setObjectName("hint")
        self.custom_error.setWordWrap(True)
        self._layout()

    def _layout(self):
        fwd = QtWidgets.QWidget()
        fl = QtWidgets.QGridLayout(fwd)
        fl.setContentsMargins(0, 0, 0, 0)
        fl.addWidget(self.fwd_a, 0, 0)
        fl.addWidget(self.fwd_b, 0, 1)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(QtWidgets.QLabel("forward process at"))
        row.addWidget(self.slider, 1)
        row.addWidget(self.t_label)
        row.addWidget(QtWidgets.QLabel("right:"))
        row.addWidget(self.other)
        fl.addLayout(row, 1, 0, 1, 2)
        edit = QtWidgets.QGroupBox("custom schedule")
        el = QtWidgets.QGridLayout(edit)
        el.addWidget(self.kind, 0, 0)
        el.addWidget(QtWidgets.QLabel("of"), 0, 1)
        el.addWidget(self.quantity, 0, 2)
        el.addWidget(QtWidgets.QLabel("steps"), 0, 3)
        el.addWidget(self.steps, 0, 4)
        el.addWidget(self.text, 1, 0, 1, 4)
        el.addWidget(self.add, 1, 4)
        el.addWidget(self.custom_error, 2, 0, 1, 4)
        el.addWidget(self.manage, 2, 4)
        grid = QtWidgets.QGridLayout(self)
        grid.setContentsMargins(4, 4, 4, 4)
        curves = QtWidgets.QWidget()
        cl = QtWidgets.QVBoxLayout(curves)
        cl.setContentsMargins(0, 0, 0, 0)
        cl.addWidget(self.curve_view, 1)
        cl.addWidget(self.legend)
        grid.addWidget(self.warnings, 0, 0, 1, 2)
        grid.addWidget(curves, 1, 0)
        grid.addWidget(fwd, 1, 1)
        strip = QtWidgets.QWidget()
        sl = QtWidgets.QVBoxLayout(strip)
        sl.setContentsMargins(0, 0, 0, 0)
        sl.addWidget(self.strip_plot, 1)
        sl.addWidget(self.strip_relative)
        grid.addWidget(strip, 2, 0)
        grid.addWidget(edit, 2, 1, QtCore.Qt.AlignmentFlag.AlignTop)
        grid.setRowStretch(1, 3)
        grid.setRowStretch(2, 2)
        grid.setColumnStretch(0, 3)
        grid.setColumnStretch(1, 2)

    # ------------------------------------------------------------------ messages
    def reset(self, info):
        """The report is computed at the next draw (tens of ms for the data's geometry and the
        prior KL), so a hidden tab costs nothing at every new run."""
        super().reset(info)
        self._pending, self.strip = info, None

    def _ensure_report(self):
        info, self._pending = getattr(self, "_pending", None), None
        if info is None:
            return
        preview = None if info.is_image else info.preview
        self.set_report(inspect_schedule(info.schedule, preview, label=f"{info.family} (this run)"))

    def set_report(self, report):
        """Show an InspectorReport (engines.inspector.inspect_schedule)."""
        self.report = report
        self.other.blockSignals(True)
        self.other.clear()
        self.other.addItems([c.label for c in self._others()])
        self.other.setCurrentIndex(0)
        self.other.blockSignals(False)
        self.dirty = True

    def on_message(self, msg):
        if isinstance(msg, InspectorExtras) and msg.strip is not None:
            self.set_strip(msg.strip)

    def set_strip(self, strip):
        self.strip = strip
        self.dirty = True

    def _others(self) -> list:
        r = self.report
        return list(self.custom) + (list(r.curves) if r is not None else [])

    # ------------------------------------------------------------------ controls
    def _t_changed(self, v):
        self.t = v / 1000
        self.t_label.setText(f"t = {self.t:.3f}")
        self._draw_forward()

    def _forward_changed(self, _i):
        self._draw_forward()

    def _add_custom(self):
        self._ensure_report()
        try:
            spec = custom_spec(self.kind.currentText(), self.text.text(), self.quantity.currentText(),
                               self.steps.value())
            curves = schedule_curves(spec)
        except ScheduleError as e:
            self.custom_error.setText(str(e))
            return
        self.custom_error.setText("")
        self.custom.insert(0, curves)
        self.other.insertItem(0, curves.label)
        self.other.setCurrentIndex(0)
        self.dirty = True

    def edit_dialog(self) -> QtWidgets.QDialog:
        """The custom schedules in a list, each removable (the curves and the right-hand forward
        process follow)."""
        dlg = QtWidgets.QDialog(self)
        dlg.setWindowTitle("Custom schedules")
        lst = QtWidgets.QListWidget()
        lst.addItems([c.label for c in self.custom])
        remove = QtWidgets.QPushButton("Remove")
        close = QtWidgets.QPushButton("Close")

        def drop():
            row = lst.currentRow()
            if 0 <= row < len(self.custom):
                del self.custom[row]
                lst.takeItem(row)
                self.other.removeItem(row)
                self.dirty = True
        remove.clicked.connect(drop)
        close.clicked.connect(dlg.accept)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(remove)
        row.addStretch(1)
        row.addWidget(close)
        lay = QtWidgets.QVBoxLayout(dlg)
        lay.addWidget(lst)
        lay.addLayout(row)
        dlg.list, dlg.remove = lst, remove
        return dlg

    # ------------------------------------------------------------------ drawing
    def _draw(self):
        self._ensure_report()
        self._draw_warnings()
        self._draw_curves()
        self._draw_forward()
        self._draw_strip()

    def _draw_warnings(self):
        r = self.report
        if r is None:
            self.warnings.setText("")
            return
        if not r.warnings:
            text = r.message or (f"<b>{html.escape(r.run_curves.label)}</b>: no warning for this data "
                                 "(prior reached, sigma range covers the data, enough levels)")
            self.warnings.setText(text)
            return
        items = []
        for w in r.warnings:
            items.append(f"<p style='margin:2px'><b style='color:#ff6b6b'>&#9888; {html.escape(w.title)}</b>: "
                         f"{html.escape(w.detail)}.<br><b>Fix:</b> {html.escape(w.fix)}.</p>")
        self.warnings.setText("".join(items))

    def _draw_curves(self):
        """One item per (schedule, curve), kept between runs: the standard schedules are the same
        objects every time, so a new run re-plots only its own curve (item creation dominates)."""
        r = self.report
        wanted = []                                        # (ScheduleCurves, pen) in drawing order
        names = []
        if r is not None:
            for i, c in enumerate(self._others()):
                color = theme.series_color(i)
                wanted.append((c, pg.mkPen(color, width=1.2)))
                names.append(f"<span style='color:{pg.mkColor(color).name()}'>&#9473; {html.escape(c.label)}</span>")
            if r.run_curves is not None:
                wanted.append((r.run_curves, pg.mkPen(theme.FG, width=3.5)))
                names.insert(0, f"<b>&#9473;&#9473; {html.escape(r.run_curves.label)}</b>")
        items = getattr(self, "_curve_items", {})          # id(curves) -> (curves, {key: item})
        keep = {id(c) for c, _ in wanted}
        for k in [k for k in items if k not in keep]:
            for key, it in items.pop(k)[1].items():
                self.curve_plots[key].removeItem(it)
        for z, (c, pen) in enumerate(wanted):
            if id(c) not in items:
                items[id(c)] = (c, self._plot_curves(c, pen))
            for it in items[id(c)][1].values():
                it.setPen(pen)                              # colours follow the list order
                it.setZValue(z)                             # the run's curve last: on top
        self._curve_items = items
        self.legend.setText(" &nbsp; ".join(names))

    def _plot_curves(self, c, pen) -> dict:
        out = {}
        for key, _, log in CURVES:
            y = getattr(c, key)
            ok = np.isfinite(y) & ((y > 0) if log else True)
            out[key] = self.curve_plots[key].plot(c.t[ok], y[ok], pen=pen)
        return out

    def _draw_forward(self):
        r = self.report
        others = self._others()
        if r is None or r.data is None or not others:
            self.scatter_a.setData([], [])
            self.scatter_b.setData([], [])
            return
        a = r.run_curves or others[0]
        b = others[min(max(self.other.currentIndex(), 0), len(others) - 1)]
        fa, fb = forward_pair(a, b, r.data[:FORWARD_POINTS], self.t)
        self.scatter_a.setData(fa.x[:, 0], fa.x[:, 1])
        self.scatter_b.setData(fb.x[:, 0], fb.x[:, 1])
        for plot, f, c in ((self.fwd_a, fa, a), (self.fwd_b, fb, b)):
            name = html.escape(c.label if len(c.label) <= 24 else c.label[:23] + "…")
            theme.style_plot(plot.getPlotItem(), f"{name}<br>x_t = {f.alpha:.2g} x0 + {f.std:.2g} z")
        half = max(3.5, 1.2 * float(np.abs(np.concatenate([fa.x, fb.x])).max()))
        self.fwd_a.setRange(xRange=(-half, half), yRange=(-half, half), padding=0)

    def _draw_strip(self):
        s = self.strip
        if s is None or len(s.steps) == 0:
            self.strip_image.clear()
            self.strip_note.setVisible(True)
            return
        self.strip_note.setVisible(False)
        v = s.relative() if self.strip_relative.isChecked() else s.mean_loss                     # (R, B)
        z = np.log10(np.where(np.isfinite(v) & (v > 0), v, np.nan))
        fill = np.nanmin(z) if np.isfinite(z).any() else 0.0
        z = np.where(np.isfinite(z), z, fill)
        self.strip_image.setImage(z, autoLevels=True)
        what = "log10 loss / the bin's first" if self.strip_relative.isChecked() else "log10 mean loss"
        theme.style_plot(self.strip_plot.getPlotItem(), f"loss per t-bin over training ({what})")
        lo = float(s.steps[0]) - (float(s.steps[1] - s.steps[0]) if len(s.steps) > 1 else 1.0)
        self.strip_image.setRect(QtCore.QRectF(0.0, lo, 1.0, max(float(s.steps[-1]) - lo, 1.0)))
        self.strip_plot.autoRange()
