"""The main window as a layout shell: controls on the left, the registry's panels as docks,
toolbar, menus, status bar, and the ~30 Hz frame loop. What happens when a control changes is
the controller's business (app/controller.py); which panels exist is the registry's
(app/panels/registry.py); the run itself lives in a session on a worker thread. The toolbar and
menus are the ToolbarAndMenus mixin (app/shell_menus.py); stateless parts shared with the
comparison window are in app/window_parts.py.
"""
from __future__ import annotations

import logging
import os
import time

from PySide6 import QtCore, QtWidgets

from engines import messages as M
from engines.config import ConfigError

from . import gcguard, presets
from .controller import Controller
from .controls import DatasetPicker, FamilyPicker, SamplerPicker, TrainSettings
from .frame_turns import TakeTurns, draw_guarded
from .live_label import LiveLabel
from .panels import registry
from .shell_menus import ToolbarAndMenus
from .warning_box import show_warning
from .window_parts import WrapLabel, fit_on_laptop, lesson_html, peak_rss_mb, rss_mb, start_live_loop

log = logging.getLogger(__name__)

DEFAULT_SIZE = (1600, 1000)


class MainWindow(ToolbarAndMenus, QtWidgets.QMainWindow):
    def __init__(self, preset: str | None = None, autostart: bool = False, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Generative-model playground")
        self.resize(*DEFAULT_SIZE)
        self._msgbox = None
        self._dock_vis: dict[str, bool] = {}
        self._frame_times: list[float] = []
        self.frames = 0                    # frame-loop passes in which a panel redrew
        self.ticks = 0                     # frame-loop passes (the loop's cadence: 30 a second unless the GUI is late)
        self._last_stats = 0.0
        self._shown_step = -1
        self._turns = TakeTurns()          # panels that do not animate redraw one a frame, in turn
        self.fps = 0.0

        gcguard.acquire()               # cyclic GC on this (GUI) thread only, while the window lives
        self._gc_held = True
        self.ctl = Controller(self)
        self._build_controls()
        self._build_panels()
        self._build_toolbar()
        self._build_menus()
        self._build_status()
        self._default_state = self.saveState()

        start_live_loop(self)

        self.ctl.playing = bool(autostart)
        name = preset or (presets.DEFAULT if presets.DEFAULT in presets.names() else None)
        if name:
            try:
                self.ctl.apply_preset(name, restart=False)
            except (ConfigError, ValueError) as e:
                self.show_error("Could not open the preset", str(e))
                self.ctl.set_family(self.family.current or "ddpm")
        else:
            self.ctl.set_family("ddpm")
        self.ctl.restart("start")
        self.set_playing(self.ctl.playing)

    # ================================================================ the controller's surface
    # (tests, the benchmark and app/main.py speak to the window; the work is the controller's)
    info = property(lambda self: self.ctl.info)
    worker = property(lambda self: self.ctl.worker)
    step = property(lambda self: self.ctl.slot.step)
    playing = property(lambda self: self.ctl.playing)
    errors = property(lambda self: self.ctl.errors)
    cfg = property(lambda self: self.ctl.cfg)
    preset_info = property(lambda self: self.ctl.preset_info)

    @property
    def dataset(self):
        return self.ctl.dataset

    @property
    def data(self):
        return self.ctl.data

    def ready(self) -> bool:
        """A run is current and no newer one is being built (tests and scripts wait for this)."""
        return self.ctl.info is not None and self.ctl.slot.building is None

    def current_config(self):
        return self.ctl.current_config()

    def restart(self, reason: str = "") -> bool:
        return self.ctl.restart(reason)

    def apply_preset(self, name: str, restart: bool = True):
        return self.ctl.apply_preset(name, restart)

    def choose(self, family=None, dataset=None):
        return self.ctl.choose(family, dataset)

    def set_playing(self, on: bool):
        self.ctl.set_playing(on)

    def step_once(self, n: int = 1):
        self.ctl.step_once(n)

    def shutdown(self, timeout_s: float = 1.0) -> bool:
        """Stop every thread (before the application quits); waits at most timeout_s."""
        first = not self.ctl.closing
        self.datasets.cancel_loading()
        self.frame_timer.stop()
        self.heartbeat.stop()
        done = self.ctl.shutdown(timeout_s)
        if first and self._gc_held and done:
            self._gc_held = False
            gcguard.release()
        return done

    def closeEvent(self, ev):
        self.shutdown()
        super().closeEvent(ev)

    # ================================================================ building
    def _group(self, title, widget):
        box = QtWidgets.QGroupBox(title)
        lay = QtWidgets.QVBoxLayout(box)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.addWidget(widget)
        return box

    def _build_controls(self):
        ctl = self.ctl
        self.lesson = WrapLabel("")
        self.lesson.setWordWrap(True)
        self.lesson.setObjectName("lesson")
        self.lesson.setVisible(False)
        self.datasets = DatasetPicker()
        self.datasets.datasetChosen.connect(ctl.dataset_chosen)
        self.datasets.error.connect(self.show_error)
        self.family = FamilyPicker()
        self.family.familyChanged.connect(ctl.family_chosen)
        self.family.optionsChanged.connect(lambda n, v: ctl.restart(f"{n} = {v}"))
        self.family.invalid.connect(ctl.invalid)
        self.sampler = SamplerPicker()
        self.sampler.samplerChanged.connect(ctl.sampler_changed)
        self.sampler.invalid.connect(ctl.invalid)
        self.train = TrainSettings()
        self.train.changed.connect(ctl.train_changed)
        self.train.invalid.connect(ctl.invalid)

        inner = QtWidgets.QWidget()
        lay = QtWidgets.QVBoxLayout(inner)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.addWidget(self.lesson)
        lay.addWidget(self._group("Dataset", self.datasets))
        lay.addWidget(self._group("Model family", self.family))
        lay.addWidget(self._group("Sampler", self.sampler))
        lay.addWidget(self._group("Training", self.train))
        lay.addStretch(1)
        scroll = QtWidgets.QScrollArea()
        scroll.setWidget(inner)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(290)           # with the panels, fits a 1366 px screen
        self.controls_dock = QtWidgets.QDockWidget("Controls", self)
        self.controls_dock.setObjectName("controls")
        self.controls_dock.setWidget(scroll)
        self.addDockWidget(QtCore.Qt.DockWidgetArea.LeftDockWidgetArea, self.controls_dock)

    def _build_panels(self):
        """One dock per registry row, placed as the row says."""
        placeholder = QtWidgets.QWidget()
        placeholder.hide()               # all views are docks; the (required) central widget stays empty
        self.setCentralWidget(placeholder)
        self.setDockNestingEnabled(True)
        self.panels: dict = {}
        self.docks: dict[str, QtWidgets.QDockWidget] = {}
        areas = dict(right=QtCore.Qt.DockWidgetArea.RightDockWidgetArea,
                     left=QtCore.Qt.DockWidgetArea.LeftDockWidgetArea,
                     bottom=QtCore.Qt.DockWidgetArea.BottomDockWidgetArea)
        H, V = QtCore.Qt.Orientation.Horizontal, QtCore.Qt.Orientation.Vertical
        splits: dict = {H: [], V: []}
        for spec in registry.PANELS:
            panel = spec.cls()
            setattr(self, spec.key, panel)          # win.field, win.samples ... for the controller and tests
            self.panels[spec.key] = panel
            d = QtWidgets.QDockWidget(panel.title, self)
            d.setObjectName(f"dock_{spec.key}")
            d.setWidget(fit_on_laptop(panel))
            d.visibilityChanged.connect(lambda vis, k=spec.key: self._dock_visibility(k, vis))
            panel.wantChanged.connect(self.ctl.update_want)
            self.docks[spec.key] = d
            how, where = spec.place
            if how == "area":
                self.addDockWidget(areas[where], d)
            elif how == "tab":
                self.tabifyDockWidget(self.docks[where], d)
            else:
                orient = H if how == "right_of" else V
                self.splitDockWidget(self.docks[where], d, orient)
                splits[orient].append((where, spec.key))
        for spec in registry.PANELS:
            if spec.place[0] == "tab" and not spec.front:
                self.docks[spec.place[1]].raise_()
        self.resizeDocks([self.controls_dock], [360], H)
        for orient, pairs in splits.items():
            for a, b in pairs:
                self.resizeDocks([self.docks[a], self.docks[b]],
                                 [registry.spec(a).size, registry.spec(b).size], orient)
        self.field.level.valueChanged.connect(self.views.level.set_value)     # one noise level for both
        self.views.level.valueChanged.connect(self.field.level.set_value)
        self.views.level_elsewhere = lambda: self.panel_visible("field") and self.field.level.isVisible()
        self.particles.requestParticles.connect(self.ctl.request_particles)
        self.particles.frameShown.connect(self.schedule.set_time)
        self.samples.refreshRequested.connect(lambda: self.ctl.send(M.SamplesNow()))
        self.ctl.connect_panels()

    def _build_status(self):
        sb = self.statusBar()
        self.step_label = LiveLabel("step 0", widest="step 999,999,999")
        self.progress = QtWidgets.QProgressBar()
        self.progress.setMaximumWidth(220)
        self.progress.setVisible(False)
        self.progress.setFormat("sampling %p%")
        sb.addPermanentWidget(self.progress)
        sb.addPermanentWidget(self.step_label)

    # ================================================================ what the controller shows
    def show_lesson(self, title: str, lesson: str):
        self.lesson.setText(lesson_html(title, lesson))
        self.lesson.setVisible(True)
        self.setWindowTitle(f"Generative-model playground — {title}")

    def show_playing(self, on: bool):
        self.play_action.setChecked(on)
        self.play_action.setText("Pause" if on else "Play")
        self.play_action.setIcon(self.style().standardIcon(
            QtWidgets.QStyle.StandardPixmap.SP_MediaPause if on else QtWidgets.QStyle.StandardPixmap.SP_MediaPlay))

    def set_trainable(self, trainable: bool):
        for a in (self.play_action, self.step_action):
            a.setEnabled(trainable)

    def show_progress(self, p):
        """A long sampling job's progress bar (None or done: hide it)."""
        if p is None or p.done:
            self.progress.setVisible(False)
            return
        if p.elapsed > 1.0:
            self.progress.setVisible(True)
            if p.total:
                self.progress.setRange(0, int(p.total))
                self.progress.setValue(min(int(p.i), int(p.total)))
            else:
                self.progress.setRange(0, 0)   # busy indicator: the length is not known yet

    # ================================================================ panels
    def _dock_visibility(self, key, vis):
        self._dock_vis[key] = bool(vis)
        if vis:
            self.panels[key].dirty = True
        self.ctl.update_want()

    def panel_visible(self, key) -> bool:
        d = self.docks[key]
        return self._dock_vis.get(key, d.isVisible()) and d.isVisible()

    def _frame(self):
        t0 = time.perf_counter()
        self.ticks += 1
        self.ctl.poll()
        drew = False
        turns = []
        for key, panel in self.panels.items():
            if key == "stats" or not self.panel_visible(key):
                continue
            if key not in registry.EVERY_FRAME:
                turns.append(key)
                continue
            drew |= self._draw_panel(key)
        drew |= self._turns.draw(turns, self._draw_panel)     # the other panels: one a frame
        step = self.step
        if step != self._shown_step:          # once per frame, not once per snapshot
            self._shown_step = step
            self.step_label.setText(f"step {step:,}")
        if t0 - self._last_stats >= 0.5:
            self._last_stats = t0
            self._update_stats()
            drew |= self.stats.draw() if self.panel_visible("stats") else False
        if drew:
            self.frames += 1
            self._frame_times.append(t0)
            cut = t0 - 2.0
            while self._frame_times and self._frame_times[0] < cut:
                self._frame_times.pop(0)

    def _draw_panel(self, key) -> bool:
        return draw_guarded(self.panels[key], lambda e: self.ctl.report(f"drawing {key}", e))

    def _update_stats(self):
        ft = self._frame_times
        fps = (len(ft) - 1) / (ft[-1] - ft[0]) if len(ft) > 2 and ft[-1] > ft[0] else 0.0
        i, slot = self.info, self.ctl.slot
        vals = dict(step=f"{slot.step:,}",
                    steps_per_s=f"{slot.steps_per_s:,.0f}" if self.playing else "paused",
                    fps=f"{fps:.0f}", lateness=f"{self.heartbeat.percentile(99, last=500):.1f} ms",
                    rss=f"{rss_mb():.0f} MB (peak {peak_rss_mb():.0f})")
        if i is not None:
            vals.update(run=f"{i.title} on {os.path.basename(str(self.dataset))}",
                        device=f"{i.device} ({i.threads} torch thread{'s' if i.threads != 1 else ''})",
                        parameters=f"{i.parameters:,}")
        if slot.lr is not None:
            vals["lr"] = f"{slot.lr:g}"
        m = self.samples.metrics
        if "fid" in m:
            vals["metric"] = "see FID / IS (digit images)"
            vals["fid"] = f"FID {m['fid']:.1f} · IS {m.get('inception_score', float('nan')):.2f} (step {self.samples.step})"
        elif "energy_distance_x_iid" in m:
            vals["metric"] = f"{m['energy_distance_x_iid']:.2f} × iid (step {self.samples.step})"
        if "fid" not in m and i is not None:
            vals["fid"] = "- (digit images only)"
        self.stats.set_values(**vals)
        self.fps = fps

    # ================================================================ messages
    def show_error(self, title: str, text: str):
        """Status bar + a non-blocking message box; the window and the data stay as they were."""
        self.ctl.errors.append((title, text))
        log.warning("%s: %s", title, text)
        self._msgbox = show_warning(self, title, text, self._msgbox)

    def screenshot(self, path: str) -> bool:
        return self.grab().save(path, "PNG")

    # ================================================================ numbers for the stats line
    def run_stats(self) -> dict:
        now = time.perf_counter()
        play = self.ctl.play_seconds()
        elapsed = now - self._t_open
        return dict(steps=self.step, steps_per_s=round(self.step / play, 1) if play > 0 else 0.0,
                    fps=round(self.frames / elapsed, 1) if elapsed > 0 else 0.0,
                    ui_lateness_p99_ms=round(self.heartbeat.percentile(99), 2),
                    peak_rss_mb=round(peak_rss_mb(), 1),
                    family=self.family.current, dataset=os.path.basename(str(self.dataset)),
                    errors=len([e for e in self.errors if e[0] != "Bad setting"]))
