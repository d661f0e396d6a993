"""The main window: controls on the left, panels as dock widgets, toolbar, menus, status bar.

Data flow: the controls build a RunConfig; `restart()` hands it to a new Worker (the old one
is stopped and retired); a ~30 Hz frame timer drains the worker's messages, gives snapshots
to the panels and lets each visible panel redraw what changed. Panels say what they need
(`want()`), and the window forwards the union of the visible panels' wants to the worker.
"""
from __future__ import annotations

import html
import math
import os
import time

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from engines import data as D
from engines.config import ConfigError, RunConfig, TrainConfig, build, train_config
from engines.run import pick_device

from . import gcguard, presets, theme
from .controls import DatasetPicker, FamilyPicker, SamplerPicker, TrainSettings
from .controls.dataset import DRAWING
from .controls.train import LIVE
from .heartbeat import Heartbeat
from .panels import FieldPanel, LossesPanel, ParticlesPanel, SamplesPanel, SchedulePanel, StatsPanel, ViewsPanel
from .worker import Worker

FRAME_MS = 33                      # ~30 Hz drawing
SPEEDS = [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 25, 50, 100, None]   # steps per frame; None = full speed
DEFAULT_SIZE = (1600, 1000)


def peak_rss_mb() -> float:
    try:
        import resource
        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return r / 1024.0 if os.uname().sysname != "Darwin" else r / 2 ** 20
    except Exception:
        return float("nan")


class WrapLabel(QtWidgets.QLabel):
    """A word-wrapped label that asks for the height its text needs at its actual width (a
    plain QLabel in a scroll area sizes itself for a guessed width and gets clipped)."""

    def resizeEvent(self, ev):
        super().resizeEvent(ev)
        h = self.heightForWidth(self.width())
        if h > 0 and h != self.minimumHeight():
            self.setMinimumHeight(h)

    def setText(self, text):
        super().setText(text)
        h = self.heightForWidth(self.width()) if self.width() > 50 else -1
        if h > 0:
            self.setMinimumHeight(h)


def lesson_html(title: str, lesson: str) -> str:
    """A preset's title and lesson as rich text: formulas like <v h^T> are escaped, hard line
    breaks of the TOML text are joined, blank lines start paragraphs."""
    paras = [" ".join(l.strip() for l in p.splitlines()) for p in lesson.split("\n\n") if p.strip()]
    body = "<br><br>".join(html.escape(p) for p in paras)
    return f"<b>{html.escape(title)}</b>" + (f"<br>{body}" if body else "")


