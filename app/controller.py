"""The controller: from the controls to sessions and back. Configs, presets, restart, wants and
the lifecycle of the runs; it draws nothing (the shell, app/shell.py, owns the widgets).

Lifecycle (issue 9): a restart builds the new run in its own worker while the old one keeps
running; only when the new run's RunInfo arrives is the old one retired (cancelled, then
joined without blocking by the frame loop). A build that fails leaves the old run as it was,
with a message. At most one run is building: a newer restart cancels the older build. Close
cancels everything and waits at most a second in all.

Several sessions under one controller (compare mode, issue 10): all of a run's lifecycle is
in a `Slot` (app/slot.py: its worker, the worker being built, the runs being retired, what the
run last reported). The single-run window has one slot, `self.slot`; compare mode keeps a list
of slots, each with its own panels, starts each one with `slot.start(cfg, ...)`, polls each one
in `poll()`, and sends the shared Play / Step / Reset to every slot (`slot.send(cmd)` goes to the
running worker and to the one being built, so nothing said during a build is lost).

The messages coming back are routed by the controller's Inbox (app/inbox.py), mixed in here.
"""
from __future__ import annotations

import os
import time

import numpy as np
from PySide6 import QtCore

from engines import data as D
from engines import messages as M
from engines.config import ConfigError, RunConfig, TrainConfig, build
from engines.families import train_config
from engines.run import pick_device

from . import presets
from .inbox import Inbox
from .panels import registry
from .slot import Slot
from .worker import Worker

SPEEDS = [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 25, 50, 100, None]   # steps per frame; None = full speed
CLOSE_WAIT_S = 1.0


def dataset_is_image(dataset, data=None) -> bool:
    """Is this an image run? The one place the window asks (before a run exists; a running run
    says so in RunInfo.is_image)."""
    if data is not None:
        return np.ndim(data) == 4
    return D.is_image(dataset) if isinstance(dataset, str) and dataset in D.names() else \
        (D.is_file(dataset) or os.path.isdir(str(dataset))) and _image_path(dataset)


def _image_path(path) -> bool:
    from engines.data.images import is_image_path
    return bool(is_image_path(path))


