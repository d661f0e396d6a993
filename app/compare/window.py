"""The comparison window: a row of run columns (field, particles, samples per run, axes linked),
the losses of every run in one plot, a shared sampler-time scrubber and the live table.
Play / Pause / Step / Reset act on all runs; "Compare with…" adds a run; each column can be
changed or removed. The controller (controller.py) owns the runs; this file lays out and draws."""
from __future__ import annotations

import logging
import os
import time

from PySide6 import QtCore, QtGui, QtWidgets

from engines.compare import Scrubber
from engines.compare.align import marginal_kind
from engines.compare.spec import MAX_RUNS, Comparison

from .. import gcguard
from ..frame_turns import TakeTurns, draw_guarded
from ..window_parts import lesson_html, peak_rss_mb, start_live_loop
from .controller import CompareController
from .views import LossOverlay, SharedScrubber, TableView
from ..warning_box import show_warning

log = logging.getLogger(__name__)
TABLE_EVERY_S = 0.5
DEFAULT_SIZE = (1600, 1000)


class CompareWindow(QtWidgets.QMainWindow):
    def __init__(self, comp: Comparison, autostart: bool = False, view: dict | None = None, data=None, parent=None,
                 runs=None):
        super().__init__(parent)
        title = comp.title or " vs ".join(comp.labels)
        self.setWindowTitle(f"Compare: {title}")
        self.resize(*DEFAULT_SIZE)
        self._msgbox = None
        self._frame_times: list[float] = []
        self.frames = 0                    # frame-loop passes in which a panel redrew
        self.ticks = 0                     # frame-loop passes (the loop's cadence: 30 a second unless the GUI is late)
        self._turns = TakeTurns()          # plots that do not animate redraw one a frame, in turn
        self._last_table = 0.0
        self._scrubber = None
        self._scrub_key = None
        self.fps = 0.0
        gcguard.acquire()
        self._gc_held = True

        self.columns_box = QtWidgets.QWidget()
        self.columns_layout = QtWidgets.QGridLayout(self.columns_box)
        self.columns_layout.setContentsMargins(0, 0, 0, 0)
        self.losses = LossOverlay()
        self.scrub = SharedScrubber()
        self.scrub.moved.connect(self.scrub_to)
        self.table_view = TableView()
        right = QtWidgets.QWidget()
        rl = QtWidgets.QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addWidget(self.scrub)
        rl.addWidget(self.table_view, 1)
        bottom = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        bottom.addWidget(self.losses)
        bottom.addWidget(right)
        bottom.setSizes([600, 1000])
        self.lesson = QtWidgets.QLabel()
        self.lesson.setWordWrap(True)
        self.lesson.setTextFormat(QtCore.Qt.TextFormat.RichText)
        self.lesson.setVisible(bool(comp.lesson))
        if comp.lesson:
            self.lesson.setText(lesson_html(comp.title, comp.lesson.replace("\n", " ")))
        split = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        split.addWidget(self.columns_box)
        split.addWidget(bottom)
        split.setSizes([720, 280])
        central = QtWidgets.QWidget()
        cl = QtWidgets.QVBoxLayout(central)
        cl.setContentsMargins(4, 4, 4, 4)
        cl.addWidget(self.lesson)
        cl.addWidget(split, 1)
        self.setCentralWidget(central)
        self._build_toolbar(comp)

        self.ctl = CompareController(self, comp, playing=autostart, view=view, data=data, runs=runs)
        app = QtWidgets.QApplication.instance()
        if app is not None:                  # threads end before the application does
            app.aboutToQuit.connect(self.shutdown)
        start_live_loop(self)
        self.show_playing(self.ctl.playing)

    # ================================================================ toolbar
    def _build_toolbar(self, comp):
        tb = self.addToolBar("Comparison")
        tb.setMovable(False)
        self.play_act = tb.addAction("Play")
        self.play_act.setCheckable(True)
        self.play_act.setShortcut(QtGui.QKeySequence(QtCore.Qt.Key.Key_Space))
        self.play_act.setToolTip("Play / Pause every run (Space)")
        self.play_act.toggled.connect(lambda on: self.ctl.set_playing(on))
        step = tb.addAction("Step")
        step.setToolTip("One training step of every run")
        step.triggered.connect(lambda: self.ctl.step_once(1))
        reset = tb.addAction("Reset")
        reset.setToolTip("Start every run again from step 0 (same seed, same data)")
        reset.triggered.connect(lambda: self.ctl.reset_all())
        tb.addSeparator()
        sample = tb.addAction("Sample all")
        sample.setToolTip("Run every run's sampler now from the same starting noise x_T")
        sample.triggered.connect(lambda: self.ctl.sample_all())
        self.add_act = tb.addAction("Compare with…")
        self.add_act.setToolTip("Add a run: the base run with one thing changed, e.g. ddpm:schedule=linear, "
                                "ncsn, or sampler=ddim:sampler.steps=10")
        self.add_act.triggered.connect(self._add_dialog)
        export = tb.addAction("Export CSV…")
        export.triggered.connect(self.table_view._export_dialog)
        tb.addSeparator()
        tb.addWidget(QtWidgets.QLabel("  fair share: "))
        self.fair_box = QtWidgets.QComboBox()
        self.fair_box.addItem("equal steps", "steps")
        self.fair_box.addItem("equal training time", "time")
        self.fair_box.setCurrentIndex(0 if comp.fair == "steps" else 1)
        self.fair_box.setToolTip("How the runs share the CPU: each gets the same number of training steps "
                                 "(fast runs wait for slow ones), or the same training wall time")
        self.fair_box.currentIndexChanged.connect(lambda *_: self.ctl.set_fair(self.fair_box.currentData()))
        tb.addWidget(self.fair_box)
        self.step_label = QtWidgets.QLabel("")
        tb.addWidget(self.step_label)

    def show_playing(self, on: bool):
        self.play_act.blockSignals(True)
        self.play_act.setChecked(on)
        self.play_act.setText("Pause" if on else "Play")
        self.play_act.blockSignals(False)

    def _add_dialog(self):
        if len(self.ctl.runs) >= MAX_RUNS:
            self.show_error("Compare with…", f"a comparison holds at most {MAX_RUNS} runs; remove one first")
            return
        text, ok = QtWidgets.QInputDialog.getText(
            self, "Compare with…", "A run to add (family, or family:key=value, e.g. ddpm:schedule=linear):")
        if ok and text.strip():
            self.ctl.add_run(text.strip())

    def _change_dialog(self, column):
        rs = next((r for r in self.ctl.runs if r.column is column), None)
        if rs is None:
            return
        text, ok = QtWidgets.QInputDialog.getText(self, f"Change {rs.spec.label}", "This run becomes:",
                                                  text=rs.spec.item.text)
        if ok and text.strip():
            self.ctl.change_run(rs, text.strip())

    def _remove(self, column):
        rs = next((r for r in self.ctl.runs if r.column is column), None)
        if rs is not None:
            self.ctl.remove_run(rs)

    # ================================================================ the controller's callbacks
    def _relayout(self):
        cols = [r.column for r in self.ctl.runs] if hasattr(self, "ctl") else []
        for c in cols:
            self.columns_layout.removeWidget(c)
        stacked = len(cols) > 2           # 1-2 runs: a run per row; 3-4 runs: a run per column
        for i, c in enumerate(cols):
            c.set_stacked(stacked)
            self.columns_layout.addWidget(c, 0 if stacked else i, i if stacked else 0)

    def run_added(self, rs):
        self.columns_layout.addWidget(rs.column, 0, 0)
        QtCore.QTimer.singleShot(0, self._relayout)
        rs.column.changeRequested.connect(self._change_dialog)
        rs.column.removeRequested.connect(self._remove)
        self.losses.set_run(rs.key, rs.spec.label, rs.column.color)
        self._scrub_key = None

    def run_changed(self, rs):
        self.losses.set_run(rs.key, rs.spec.label, rs.column.color)
        self._scrub_key = None

    def run_removed(self, rs):
        self.columns_layout.removeWidget(rs.column)
        rs.column.hide()
        rs.column.deleteLater()
        self._relayout()
        self.losses.remove_run(rs.key)
        self._scrub_key = None

    def run_ready(self, rs):
        """Link the new run's spatial plots to the first run's (one dataset: one view box)."""
        first = self.ctl.runs[0]
        if rs.info.is_image or rs is first or first.info is None or first.info.is_image:
            return
        for mine, theirs in zip(rs.column.plots(), first.column.plots()):
            mine.setXLink(theirs)
            mine.setYLink(theirs)

    def trajectory_arrived(self, rs):
        """A new trajectory plays back on its own; a scrubber away from 0 holds every run at its
        position. The label names each run's own sampler time either way."""
        self._scrub_key = None
        p = self.scrub.position()
        if p > 0:
            self.scrub_to(p)
        else:
            self.scrub.show_labels(self.scrubber(), [r.spec.label for r in self.ctl.runs], p)

    # ================================================================ the shared scrubber
    def scrubber(self) -> Scrubber:
        key = tuple(id(r.column.particles.traj) for r in self.ctl.runs)
        if key != self._scrub_key:
            self._scrub_key = key
            self._scrubber = Scrubber([r.column.particles.traj for r in self.ctl.runs],
                                      [marginal_kind(r.spec.cfg) for r in self.ctl.runs])
        return self._scrubber

    def scrub_to(self, p: float):
        sc = self.scrubber()
        for rs, f in zip(self.ctl.runs, sc.frames(p)):
            if f is not None:
                rs.column.particles._scrubbed(f)
        self.scrub.show_labels(sc, [r.spec.label for r in self.ctl.runs], p)

    # ================================================================ frame loop
    def _frame(self):
        t0 = time.perf_counter()
        self.ticks += 1
        self.ctl.poll()
        drew = False
        # every run's particles animate each frame; the fields, samples and the loss overlay
        # redraw one a frame, in turn (app/frame_turns.py): 4 runs' plots in one paint pass
        # made a frame 50+ ms
        turns = {}
        for i, rs in enumerate(self.ctl.runs):
            for name, panel in zip(rs.column.PANELS, rs.column.panels()):
                if name == "particles":
                    drew |= self._draw_guarded(rs.spec.label, panel)
                else:
                    turns[(i, name)] = (rs.spec.label, panel)
        turns["losses"] = ("the loss overlay", self.losses)
        drew |= self._turns.draw(list(turns), lambda k: self._draw_guarded(*turns[k]))
        if t0 - self._last_table >= TABLE_EVERY_S:
            self._last_table = t0
            self.table_view.show_table(self.ctl.table(), [r.column.color for r in self.ctl.runs])
            self.step_label.setText("   steps: " + ", ".join(f"{r.step:,}" for r in self.ctl.runs))
            ft = self._frame_times
            self.fps = (len(ft) - 1) / (ft[-1] - ft[0]) if len(ft) > 2 and ft[-1] > ft[0] else 0.0
        if drew:
            self.frames += 1
            self._frame_times.append(t0)
            while self._frame_times and self._frame_times[0] < t0 - 2.0:
                self._frame_times.pop(0)

    def _draw_guarded(self, label: str, panel) -> bool:
        return draw_guarded(panel, lambda e: self.ctl.errors.append((f"drawing {label}", str(e))))

    # ================================================================ window surface (main.py, tests)
    def show_error(self, title: str, text: str):
        if hasattr(self, "ctl"):
            self.ctl.errors.append((title, text))
        log.warning("%s: %s", title, text)
        self._msgbox = show_warning(self, title, text, self._msgbox)

    def screenshot(self, path: str) -> bool:
        self.table_view.show_table(self.ctl.table(), [r.column.color for r in self.ctl.runs])
        return self.grab().save(path, "PNG")

    def run_stats(self) -> dict:
        elapsed = time.perf_counter() - self._t_open
        out = dict(runs=len(self.ctl.runs))
        for i, rs in enumerate(self.ctl.runs):
            q = rs.quality
            out[f"run{i}_quality_x_iid"] = "nan" if q is None else round(q, 3)
            out[f"run{i}_steps"] = rs.step
        out.update(fps=round(self.frames / elapsed, 1) if elapsed > 0 else 0.0,
                   ui_lateness_p99_ms=round(self.heartbeat.percentile(99), 2),
                   peak_rss_mb=round(peak_rss_mb(), 1), dataset=os.path.basename(str(self.ctl.comp.base.dataset)),
                   errors=len([e for e in self.ctl.errors if e[0] != "Bad setting"]))
        return out

    def shutdown(self, timeout_s: float = 1.0) -> bool:
        self.frame_timer.stop()
        self.heartbeat.stop()
        ok = self.ctl.shutdown(timeout_s)
        if self._gc_held:
            self._gc_held = False
            gcguard.release()
        return ok

    def closeEvent(self, ev):
        self.shutdown()
        super().closeEvent(ev)


