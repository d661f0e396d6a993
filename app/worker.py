"""The one bridge between the window and the engines: a Run in a background thread.

The GUI talks to the worker only through `send(command, **kw)` (a queue) and reads what the
worker produced with `drain()` (a deque) on its own ~30 Hz timer. The worker never touches a
widget: everything it hands over is a plain value, a copied numpy array or an
`engines.run.Snapshot`. Messages (kind, payload) that come out:

    ready       dict: family, level, schedule, samplers, parameter count, device, data preview...
    snapshot    engines.run.Snapshot (losses since the last one; field/views/samples when asked)
    trajectory  dict: frames (F, n, ...) float32, t (F,), sigma (F,), i (F,), nfe, seconds
    progress    dict: i, total (or None), x (latest particles), t, sigma, elapsed (long sampling)
    state       dict: playing
    has_views   bool: after the first training steps, whether the family now draws views
    info        str for the status bar
    error       (title, message): shown in a message box; the run pauses, the window lives on

Commands: play(on), step(n), speed(steps_per_frame or None), set_train(name, value),
want(dict), sampler(name, options), particles(n), samples_now(), stop_at(kind, value).
`want` = dict(field=dict(resolution, level) | None, views=dict | None,
              samples=dict(n, every) | None).
"""
from __future__ import annotations

import collections
import math
import queue
import threading
import sys
import time
import traceback

import numpy as np
import torch
from PySide6 import QtCore

from engines.config import ConfigError
from engines.nets import count_parameters

from . import gcguard

EMIT_HZ = 30.0            # snapshots per second at most
FIELD_HZ = 5.0            # field re-evaluations per second while training (each one is redrawn)
VIEWS_HZ = 4.0            # family views per second while training
CHUNK_S = 0.02            # training chunk length at full speed: commands answered within ~20 ms
MAX_FRAMES = 240          # recorded trajectory frames (decimated by 2 when exceeded)
SAMPLING_SHARE = 0.25     # background sampling (samples, particle loops) takes at most ~this
                          # share of the worker's time while training: a slow model still trains
PROGRESS_S = 0.1          # progress messages during sampling
FRAME_HZ = 30.0           # the GUI's frame rate that "steps per frame" refers to



# The training thread hands the GIL back and forth with the GUI thread around every torch op.
# With CPython's default 5 ms switch interval the trainer can wait that long whenever the GUI
# runs Python drawing code; 0.5 ms measured 0.79x -> 0.85x of headless steps/s in
# `python main.py bench --gui` (0.82-0.85x over repeated runs), event-loop lateness unchanged (~10 ms p99).
GIL_SWITCH_INTERVAL_S = 0.0005


def share_the_gil():
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)

class Cancelled(Exception):
    """Raised inside a sampler callback when the worker is asked to stop."""


class Interrupted(Exception):
    """Raised inside a background sampling job when a command is waiting: the job is dropped,
    the command handled at once, and the job runs again later if it is still wanted."""