class Controller(Inbox, QtCore.QObject):
    def __init__(self, win):
        super().__init__(win)
        self.win = win
        self.slot = Slot()
        self.slots = [self.slot]
        self.playing = False
        self.play_seq = 0
        self.dataset, self.data = "moons", None
        self.cfg: RunConfig | None = None
        self.preset_info: dict = {}
        self.pending_level = None
        self.resume_play = False          # paused only because the family has nothing to train
        self.want_sent: M.Want | None = None
        self.errors: list[tuple[str, str]] = []
        self.closing = False
        self._reported: set = set()       # (where, exception type, text) shown once
        self._play_time, self._play_since = 0.0, None

    # ================================================================ state of the current run
    @property
    def info(self) -> M.RunInfo | None:
        return self.slot.info

    @property
    def worker(self) -> Worker | None:
        return self.slot.worker

    # ================================================================ configs
    def current_config(self) -> RunConfig:
        """The RunConfig the controls describe; ConfigError when something doesn't validate."""
        w = self.win
        fam = w.family.cls()
        if fam is None:
            raise ConfigError("no model family is available")
        opts = w.family.form.validate() if w.family.form else {}
        build(fam.Config, opts)
        tv = w.train.values()
        tv.update(w.train.form.validate())
        tc = build(TrainConfig, tv)
        sname = w.sampler.current
        sopts = w.sampler.form.validate() if w.sampler.form else {}
        if sname:
            build(fam.samplers[sname], sopts)
        return RunConfig(dataset=self.dataset, family=w.family.current, train=tc, options=opts,
                         sampler=sname, sampler_options=sopts)

    def is_image(self) -> bool:
        return dataset_is_image(self.dataset, self.data)

    def apply_train_defaults(self):
        """Show the family's own training defaults (e.g. DDPM on points: batch 1024, lr 6e-3)."""
        w = self.win
        name = w.family.current
        if not name or w.family.cls() is None:
            return
        try:
            tc = train_config(name, self.is_image())
        except ConfigError:
            return
        w.train.set_values({k: v for k, v in vars(tc).items() if k not in ("seed", "device", "threads")})

    def set_family(self, name, options=None):
        self.win.family.set_family(name, options)
        self.win.sampler.set_family(self.win.family.cls())
        self.apply_train_defaults()

    def apply_preset(self, name: str, restart: bool = True):
        w = self.win
        p = presets.load(name)
        cfg: RunConfig = p["cfg"]
        if cfg.family not in w.family.classes:
            raise ConfigError(f"preset {name}: family {cfg.family!r} is not available"
                              + (f" ({w.family.broken[cfg.family]})" if cfg.family in w.family.broken else ""))
        fam = w.family.classes[cfg.family]
        build(fam.Config, cfg.options)               # fail before changing anything
        if cfg.sampler:
            if cfg.sampler not in fam.samplers:
                raise ConfigError(f"preset {name}: {cfg.family} has no sampler {cfg.sampler!r}")
            build(fam.samplers[cfg.sampler], cfg.sampler_options)
        self.preset_info = p
        w.family.set_family(cfg.family, cfg.options)
        w.sampler.set_family(fam, cfg.sampler, cfg.sampler_options)
        w.train.set_values({k: v for k, v in vars(cfg.train).items()})
        self.dataset, self.data = cfg.dataset, None
        if D.is_file(cfg.dataset) or os.path.isdir(cfg.dataset):
            w.datasets.open_file(cfg.dataset, background=False)
        else:
            w.datasets.select(cfg.dataset, emit=False)
        view = p["view"]
        if "particles" in view:
            w.particles.n.setValue(int(view["particles"]))
        if "field_level" in view:
            self.pending_level = view["field_level"]
        if "speed" in view and view["speed"] in SPEEDS:
            w.speed.setValue(SPEEDS.index(view["speed"]))
        w.show_lesson(p["title"], p["lesson"] or "")
        if restart:
            self.restart(f"lesson {p['title']}")

    def open_run(self, run, view_state: dict | None = None, label: str = "") -> bool:
        """Continue a saved run (engines.bundle.open_bundle): the controls show its config and a
        session starts from the loaded Run (weights, data, step, losses), paused."""
        w = self.win
        cfg = run.cfg
        if cfg.family not in w.family.classes:
            raise ConfigError(f"{label or 'the run'}: family {cfg.family!r} is not available here")
        fam = w.family.classes[cfg.family]
        self.preset_info = {}
        w.family.set_family(cfg.family, cfg.options)
        w.sampler.set_family(fam, cfg.sampler, cfg.sampler_options)
        w.train.set_values({k: v for k, v in vars(cfg.train).items()})
        self.dataset, self.data = cfg.dataset, run.data
        if isinstance(cfg.dataset, str) and cfg.dataset in D.names():
            w.datasets.select(cfg.dataset, emit=False)
        view = dict(view_state or {})
        if isinstance(view.get("particles"), int):
            w.particles.n.setValue(view["particles"])
        if isinstance(view.get("field_level"), (int, float)):
            self.pending_level = view["field_level"]
        w.lesson.setVisible(False)
        self.set_playing(False)
        return self.restart(f"opened {label or 'a saved run'} at step {run.step}", run=run)

    def choose(self, family: str | None = None, dataset: str | None = None):
        """Switch the family and/or the dataset (a name, a file or an image folder) as the
        pickers would, then start a fresh run. ValueError for an unknown family or dataset,
        ConfigError for a bad file."""
        w = self.win
        if family:
            w.family.set_family(family)
            w.sampler.set_family(w.family.cls())
        if dataset:
            if dataset in D.names():
                w.datasets.select(dataset, emit=False)
                self.dataset, self.data = dataset, None
            elif D.is_file(dataset) or os.path.isdir(dataset):
                before = len(self.errors)
                ok = w.datasets.open_file(dataset, background=False)
                if not ok:
                    raise ConfigError(f"could not load {dataset}"
                                      + (f": {self.errors[-1][1]}" if len(self.errors) > before else ""))
                self.dataset, self.data = dataset, w.datasets.files[dataset]
            else:
                raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(D.names())}, "
                                 f"or a file or folder path")
        self.apply_train_defaults()
        w.lesson.setVisible(False)
        self.restart(f"{w.family.current} on {os.path.basename(str(self.dataset))}")

    # ================================================================ lifecycle
    def restart(self, reason: str = "", run=None) -> bool:
        """Build a run from the controls (Reset, or a changed setting) next to the current one,
        which goes on until the new one is ready. A setting that does not validate is shown
        and nothing changes. `run`: continue this loaded engines.run.Run (File > Open run)."""
        try:
            cfg = run.cfg if run is not None else self.current_config()
            pick_device(cfg.train.device)
        except ConfigError as e:
            self.invalid(str(e))
            return False
        w = self.win
        img = dataset_is_image(cfg.dataset, self.data)
        w.samples.set_image_mode(img)                 # sizes of what the new run is asked for
        w.particles.set_image_mode(img)
        want = M.Want.from_dict(self.want())
        self.slot.start(cfg, self.data, playing=self.playing, want=want, speed=SPEEDS[w.speed.value()],
                        sampler=cfg.sampler, sampler_options=cfg.sampler_options, stop_at=self.stop_target(),
                        play_seq=self.play_seq, run=run)
        self.pending_cfg = cfg
        self.want_sent = want
        w.particles.set_sampler_name(cfg.sampler)
        w.samples.set_sampler_name(cfg.sampler)
        if reason and reason != "start":
            w.statusBar().showMessage(f"Starting a new run ({reason})…", 4000)
        return True

    def shutdown(self, timeout_s: float = CLOSE_WAIT_S) -> bool:
        """Stop every run; wait at most timeout_s in all. True when every thread has ended
        (a thread still inside one long torch call is a daemon: it never holds up the exit)."""
        if self.closing:
            return True
        self.closing = True
        self._note_play(False)
        deadline = time.perf_counter() + timeout_s
        return all([s.close(deadline) for s in self.slots])

    # ================================================================ commands
    def send(self, cmd):
        self.slot.send(cmd)

    def set_playing(self, on: bool):
        on = bool(on)
        if on and self.info is not None and not self.info.trainable:
            on = False
        if on and self.win.datasets.in_draw_mode():
            # Play on a fresh drawing trains the drawing (or says why it cannot), never the previous dataset
            self.win.datasets.use_drawing()
            if self.win.datasets.in_draw_mode():
                on = False
        self.playing = on
        self._note_play(on)
        self.play_seq += 1
        self.win.show_playing(on)
        self.send(M.Play(on, self.play_seq))

    def step_once(self, n: int = 1):
        if self.playing:
            self.set_playing(False)
        self.send(M.Step(n))

    def stop_target(self) -> M.StopAt:
        w = self.win
        kind = w.stop_kind.currentData()
        if not kind:
            return M.StopAt()
        try:
            return M.StopAt(kind, float(w.stop_value.text()))
        except (ValueError, ConfigError):
            return M.StopAt()

    def stop_changed(self):
        w = self.win
        if w.stop_kind.currentData():
            try:
                M.StopAt(w.stop_kind.currentData(), w.stop_value.text())
            except ConfigError as e:
                self.invalid(f"stop at: {e}")
                return
        self.send(self.stop_target())

    def speed_changed(self, steps_per_frame):
        self.send(M.Speed(steps_per_frame))

    def dataset_chosen(self, name, data):
        old = (self.dataset, self.data)
        was_image = dataset_is_image(*old)
        self.dataset, self.data = name, data
        if dataset_is_image(name, data) != was_image:
            self.apply_train_defaults()  # points and images train with different batches
        if not self.restart(f"dataset {os.path.basename(str(name))}"):
            self.dataset, self.data = old

    def family_chosen(self, name):
        w = self.win
        if self.preset_info:        # a lesson is about its own family: hide it for another one
            w.lesson.setVisible(name == self.preset_info["cfg"].family)
        w.sampler.set_family(w.family.cls())
        self.apply_train_defaults()
        self.restart(f"family {name}")

    def sampler_changed(self, name, options):
        w = self.win
        w.particles.set_sampler_name(name)
        w.samples.set_sampler_name(name)
        self.send(M.Sampler(name, dict(options or {})))
        if self.info is not None:
            w.particles.request()

    def train_changed(self, name, value):
        if name in M.LIVE_TRAIN_SETTINGS and self.worker is not None:
            try:
                self.send(M.SetTrain(name, value))
                self.cfg = self.current_config()
            except ConfigError as e:
                self.invalid(str(e))
        else:
            self.restart(f"{name} = {value}")

    def invalid(self, msg):
        self.errors.append(("Bad setting", msg))
        self.win.statusBar().showMessage(f"⚠ {msg} (the run goes on with the previous value)", 10000)

    def connect_panels(self):
        """The panels' own requests (issue 11): the checkpoint timeline's rewind and branch, the
        sampler lab's run and stop. Called by the shell once the registry's panels exist."""
        p = self.win.panels
        p["timeline"].rewindRequested.connect(lambda step: self.send(M.Rewind(step)))
        p["timeline"].branchRequested.connect(lambda step: self.send(M.Branch(step)))
        p["lab"].runRequested.connect(self.send)
        p["lab"].stopRequested.connect(lambda: self.send(M.StopLab()))

    def open_branch(self, msg: M.Branched):
        """Branch from here: the branched Run (weights, optimizer, generator of the checkpoint)
        opens in a comparison window beside a copy of this run at its current step
        (msg.original, taken by the paused session); this window keeps its run, paused."""
        from .compare.window import open_branch_comparison
        self.set_playing(False)
        if open_branch_comparison(self.win, msg) is not None:
            self.win.statusBar().showMessage(
                f"Branched from step {msg.step:,}: opened beside the original in a comparison window "
                f"(press Play there)", 8000)

    def request_particles(self, n):
        if self.info is not None and self.info.samplers:
            self.send(M.Particles(int(n)))

    # ================================================================ wants
    def want(self) -> dict:
        """The union of what the visible panels want (one loop over the registry)."""
        w = {}
        for spec in registry.PANELS:
            if spec.wants and self.win.panel_visible(spec.key):
                w.update(self.win.panels[spec.key].want())
        return w

    def update_want(self):
        try:
            want = M.Want.from_dict(self.want())
        except ConfigError as e:
            self.invalid(str(e))
            return
        if want != self.want_sent:
            self.want_sent = want
            self.send(want)

    # ================================================================ numbers
    def _note_play(self, on):
        """Training time of the current run (for steps_per_s): counted while playing and ready."""
        now = time.perf_counter()
        if self._play_since is not None:
            self._play_time += now - self._play_since
            self._play_since = None
        if on and self.info is not None:
            self._play_since = now

    def play_seconds(self) -> float:
        now = time.perf_counter()
        return self._play_time + (now - self._play_since if self._play_since is not None else 0.0)