class MainWindow(QtWidgets.QMainWindow):
    def __init__(self, preset: str | None = None, autostart: bool = False, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Generative-model playground")
        self.resize(*DEFAULT_SIZE)
        self.worker: Worker | None = None
        self._retiring: list[Worker] = []
        self.playing = bool(autostart)
        self.info: dict = {}
        self.step = 0
        self.steps_per_s = 0.0
        self.lr = None
        self.errors: list[tuple[str, str]] = []
        self.data = None                  # tensor for drawings and files
        self.dataset = "moons"
        self._msgbox = None
        self._want_sent = None
        self._dock_vis: dict[str, bool] = {}
        self._frame_times: list[float] = []
        self.frames = 0
        self._play_time = 0.0
        self._play_since = None
        self._diverged_msg = ""
        self._last_stats = 0.0
        self._progress_since = None
        self._closing = False
        self._play_seq = 0
        self._shown_step = -1
        self.preset_info: dict = {}
        self._resume_play = False         # paused only because the family has nothing to train

        gcguard.acquire()               # cyclic GC on this (GUI) thread only, while the window lives
        self._gc_held = True
        self._build_controls()
        self._build_panels()
        self._build_toolbar()
        self._build_menus()
        self._build_status()
        self._default_state = self.saveState()

        self.heartbeat = Heartbeat(10, parent=self)
        self.heartbeat.start()
        self.frame_timer = QtCore.QTimer(self)
        self.frame_timer.setInterval(FRAME_MS)
        self.frame_timer.timeout.connect(self._frame)
        self.frame_timer.start()
        self._t_open = time.perf_counter()

        name = preset or (presets.DEFAULT if presets.DEFAULT in presets.names() else None)
        if name:
            try:
                self.apply_preset(name, restart=False)
            except (ConfigError, ValueError) as e:
                self.show_error("Could not open the preset", str(e))
                self._set_family(self.family.current or "ddpm")
        else:
            self._set_family("ddpm")
        self.restart("start")
        self.set_playing(self.playing)

    # ================================================================ building
    def _group(self, title, widget):
        box = QtWidgets.QGroupBox(title)
        lay = QtWidgets.QVBoxLayout(box)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.addWidget(widget)
        return box

    def _build_controls(self):
        self.lesson = WrapLabel("")
        self.lesson.setWordWrap(True)
        self.lesson.setObjectName("lesson")
        self.lesson.setVisible(False)
        self.datasets = DatasetPicker()
        self.datasets.datasetChosen.connect(self._dataset_chosen)
        self.datasets.error.connect(self.show_error)
        self.family = FamilyPicker()
        self.family.familyChanged.connect(self._family_chosen)
        self.family.optionsChanged.connect(lambda n, v: self.restart(f"{n} = {v}"))
        self.family.invalid.connect(self._invalid)
        self.sampler = SamplerPicker()
        self.sampler.samplerChanged.connect(self._sampler_changed)
        self.sampler.invalid.connect(self._invalid)
        self.train = TrainSettings()
        self.train.changed.connect(self._train_changed)
        self.train.invalid.connect(self._invalid)

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
        scroll.setMinimumWidth(350)
        self.controls_dock = QtWidgets.QDockWidget("Controls", self)
        self.controls_dock.setObjectName("controls")
        self.controls_dock.setWidget(scroll)
        self.addDockWidget(QtCore.Qt.DockWidgetArea.LeftDockWidgetArea, self.controls_dock)

    def _build_panels(self):
        placeholder = QtWidgets.QWidget()
        placeholder.hide()               # all views are docks; the (required) central widget stays empty
        self.setCentralWidget(placeholder)
        self.setDockNestingEnabled(True)
        self.losses = LossesPanel()
        self.field = FieldPanel()
        self.particles = ParticlesPanel()
        self.samples = SamplesPanel()
        self.schedule = SchedulePanel()
        self.stats = StatsPanel()
        self.views = ViewsPanel()
        self.panels = dict(field=self.field, particles=self.particles, samples=self.samples,
                           losses=self.losses, schedule=self.schedule, stats=self.stats, views=self.views)
        self.docks: dict[str, QtWidgets.QDockWidget] = {}
        R = QtCore.Qt.DockWidgetArea.RightDockWidgetArea
        for key, panel in self.panels.items():
            d = QtWidgets.QDockWidget(panel.title, self)
            d.setObjectName(f"dock_{key}")
            d.setWidget(panel)
            d.visibilityChanged.connect(lambda vis, k=key: self._dock_visibility(k, vis))
            panel.wantChanged.connect(self._update_want)
            self.docks[key] = d
        dk = self.docks
        H, V = QtCore.Qt.Orientation.Horizontal, QtCore.Qt.Orientation.Vertical
        self.addDockWidget(R, dk["field"])
        self.splitDockWidget(dk["field"], dk["losses"], V)
        self.splitDockWidget(dk["field"], dk["particles"], H)
        self.splitDockWidget(dk["particles"], dk["samples"], H)
        self.splitDockWidget(dk["losses"], dk["schedule"], H)
        self.splitDockWidget(dk["schedule"], dk["stats"], H)
        # the family's own pictures share the middle of the bottom row with the noise schedule:
        # a family brings to the front whichever of the two it has (diffusion on images: both)
        self.tabifyDockWidget(dk["schedule"], dk["views"])
        dk["schedule"].raise_()
        self.resizeDocks([self.controls_dock], [360], H)
        self.resizeDocks([dk["field"], dk["losses"]], [580, 400], V)
        self.resizeDocks([dk["field"], dk["particles"], dk["samples"]], [420, 420, 420], H)
        self.resizeDocks([dk["losses"], dk["schedule"], dk["stats"]], [450, 540, 270], H)
        self.field.level.valueChanged.connect(self.views.level.set_value)     # one noise level for both
        self.views.level.valueChanged.connect(self.field.level.set_value)
        self.views.level_elsewhere = lambda: self.panel_visible("field") and self.field.level.isVisible()
        self.particles.requestParticles.connect(self._request_particles)
        self.particles.frameShown.connect(self.schedule.set_time)
        self.samples.refreshRequested.connect(lambda: self.worker and self.worker.send("samples_now"))

    def _build_toolbar(self):
        tb = self.addToolBar("Training")
        tb.setObjectName("toolbar")
        tb.setMovable(False)
        tb.setToolButtonStyle(QtCore.Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        st = self.style()
        SP = QtWidgets.QStyle.StandardPixmap
        self.play_action = QtGui.QAction(st.standardIcon(SP.SP_MediaPlay), "Play", self)
        self.play_action.setCheckable(True)
        self.play_action.setShortcut(QtGui.QKeySequence(QtCore.Qt.Key.Key_Space))
        self.play_action.setToolTip("Play / pause training (Space)")
        self.play_action.triggered.connect(self._user_play)
        self.step_action = QtGui.QAction(st.standardIcon(SP.SP_MediaSeekForward), "Step", self)
        self.step_action.setShortcut(QtGui.QKeySequence(QtCore.Qt.Key.Key_N))
        self.step_action.setToolTip("Train exactly one batch, then pause (N)")
        self.step_action.triggered.connect(lambda: self.step_once(1))
        self.reset_action = QtGui.QAction(st.standardIcon(SP.SP_MediaSkipBackward), "Reset", self)
        self.reset_action.setShortcut(QtGui.QKeySequence(QtCore.Qt.Key.Key_R))
        self.reset_action.setToolTip("Rewind: a fresh run from the same settings and seed (R)")
        self.reset_action.triggered.connect(lambda: self.restart("reset"))
        for a in (self.play_action, self.step_action, self.reset_action):
            tb.addAction(a)
        tb.addSeparator()
        tb.addWidget(QtWidgets.QLabel(" speed "))
        self.speed = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.speed.setRange(0, len(SPEEDS) - 1)
        self.speed.setValue(len(SPEEDS) - 1)
        self.speed.setFixedWidth(170)
        self.speed.setToolTip("Training steps per frame (30 frames/s): from slow motion to full speed")
        self.speed.valueChanged.connect(self._speed_changed)
        tb.addWidget(self.speed)
        self.speed_label = QtWidgets.QLabel()
        self.speed_label.setMinimumWidth(110)
        tb.addWidget(self.speed_label)
        tb.addSeparator()
        tb.addWidget(QtWidgets.QLabel(" stop at "))
        self.stop_kind = QtWidgets.QComboBox()
        self.stop_kind.addItem("never", None)
        self.stop_kind.addItem("loss ≤", "loss")
        self.stop_kind.addItem("energy distance ≤ (× iid)", "metric")
        self.stop_kind.setToolTip("Pause training when the loss (mean of the last 50 steps) or the sample\n"
                                  "energy distance (in multiples of the iid level) reaches a target")
        self.stop_value = QtWidgets.QLineEdit("2")
        self.stop_value.setFixedWidth(60)
        self.stop_kind.currentIndexChanged.connect(self._stop_changed)
        self.stop_value.editingFinished.connect(self._stop_changed)
        tb.addWidget(self.stop_kind)
        tb.addWidget(self.stop_value)
        self._speed_changed(self.speed.value())

    def _build_menus(self):
        mb = self.menuBar()
        fm = mb.addMenu("&File")
        a = fm.addAction("Open data file…")
        a.setShortcut(QtGui.QKeySequence.StandardKey.Open)
        a.setToolTip("2D points (CSV/TSV/NPY/NPZ) or images (PNG/JPEG..., .npy/.npz image arrays, MNIST IDX)")
        a.triggered.connect(self.datasets.open_dialog)
        a = self.open_folder_action = fm.addAction("Open image folder…")
        a.setToolTip("Train on a folder of PNG/JPEG images (all the same size)")
        a.triggered.connect(self.datasets.open_folder_dialog)
        a = fm.addAction("Save screenshot…")
        a.triggered.connect(self._save_screenshot_dialog)
        fm.addSeparator()
        a = fm.addAction("Quit")
        a.setShortcut(QtGui.QKeySequence.StandardKey.Quit)
        a.triggered.connect(self.close)
        lm = mb.addMenu("&Lessons")
        for name in presets.names():
            try:
                title = presets.load(name)["title"]
            except ConfigError as e:
                title = f"{name} (broken: {e})"
            act = lm.addAction(title)
            act.triggered.connect(lambda *_, n=name: self.apply_preset(n))
        self.view_menu = mb.addMenu("&View")
        self.view_menu.addAction(self.controls_dock.toggleViewAction())
        for key, d in self.docks.items():
            self.view_menu.addAction(d.toggleViewAction())
        self.view_menu.addSeparator()
        a = self.view_menu.addAction("Restore default layout")
        a.triggered.connect(self.restore_layout)
        hm = mb.addMenu("&Help")
        a = hm.addAction("About")
        a.triggered.connect(lambda: QtWidgets.QMessageBox.about(
            self, "About", "Generative-model playground: pick a dataset and a model family, press Play "
                           "(Space), watch it learn. Hover any setting for its formula."))

    def _build_status(self):
        sb = self.statusBar()
        self.step_label = QtWidgets.QLabel("step 0")
        self.step_label.setMinimumWidth(110)
        self.progress = QtWidgets.QProgressBar()
        self.progress.setMaximumWidth(220)
        self.progress.setVisible(False)
        self.progress.setFormat("sampling %p%")
        sb.addPermanentWidget(self.progress)
        sb.addPermanentWidget(self.step_label)

    def restore_layout(self):
        self.restoreState(self._default_state)
        for d in self.docks.values():
            d.setVisible(True)
        self.docks["stats"].raise_()

    # ================================================================ config
    def current_config(self) -> RunConfig:
        """The RunConfig the controls describe; ConfigError when something doesn't validate."""
        fam = self.family.cls()
        if fam is None:
            raise ConfigError("no model family is available")
        opts = self.family.form.validate() if self.family.form else {}
        build(fam.Config, opts)
        tv = self.train.values()
        tv.update(self.train.form.validate())
        tc = build(TrainConfig, tv)
        sname = self.sampler.current
        sopts = self.sampler.form.validate() if self.sampler.form else {}
        if sname:
            build(fam.samplers[sname], sopts)
        return RunConfig(dataset=self.dataset, family=self.family.current, train=tc, options=opts,
                         sampler=sname, sampler_options=sopts)

    def apply_preset(self, name: str, restart: bool = True):
        p = presets.load(name)
        cfg: RunConfig = p["cfg"]
        if cfg.family not in self.family.classes:
            raise ConfigError(f"preset {name}: family {cfg.family!r} is not available"
                              + (f" ({self.family.broken[cfg.family]})" if cfg.family in self.family.broken else ""))
        fam = self.family.classes[cfg.family]
        build(fam.Config, cfg.options)               # fail before changing anything
        if cfg.sampler:
            if cfg.sampler not in fam.samplers:
                raise ConfigError(f"preset {name}: {cfg.family} has no sampler {cfg.sampler!r}")
            build(fam.samplers[cfg.sampler], cfg.sampler_options)
        self.preset_info = p
        self.family.set_family(cfg.family, cfg.options)
        self.sampler.set_family(fam, cfg.sampler, cfg.sampler_options)
        self.train.set_values({k: v for k, v in vars(cfg.train).items()})
        self.dataset, self.data = cfg.dataset, None
        if D.is_file(cfg.dataset) or os.path.isdir(cfg.dataset):
            self.datasets.open_file(cfg.dataset, background=False)
        else:
            self.datasets.select(cfg.dataset, emit=False)
        view = p["view"]
        if "particles" in view:
            self.particles.n.setValue(int(view["particles"]))
        if "field_level" in view:
            self._pending_level = view["field_level"]
        if "speed" in view and view["speed"] in SPEEDS:
            self.speed.setValue(SPEEDS.index(view["speed"]))
        self.lesson.setText(lesson_html(p["title"], p["lesson"] or ""))
        self.lesson.setVisible(True)
        self.setWindowTitle(f"Generative-model playground — {p['title']}")
        if restart:
            self.restart(f"lesson {p['title']}")

    def choose(self, family: str | None = None, dataset: str | None = None):
        """Switch the family and/or the dataset (a name, a file or an image folder) as the
        pickers would, then start a fresh run (python main.py --family F --dataset D).
        ValueError for an unknown family or dataset, ConfigError for a bad file."""
        if family:
            self.family.set_family(family)
            self.sampler.set_family(self.family.cls())
        if dataset:
            if dataset in D.names():
                self.datasets.select(dataset, emit=False)
                self.dataset, self.data = dataset, None
            elif D.is_file(dataset) or os.path.isdir(dataset):
                before = len(self.errors)
                ok = self.datasets.open_file(dataset, background=False)
                if not ok:
                    raise ConfigError(f"could not load {dataset}"
                                      + (f": {self.errors[-1][1]}" if len(self.errors) > before else ""))
                self.dataset, self.data = dataset, self.datasets.files[dataset]
            else:
                raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(D.names())}, "
                                 f"or a file or folder path")
        self._apply_train_defaults()
        self.lesson.setVisible(False)
        self.restart(f"{self.family.current} on {os.path.basename(str(self.dataset))}")

    # ================================================================ run lifecycle
    def restart(self, reason: str = "") -> bool:
        """Stop the current run and start one from the controls (Reset, or a changed setting).
        A setting that does not validate is shown and the current run goes on."""
        try:
            cfg = self.current_config()
            pick_device(cfg.train.device)
        except ConfigError as e:
            self._invalid(str(e))
            return False
        self._retire()
        img = D.is_image(cfg.dataset) if self.data is None else self.data.ndim == 4
        self.samples.set_image_mode(img)            # sizes of what the new worker is asked for
        self.particles.set_image_mode(img)
        self.info = {}
        self.step = 0
        self._diverged_msg = ""
        self._play_time, self._play_since = 0.0, None     # the clock starts when the run is ready
        self.worker = Worker(cfg, data=self.data, playing=self.playing, want=self._want(),
                             speed=SPEEDS[self.speed.value()], sampler=cfg.sampler,
                             sampler_options=cfg.sampler_options, stop_at=self._stop_target(),
                             play_seq=self._play_seq)
        self.worker.start()
        self.cfg = cfg
        self.particles.set_sampler_name(cfg.sampler)
        self.samples.set_sampler_name(cfg.sampler)
        self._want_sent = self._want()
        if reason and reason != "start":
            self.statusBar().showMessage(f"Restarted ({reason})", 4000)
        return True

    def _retire(self):
        if self.worker is not None:
            self.worker.request_stop()
            self._retiring.append(self.worker)
            self.worker = None

    def shutdown(self, timeout_s: float = 15.0):
        """Stop every thread (called before the application quits)."""
        if self._closing:
            return
        self._closing = True
        self.frame_timer.stop()
        self.heartbeat.stop()
        if self.worker is not None:
            self._note_play(False)
            self._retire()
        for w in self._retiring:
            w.stop(timeout_s)
        self._retiring = [w for w in self._retiring if not w.isFinished()]
        if self._gc_held and not self._retiring:
            self._gc_held = False
            gcguard.release()

    def closeEvent(self, ev):
        self.shutdown()
        super().closeEvent(ev)

    # ================================================================ toolbar actions
    def set_playing(self, on: bool):
        on = bool(on)
        if on and self.info and not self.info.get("trainable", True):
            on = False
        self.playing = on
        self._note_play(on)
        self.play_action.setChecked(on)
        self.play_action.setText("Pause" if on else "Play")
        self.play_action.setIcon(self.style().standardIcon(
            QtWidgets.QStyle.StandardPixmap.SP_MediaPause if on else QtWidgets.QStyle.StandardPixmap.SP_MediaPlay))
        self._play_seq += 1
        if self.worker is not None:
            self.worker.send("play", on=on, seq=self._play_seq)

    def _user_play(self, on):
        self._resume_play = False
        self.set_playing(on)

    def _note_play(self, on):
        """Training time of the current run (for steps_per_s): counted while playing and ready."""
        now = time.perf_counter()
        if self._play_since is not None:
            self._play_time += now - self._play_since
            self._play_since = None
        if on and self.info:
            self._play_since = now

    def step_once(self, n: int = 1):
        if self.playing:
            self.set_playing(False)
        if self.worker is not None:
            self.worker.send("step", n=n)

    def _speed_changed(self, i):
        s = SPEEDS[i]
        self.speed_label.setText("full speed" if s is None else
                                 (f"{s:g} steps/frame" if s >= 1 else f"1 step / {1 / s:g} frames"))
        if self.worker is not None:
            self.worker.send("speed", steps_per_frame=s)

    def _stop_target(self):
        kind = self.stop_kind.currentData()
        if not kind:
            return None
        try:
            v = float(self.stop_value.text())
        except ValueError:
            return None
        return (kind, v)

    def _stop_changed(self, *a):
        if self.stop_kind.currentData():
            try:
                float(self.stop_value.text())
            except ValueError:
                self._invalid(f"stop at: {self.stop_value.text()!r} is not a number")
                return
        if self.worker is not None:
            self.worker.send("stop_at", target=self._stop_target())

    # ================================================================ control changes
    def _dataset_chosen(self, name, data):
        old = (self.dataset, self.data)
        was_image = D.is_image(old[0]) if old[1] is None else old[1].ndim == 4
        self.dataset, self.data = name, data
        if (D.is_image(name) if data is None else data.ndim == 4) != was_image:
            self._apply_train_defaults()  # points and images train with different batches
        if not self.restart(f"dataset {os.path.basename(name)}"):
            self.dataset, self.data = old

    def _set_family(self, name, options=None):
        self.family.set_family(name, options)
        self.sampler.set_family(self.family.cls())
        self._apply_train_defaults()

    def _family_chosen(self, name):
        if self.preset_info:        # a lesson is about its own family: hide it for another one
            self.lesson.setVisible(name == self.preset_info["cfg"].family)
        self.sampler.set_family(self.family.cls())
        self._apply_train_defaults()
        self.restart(f"family {name}")

    def _apply_train_defaults(self):
        """Show the family's own training defaults (e.g. DDPM on points: batch 1024, lr 6e-3)."""
        name = self.family.current
        if not name or self.family.cls() is None:
            return
        img = D.is_image(self.dataset) if self.data is None else self.data.ndim == 4
        try:
            tc = train_config(name, img)
        except ConfigError:
            return
        self.train.set_values({k: v for k, v in vars(tc).items() if k not in ("seed", "device", "threads")})

    def _sampler_changed(self, name, options):
        self.particles.set_sampler_name(name)
        self.samples.set_sampler_name(name)
        if self.worker is not None:
            self.worker.send("sampler", name=name, options=options)
            if self.info:
                self.particles.request()

    def _train_changed(self, name, value):
        if name in LIVE and self.worker is not None and self.info:
            self.worker.send("set_train", name=name, value=value)
            try:
                self.cfg = self.current_config()
            except ConfigError:
                pass
        else:
            self.restart(f"{name} = {value}")

    def _invalid(self, msg):
        self.errors.append(("Bad setting", msg))
        self.statusBar().showMessage(f"⚠ {msg} (the run goes on with the previous value)", 10000)

    # ================================================================ wants
    def _dock_visibility(self, key, vis):
        self._dock_vis[key] = bool(vis)
        if vis:
            self.panels[key].dirty = True
        self._update_want()

    def panel_visible(self, key) -> bool:
        d = self.docks[key]
        return self._dock_vis.get(key, d.isVisible()) and d.isVisible()

    def _want(self) -> dict:
        w = {}
        for key in ("field", "samples", "views"):
            if self.panel_visible(key):
                w.update(self.panels[key].want())
        if "views" in w and self.info.get("level") is not None:
            w["views"]["level"] = self.field.level.value()
        return w

    def _update_want(self):
        w = self._want()
        if w != self._want_sent and self.worker is not None:
            self._want_sent = w
            self.worker.send("want", want=w)

    def _request_particles(self, n):
        if self.worker is not None and self.info.get("samplers") is not None:
            self.worker.send("particles", n=n)

    # ================================================================ the frame loop
    def _frame(self):
        t0 = time.perf_counter()
        for w in list(self._retiring):
            w.drain()
            if w.isFinished():
                w.release_gc()
                self._retiring.remove(w)
        if self.worker is not None:
            for kind, payload in self.worker.drain():
                self._dispatch(kind, payload)
        drew = False
        for key, panel in self.panels.items():
            if key == "stats":
                continue
            if self.panel_visible(key):
                drew |= panel.draw()
        if self.step != self._shown_step:          # once per frame, not once per snapshot
            self._shown_step = self.step
            self.step_label.setText(f"step {self.step:,}")
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

    def _dispatch(self, kind, p):
        if kind == "snapshot":
            self.step, self.steps_per_s, self.lr = p.step, p.steps_per_s, p.lr
            for panel in self.panels.values():
                panel.on_snapshot(p)
            if p.diverged and p.message != self._diverged_msg:
                self._diverged_msg = p.message
                self.set_playing(False)
                self.show_error("Training diverged", p.message)
            if "energy_distance_x_iid" in p.metrics and self.playing:
                st = self._stop_target()
                if st and st[0] == "metric" and p.metrics["energy_distance_x_iid"] <= st[1]:
                    self.set_playing(False)
                    self.statusBar().showMessage(
                        f"Stopped at step {p.step}: energy distance {p.metrics['energy_distance_x_iid']:.2f} × iid "
                        f"reached the target {st[1]:g}", 10000)
        elif kind == "ready":
            self.info = p
            for panel in self.panels.values():
                panel.reset(p)
            lvl = getattr(self, "_pending_level", None)
            if lvl is not None and p.get("level"):
                self.field.level.set_value(lvl)
                self._pending_level = None
            trainable = p.get("trainable", True)
            if not trainable:
                # nothing to train: pause, and play again when the user moves on to a family that trains
                self._resume_play = self._resume_play or self.playing
                self.set_playing(False)
            elif self._resume_play:
                self._resume_play = False
                self.set_playing(True)
            for a in (self.play_action, self.step_action):
                a.setEnabled(trainable)
            self._note_play(self.playing)
            # a family with pictures of its own brings its panel to the front of the tab; one
            # without a noise schedule shows its views panel (which says what it is waiting for)
            has_schedule = any(k != "x_label" for k in (p.get("schedule") or {}))
            (self.docks["views"] if p.get("has_views") or not has_schedule else self.docks["schedule"]).raise_()
            self._update_want()
            if self.panel_visible("particles") and p.get("samplers") is not None:
                self.particles.request()
            self.statusBar().showMessage(
                f"{p['title']} on {os.path.basename(str(self.dataset))}: {p['n_data']:,} examples, "
                f"{p['parameters']:,} parameters, {p['device']}" + ("" if self.playing else " — press Play (Space)"),
                6000)
            self.step_label.setText("step 0")
        elif kind == "progress_done":
            self.progress.setVisible(False)
        elif kind in ("trajectory", "progress"):
            self.particles.on_message(kind, p)
            if kind == "progress":
                if p.get("elapsed", 0) > 1.0:
                    self.progress.setVisible(True)
                    if p.get("total"):
                        self.progress.setRange(0, int(p["total"]))
                        self.progress.setValue(min(int(p["i"]), int(p["total"])))
                    else:
                        self.progress.setRange(0, 0)   # busy indicator: the length is not known yet
            else:
                self.progress.setVisible(False)
                if p:
                    self.stats.set_values(nfe=(f"{p['nfe']:,} ({p['steps']} steps)" if p["nfe"] else
                                               f"- ({p['steps']} steps)"),
                                          sample_time=f"{p['seconds']:.2f} s")
        elif kind == "state":
            # the worker paused itself (diverged, target reached, an error); ignore a notice
            # that predates the user's latest Play/Pause
            if p.get("seq", self._play_seq) >= self._play_seq and p["playing"] != self.playing:
                self.set_playing(p["playing"])
        elif kind == "info":
            self.statusBar().showMessage(str(p), 10000)
        elif kind == "error":
            self.show_error(*p)
        elif kind == "finished":
            if not self._closing and self.worker is not None and self.worker.isFinished():
                pass
        elif kind == "sampler_levels":
            self.info["sampler_levels"] = p
        elif kind == "has_views":
            # the family's pictures exist once training has started (an EBM's chains, a
            # discrete diffusion's corrupted data): bring them to the front
            if p and self.info and not self.info.get("has_views"):
                self.info["has_views"] = True
                self.docks["views"].raise_()

    def _update_stats(self):
        now = time.perf_counter()
        ft = self._frame_times
        fps = (len(ft) - 1) / (ft[-1] - ft[0]) if len(ft) > 2 and ft[-1] > ft[0] else 0.0
        i = self.info
        vals = dict(step=f"{self.step:,}",
                    steps_per_s=f"{self.steps_per_s:,.0f}" if self.playing else "paused",
                    fps=f"{fps:.0f}", lateness=f"{self.heartbeat.percentile(99, last=500):.1f} ms",
                    rss=f"{peak_rss_mb():.0f} MB")
        if i:
            vals.update(run=f"{i['title']} on {os.path.basename(str(self.dataset))}",
                        device=f"{i['device']} ({i['threads']} torch thread{'s' if i['threads'] != 1 else ''})", parameters=f"{i['parameters']:,}")
        if self.lr is not None:
            vals["lr"] = f"{self.lr:g}"
        m = self.samples.metrics
        if "fid" in m:
            vals["metric"] = "see FID / IS (digit images)"
        elif "energy_distance_x_iid" in m:
            vals["metric"] = f"{m['energy_distance_x_iid']:.2f} × iid (step {self.samples.step})"
        if "fid" in m:
            vals["fid"] = f"FID {m['fid']:.1f} · IS {m.get('inception_score', float('nan')):.2f} (step {self.samples.step})"
        elif self.info:
            vals["fid"] = "- (digit images only)"
        self.stats.set_values(**vals)
        self.fps = fps

    # ================================================================ messages
    def show_error(self, title: str, text: str):
        """Status bar + a non-blocking message box; the window and the data stay as they were."""
        self.errors.append((title, text))
        first = text.splitlines()[0] if text else title
        self.statusBar().showMessage(f"⚠ {title}: {first}", 15000)
        if self._msgbox is not None:
            self._msgbox.close()
        box = QtWidgets.QMessageBox(QtWidgets.QMessageBox.Icon.Warning, title, text,
                                    QtWidgets.QMessageBox.StandardButton.Ok, self)
        box.setModal(False)
        box.setWindowModality(QtCore.Qt.WindowModality.NonModal)
        box.show()
        self._msgbox = box

    def _save_screenshot_dialog(self):
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Save screenshot", "playground.png", "PNG (*.png)")
        if path:
            self.screenshot(path)

    def screenshot(self, path: str) -> bool:
        return self.grab().save(path, "PNG")

    # ================================================================ numbers for the stats line
    def run_stats(self) -> dict:
        now = time.perf_counter()
        play = self._play_time + (now - self._play_since if self._play_since is not None else 0.0)
        elapsed = now - self._t_open
        return dict(steps=self.step, steps_per_s=round(self.step / play, 1) if play > 0 else 0.0,
                    fps=round(self.frames / elapsed, 1) if elapsed > 0 else 0.0,
                    ui_lateness_p99_ms=round(self.heartbeat.percentile(99), 2),
                    peak_rss_mb=round(peak_rss_mb(), 1),
                    family=self.family.current, dataset=os.path.basename(str(self.dataset)),
                    errors=len([e for e in self.errors if e[0] != "Bad setting"]))