def compare_with_dialog(main_win) -> "CompareWindow | None":
    """"Compare with…" from the single-run window: its current run next to the same run with
    one thing changed (an item typed by the user), in a comparison window of their own."""
    from engines.compare import make
    from engines.config import ConfigError
    try:
        cfg = main_win.current_config()
    except ConfigError as e:
        main_win.show_error("Compare with…", str(e))
        return None
    text, ok = QtWidgets.QInputDialog.getText(
        main_win, "Compare with…", f"The current run ({cfg.family}) next to the same run with one change, e.g. "
        f"schedule=linear, sampler=ddim:sampler.steps=10, seed=1, or another family (ncsn):", text="seed=1")
    if not ok or not text.strip():
        return None
    try:
        comp = make(cfg, [cfg.family, text.strip()])
    except ConfigError as e:
        main_win.show_error("Compare with…", str(e))
        return None
    win = CompareWindow(comp, autostart=bool(getattr(main_win, "playing", False)), data=getattr(main_win, "data", None))
    keep = main_win.__dict__.setdefault("_comparisons", [])
    keep.append(win)
    win.show()
    return win


def open_preset(main_win, name: str) -> "CompareWindow | None":
    """A lesson with a [compare] table opens as a comparison window; None for a single-run lesson."""
    from engines.compare import from_preset

    from .. import presets
    p = presets.load(name)
    if not p.get("compare"):
        return None
    win = CompareWindow(from_preset(p), autostart=bool(getattr(main_win, "playing", False)), view=p.get("view"))
    main_win.__dict__.setdefault("_comparisons", []).append(win)
    win.show()
    return win


def open_branch_comparison(main_win, msg) -> "CompareWindow | None":
    """Branch from here (issue 11): the run as it was when branched ("original (step N)") next
    to the branch ("branch from step k"), both continuing their own engines.run.Run, in a
    comparison window of their own, paused. `msg`: engines.messages.Branched with `original`."""
    from engines.compare import make
    from engines.config import ConfigError
    cfg = msg.run.cfg
    labels = [f"original (step {msg.original.step:,})", f"branch from step {msg.step:,}"]
    try:
        comp = make(cfg, [cfg.family, cfg.family], labels=labels)
    except ConfigError as e:
        main_win.show_error("Branch from here", str(e))
        return None
    win = CompareWindow(comp, data=msg.run.data, runs=[msg.original, msg.run])
    main_win.__dict__.setdefault("_comparisons", []).append(win)
    win.show()
    return win