class Worker(QtCore.QThread):
    def __init__(self, cfg, data=None, playing: bool = False, want: dict | None = None,
                 speed: float | None = None, sampler: str = "", sampler_options: dict | None = None,
                 stop_at: tuple | None = None, play_seq: int = 0, parent=None):
        super().__init__(parent)
        self.cfg = cfg
        self.data = data
        self._cmds: queue.Queue = queue.Queue()
        self._out: collections.deque = collections.deque()
        self._stop = threading.Event()
        # thread-side state (set from the constructor before start, then only by commands)
        self.playing = playing
        self.want = dict(want or {})
        self.speed = speed
        self.sampler = sampler or ""
        self.sampler_opts = dict(sampler_options or {})
        self.stop_at = stop_at
        self.run_obj = None
        self.play_seq = play_seq     # the GUI's play/pause counter: stale pause notices are ignored
        self.idle = False            # True while the thread waits for commands with nothing to do
        self.total_steps_hint: dict = {}
        # where the thread's time goes (seconds): read by the GUI benchmark
        self.timing = dict(train=0.0, snapshot=0.0, samples=0.0, particles=0.0, cpu=0.0)

    # ================================================================ GUI side
    def send(self, cmd: str, **kw):
        self._cmds.put((cmd, kw))

    def drain(self) -> list:
        out = []
        while True:
            try:
                out.append(self._out.popleft())
            except IndexError:
                return out

    def start(self, *args):
        # while this thread runs, cyclic garbage (which may hold Qt objects) is collected on the
        # GUI thread only: a collection inside this thread could destroy widgets here and crash
        if not getattr(self, "_gc_held", False):
            self._gc_held = True
            gcguard.acquire()
        super().start(*args)

    def release_gc(self):
        """Give back the GUI-thread-only collection (call from the GUI thread once finished)."""
        if getattr(self, "_gc_held", False) and not self.isRunning():
            self._gc_held = False
            gcguard.release()

    def request_stop(self):
        self._stop.set()
        self._cmds.put(("stop", {}))

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Ask the thread to end and wait for it; True when it has ended."""
        self.request_stop()
        ok = (not self.isRunning()) or self.wait(int(timeout_s * 1000))
        if ok:
            self.release_gc()
        return ok

    # ================================================================ thread side
    def _post(self, kind, payload=None):
        self._out.append((kind, payload))

    def run(self):
        try:
            self._main()
        except Cancelled:
            pass
        except Exception as e:  # the loop catches its own errors; this is the last resort
            self._post("error", ("The training thread stopped", _describe(e)))
        finally:
            self.run_obj = None
            self._post("finished", None)

    def _main(self):
        from engines.run import Run
        t0 = time.perf_counter()
        try:
            run = Run(self.cfg, data=self.data)
        except ConfigError as e:
            self._post("error", ("Bad setting", str(e)))
            return
        except Exception as e:
            self._post("error", ("Could not start the run", _describe(e)))
            return
        self.run_obj = run
        self._post("ready", self._ready_info(run, time.perf_counter() - t0))
        self._loop(run)

    def _ready_info(self, run, seconds):
        fam = run.family
        info = dict(
            family=fam.name, title=fam.title or fam.name, summary=fam.summary, dataset=str(run.cfg.dataset),
            capabilities=set(fam.capabilities), level=dict(fam.level) if fam.level else None,
            samplers=list(fam.samplers), default_sampler=fam.default_sampler,
            parameters=count_parameters(fam.net), device=str(run.device),
            is_image=run.is_image, data_shape=tuple(run.data.shape[1:]), n_data=len(run.data),
            trainable=fam.trainable, analytic="mixture_data" in fam.context,
            threads=torch.get_num_threads(), init_seconds=seconds,
        )
        try:
            sch = fam.schedule() or {}
            info["schedule"] = {k: (v if k == "x_label" else (np.asarray(v[0], float), np.asarray(v[1], float)))
                                for k, v in sch.items()}
        except Exception as e:
            info["schedule"] = {}
            self._post("info", f"schedule unavailable: {e}")
        g = torch.Generator().manual_seed(0)
        idx = torch.randperm(len(run.data), generator=g)
        if run.is_image:
            info["preview"] = run.data[idx[:64]].numpy().copy()
        else:
            info["preview"] = run.data[idx[:3000]].numpy().copy()
            info["bounds"] = run.bounds()
        info["sampler_levels"] = self._sampler_levels(run)
        try:    # does this family draw pictures of its own? (the window shows that panel then)
            info["has_views"] = bool(run.views(dict(self.want.get("views") or {"n": 200})))
        except Exception:
            info["has_views"] = False
        self._ready_has_views = info["has_views"]
        return info

    def _sampler_levels(self, run):
        try:
            name, opts = run.family.sampler_options(self.sampler or None, self.sampler_opts)
            lv = run.family.sampler_levels(name, opts)
            return None if lv is None else np.asarray(lv, float)
        except Exception:
            return None

    # ---------------------------------------------------------------- the loop
    def _probe_views(self, run):
        """Once training has started, tell the GUI whether the family now draws pictures of its
        own (many only can after a first batch): it may bring their panel to the front."""
        self._views_probe = False
        try:
            self._post("has_views", bool(run.views({"n": 8})))
        except Exception:
            pass

    def _loop(self, run):
        self._views_probe = not self._ready_has_views
        self._dirty = True           # something the GUI has not seen yet
        self._force_field = True     # recompute the field at the next emit whatever the step
        self._force_views = True
        self._force_samples = False
        self._particles_req = None
        self._particles_not_before = 0.0
        self._chunk = 1             # grows to CHUNK_S of work: a slow model stays responsive
        self._budget, self._t_budget = 0.0, time.perf_counter()
        last_emit = 0.0
        last_field = last_views = -1e9
        field_step = views_step = -1
        self._last_samples, self._samples_step = time.perf_counter(), -1
        self._samples_cost = 0.0
        self._last_particles_end = -1e9
        while not self._stop.is_set():
            self.timing["cpu"] = time.thread_time()      # this thread's CPU seconds so far
            idle = not (self.playing or self._dirty or self._particles_req or self._force_samples)
            self.idle = idle and self._cmds.empty()
            self._handle_commands(run, block=idle)
            self.idle = False
            if self._stop.is_set() or not (self.playing or self._dirty or self._particles_req
                                           or self._force_samples):
                continue
            if self._particles_req is not None and (not self.playing or self._particles_req.get("now")
                                                    or time.perf_counter() >= self._particles_not_before):
                req, self._particles_req = self._particles_req, None
                t1 = time.perf_counter()
                final = self._particles(run, req)
                self._last_particles_end = time.perf_counter()
                self.timing["particles"] += self._last_particles_end - t1
                if final is not None and self.want.get("samples") and not run.diverged:
                    # the trajectory's last frame is a fresh sample of the current model: it
                    # refreshes the Samples panel too, instead of a second sampling pass
                    t1 = time.perf_counter()
                    try:
                        metrics = run.evaluate(torch.from_numpy(final))
                    except Exception:
                        metrics = {}
                    self._emit(run, extra=dict(samples=final, metrics=metrics, nfe=self._last_nfe,
                                               seconds=self._last_seconds))
                    self._last_samples, self._samples_step = time.perf_counter(), run.step
                    self._force_samples = False
                    self.timing["samples"] += time.perf_counter() - t1
                continue
            trained = self._train_chunk(run) if self.playing else 0
            if self._views_probe and run.step > 0:
                self._probe_views(run)
            if self._samples_due(run):
                t1 = time.perf_counter()
                samp = self._samples(run, self.want["samples"])
                t2 = time.perf_counter()
                self.timing["samples"] += t2 - t1
                self._last_samples, self._samples_cost = t2, t2 - t1
                if samp is not None:
                    self._emit(run, extra=samp)
                    last_emit = time.perf_counter()
                    continue
            now = time.perf_counter()
            if self._dirty and now - last_emit >= 1.0 / EMIT_HZ:
                w, want = self.want, {}
                if not w.get("field") or run.is_image:
                    self._force_field = False
                if w.get("views") is None:
                    self._force_views = False
                if w.get("field") and not run.is_image and (
                        self._force_field or (run.step != field_step and now - last_field >= 1.0 / FIELD_HZ)):
                    want["field"] = dict(w["field"])
                if w.get("views") is not None and (
                        self._force_views or (run.step != views_step and now - last_views >= 1.0 / VIEWS_HZ)):
                    want["views"] = dict(w["views"])
                try:
                    t1 = time.perf_counter()
                    self._emit(run, want)
                    self.timing["snapshot"] += time.perf_counter() - t1
                except Cancelled:
                    raise
                except Exception as e:
                    bad = "field" if "field" in want else "views" if "views" in want else None
                    if bad:
                        self.want.pop(bad, None)   # don't repeat a failing view every frame
                    self._fail(run, f"Computing the {bad or 'snapshot'} failed", e, pause=False)
                    continue
                if "field" in want:
                    last_field, field_step, self._force_field = now, run.step, False
                if "views" in want:
                    last_views, views_step, self._force_views = now, run.step, False
                last_emit = now
                # the next trained chunk marks it dirty again; a failed forced view is retried
                self._dirty = self._force_field or self._force_views
            elif not trained:
                time.sleep(0.003)   # paused with something pending, or slow motion between steps

    def _train_chunk(self, run) -> int:
        now = time.perf_counter()
        if self.speed is None:
            k = self._chunk
        else:   # slow motion: speed steps per GUI frame
            self._budget = min(self._budget + (now - self._t_budget) * self.speed * FRAME_HZ,
                               max(1.0, self.speed * 2))
            k = int(self._budget)
        self._t_budget = now
        if k <= 0:
            return 0
        try:
            t1 = time.perf_counter()
            trained = run.train(k)
            dt = time.perf_counter() - t1
            self.timing["train"] += dt
        except Exception as e:
            self._fail(run, "Training failed", e)
            return 0
        if self.speed is None:
            if trained:   # aim for CHUNK_S of work per chunk (commands answered within ~20 ms)
                self._chunk = int(min(max(1, self._chunk * math.sqrt(CHUNK_S / max(dt, 1e-4))), 5000))
        else:
            self._budget -= trained
        if trained:
            self._dirty = True
        if run.diverged:
            self.playing = False
            self._post("state", dict(playing=False, seq=self.play_seq, step=run.step))
            self._post("info", run.diverged)
            self._dirty = self._force_field = True
        elif self._check_stop_loss(run):
            self.playing = False
            self._post("state", dict(playing=False, seq=self.play_seq, step=run.step))
            self._dirty = True
        return trained

    def _samples_due(self, run) -> bool:
        w = self.want.get("samples")
        if not w or run.diverged:
            self._force_samples = False
            return False
        now = time.perf_counter()
        if self._force_samples:
            due = True
        elif run.step == self._samples_step:
            due = False
        elif self.playing:    # every `every` seconds, but never more than SAMPLING_SHARE of the time
            every = float(w.get("every", 3.0))
            wait = max(every, self._samples_cost * (1 / SAMPLING_SHARE - 1))
            # looping particle trajectories already refresh the samples (their last frame)
            looping = self._particles_req is not None or now - self._last_particles_end < 2 * every
            due = now - self._last_samples >= wait and not looping
        else:   # paused on a model the samples don't show yet
            due = now - self._last_samples >= 0.3
        if due:
            self._force_samples = False
            self._samples_step = run.step
        return due

    def _emit(self, run, want=None, extra=None):
        snap = run.snapshot(want or {})
        if snap.field is not None:
            lv = (want or {}).get("field", {}).get("level")
            snap.field["level"] = lv
            try:
                snap.field["alpha_sigma"] = run.level_sigma(lv)
            except Exception:
                snap.field["alpha_sigma"] = None
        if extra:
            snap.samples = extra["samples"]
            snap.metrics.update(extra["metrics"])
            snap.metrics["nfe"] = extra["nfe"]
            snap.metrics["sample_seconds"] = extra["seconds"]
            snap.metrics["samples_step"] = run.step
        self._post("snapshot", snap)

    def _fail(self, run, title, e, pause=True):
        if pause and self.playing:
            self.playing = False
            self._post("state", dict(playing=False, seq=self.play_seq, step=run.step))
        self._post("error", (title, _describe(e)))
        self._dirty = False

    def _check_stop_loss(self, run) -> bool:
        if not self.stop_at or self.stop_at[0] != "loss":
            return False
        h = run.history.get("loss")
        if not h or len(h) < 20:
            return False
        recent = float(np.mean(h[-50:]))
        if recent <= self.stop_at[1]:
            self._post("info", f"Stopped at step {run.step}: the loss (mean of the last 50 steps) "
                               f"{recent:.4g} reached the target {self.stop_at[1]:g}.")
            return True
        return False

    # ---------------------------------------------------------------- commands
    def _handle_commands(self, run, block: bool):
        try:
            cmd, kw = self._cmds.get(timeout=0.05) if block else self._cmds.get_nowait()
        except queue.Empty:
            return
        while True:
            self._command(run, cmd, kw)
            try:
                cmd, kw = self._cmds.get_nowait()
            except queue.Empty:
                return

    def _command(self, run, cmd, kw):
        if cmd == "stop":
            self._stop.set()
        elif cmd == "play":
            self.playing = bool(kw.get("on", True)) and not run.diverged
            if kw.get("on") and run.diverged:
                self._post("info", run.diverged)
            self.play_seq = int(kw.get("seq", self.play_seq))
            self._dirty = True
        elif cmd == "step":
            if self.playing:
                self.playing = False
                self._post("state", dict(playing=False, seq=self.play_seq, step=run.step))
            try:
                run.train(int(kw.get("n", 1)))
            except Exception as e:
                self._fail(run, "Training failed", e)
                return
            if run.diverged:
                self._post("info", run.diverged)
            self._dirty = self._force_field = self._force_views = True
        elif cmd == "speed":
            self.speed = kw.get("steps_per_frame")
        elif cmd == "set_train":
            name, value = kw["name"], kw["value"]
            try:
                if name == "lr":
                    run.set_lr(float(value))
                elif name in ("batch", "grad_clip"):
                    setattr(run.cfg.train, name, type(getattr(run.cfg.train, name))(value))
                self._post("info", f"{name} set to {value:g} from step {run.step} on")
            except ConfigError as e:
                self._post("error", ("Bad setting", str(e)))
        elif cmd == "want":
            old = self.want
            self.want = dict(kw["want"])
            if self.want.get("field") != old.get("field"):
                self._force_field = True
            if self.want.get("views") != old.get("views"):
                self._force_views = True
            if self.want.get("samples") and not old.get("samples"):
                self._force_samples = True
            self._dirty = True
        elif cmd == "sampler":
            self.sampler, self.sampler_opts = kw.get("name") or "", dict(kw.get("options") or {})
            self._post("sampler_levels", self._sampler_levels(run))
            self._force_samples = bool(self.want.get("samples"))
        elif cmd == "particles":
            self._particles_req = dict(kw)
        elif cmd == "samples_now":
            self._force_samples = True
        elif cmd == "stop_at":
            self.stop_at = kw.get("target")

    # ---------------------------------------------------------------- sampling work
    def _count_nfe(self, run):
        """A forward pre-hook on the sampling network counts network evaluations."""
        counter = [0]

        def hook(mod, args):
            counter[0] += 1
        try:
            handle = run.family.model.register_forward_pre_hook(hook)
        except Exception:
            handle = None
        return counter, handle

    def _samples(self, run, w):
        counter, handle = self._count_nfe(run)
        t0 = time.perf_counter()
        state = dict(last=t0, i=0)
        key = (self.sampler, tuple(sorted(self.sampler_opts.items())))
        total = self.total_steps_hint.get(key)

        def cb(info):
            if self._stop.is_set():
                raise Cancelled()
            if self._urgent(("stop", "step", "sampler", "want")):
                raise Interrupted()
            state["i"] += 1
            now = time.perf_counter()
            if now - t0 > 1.0 and now - state["last"] >= PROGRESS_S:
                state["last"] = now
                self._post("progress", dict(job="samples", i=state["i"], total=total, elapsed=now - t0))
        try:
            x = run.sample(int(w.get("n", 1000)), self.sampler or None, self.sampler_opts, callback=cb)
            metrics = run.evaluate(x)
        except Interrupted:
            self._samples_step = -1           # not done: try again right after the command
            self._force_samples = True
            self._post("progress_done", None)
            return None
        except Cancelled:
            raise
        except Exception as e:
            self.want.pop("samples", None)
            self._fail(run, "Sampling failed", e, pause=False)
            return None
        finally:
            if handle is not None:
                handle.remove()
        return dict(samples=x.numpy().copy(), metrics=metrics, nfe=counter[0],
                    seconds=time.perf_counter() - t0)

    def _urgent(self, kinds) -> bool:
        """Is a command of one of these kinds waiting (one that makes the running sampling
        job pointless, or that the user should not wait for)?"""
        with self._cmds.mutex:
            return any(c in kinds for c, _ in self._cmds.queue)

    def _particles(self, run, req):
        n = int(req.get("n", 1000))
        key = (self.sampler, tuple(sorted(self.sampler_opts.items())))
        total = self.total_steps_hint.get(key)
        frames, meta = [], []
        state = dict(stride=1, count=0, last=time.perf_counter(), latest=None)
        t0 = time.perf_counter()

        def cb(info):
            if self._stop.is_set():
                raise Cancelled()
            if self._urgent(("stop", "particles", "sampler")):
                raise Interrupted()
            c = state["count"]
            x = info["x"]
            if c % state["stride"] == 0:
                frames.append(x.numpy().astype(np.float32, copy=True))
                meta.append((c, _f(info.get("t")), _f(info.get("sigma"))))
                if len(frames) > MAX_FRAMES:
                    del frames[1::2]
                    del meta[1::2]
                    state["stride"] *= 2
            state["count"] = c + 1
            state["latest"] = (x, info)
            now = time.perf_counter()
            if now - state["last"] >= PROGRESS_S:
                state["last"] = now
                self._post("progress", dict(job="particles", i=c + 1, total=total,
                                            x=x.numpy().astype(np.float32, copy=True),
                                            t=_f(info.get("t")), sigma=_f(info.get("sigma")), elapsed=now - t0))

        counter, handle = self._count_nfe(run)
        try:
            x = run.sample(n, self.sampler or None, self.sampler_opts, seed=req.get("seed"), callback=cb)
        except Interrupted:
            self._post("progress_done", None)
            return None
        except Cancelled:
            raise
        except Exception as e:
            self._fail(run, "Sampling failed", e, pause=False)
            self._post("trajectory", None)
            return None
        finally:
            if handle is not None:
                handle.remove()
        final = x.numpy().astype(np.float32, copy=True)
        self._last_nfe, self._last_seconds = counter[0], time.perf_counter() - t0
        # while training, the next looped trajectory waits so sampling stays a minor share
        self._particles_not_before = time.perf_counter() + self._last_seconds * (1 / SAMPLING_SHARE - 1)
        if not frames or meta[-1][0] != state["count"] - 1:
            lt = state["latest"][1] if state["latest"] else {}
            frames.append(final)
            meta.append((state["count"] - 1, _f(lt.get("t")), _f(lt.get("sigma"))))
        self.total_steps_hint[key] = state["count"]
        m = np.asarray(meta, dtype=float).reshape(-1, 3)
        self._post("trajectory", dict(frames=np.stack(frames), i=m[:, 0], t=m[:, 1], sigma=m[:, 2],
                                      nfe=counter[0], steps=state["count"], seconds=time.perf_counter() - t0,
                                      step=run.step, sampler=self.sampler))
        return final if final.ndim == 2 or run.is_image else None


def _f(v):
    if v is None:
        return math.nan
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _describe(e: BaseException) -> str:
    """The message a person can act on, with the last frames of the traceback for a bug report."""
    if isinstance(e, ConfigError):
        return str(e)
    tb = traceback.format_exception(type(e), e, e.__traceback__)
    tail = "".join(tb[-3:]).strip()
    return f"{type(e).__name__}: {e}\n\n{tail}"
