"""The sampling jobs of a Session (engines/session.py): background samples for the Samples
panel and recorded particle trajectories, batched and capped by bytes, cancellable at every
sampler step through the sampler callback, interruptible by a waiting command (the job is then
run again when it is still wanted). Non-finite results are counted ("diverged"), never raised.
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import torch

from . import messages as M
from .mode_shares import component_shares

PROGRESS_S = 0.1                  # progress messages during long sampling
PROGRESS_AFTER_S = 1.0            # ...once a sampling job has run this long
MAX_TRAJECTORY_BYTES = 48 << 20   # recorded particle frames (decimated by 2 when exceeded)
MAX_SAMPLE_BYTES = 16 << 20       # one sample set
SAMPLE_BATCH_BYTES = 4 << 20      # sampled per call (images: a few hundred at a time)
MAX_SHARED_MODES = 8             # the particles' split per mixture component is shown up to this many


class Cancelled(Exception):
    """Raised at a cancellation check once Session.cancel() was called (from any thread)."""


class Interrupted(Exception):
    """A waiting command makes the running sampling job pointless or urgent: it is dropped,
    the command handled, and the job runs again later if still wanted."""


def _f(v) -> float:
    try:
        return math.nan if v is None else float(v)
    except (TypeError, ValueError):
        return math.nan


class SamplingJobs:
    """Mixed into Session: uses its run, want, sampler, pacer, clock, check(), pending(), post()."""

    def _sample_cap(self, n: int) -> int:
        """At most MAX_SAMPLE_BYTES of float32 samples."""
        per = 4 * int(np.prod(self.run.data.shape[1:]))
        return max(1, min(n, MAX_SAMPLE_BYTES // per))

    def _count_nfe(self):
        """A forward pre-hook on the sampling network counts network evaluations."""
        counter = [0]
        try:
            handle = self.run.family.model.register_forward_pre_hook(lambda mod, args: counter.__setitem__(0, counter[0] + 1))
        except Exception:
            handle = None
        return counter, handle

    def _samples_job(self):
        run, w = self.run, self.want.samples
        self.force_samples = False
        self.samples_step = run.step
        n = self._sample_cap(int(w["n"]))
        per = 4 * int(np.prod(run.data.shape[1:]))
        batch = max(1, SAMPLE_BATCH_BYTES // per)
        t0 = self.clock()
        state = dict(last=t0, i=0)
        total = self._steps_hint.get(self.sampler)

        def cb(info):
            self.check()
            if self.pending((M.Stop, M.Step, M.Sampler, M.Want, M.Play)):
                raise Interrupted()
            state["i"] += 1
            now = self.clock()
            if now - t0 > PROGRESS_AFTER_S and now - state["last"] >= PROGRESS_S:
                state["last"] = now
                self.post(M.Progress("samples", i=state["i"], total=total, elapsed=now - t0))
        counter, handle = self._count_nfe()
        try:
            parts, seed = [], run.cfg.train.seed + 1
            for start in range(0, n, batch):    # batched: memory stays flat for large image sets
                parts.append(run.sample(min(batch, n - start), self.sampler or None, self.sampler_options,
                                        seed=seed + start, callback=cb))
            x = torch.cat(parts)
            metrics = run.evaluate(x) if torch.isfinite(x).all() else dict(diverged=int((~torch.isfinite(x.flatten(1)).all(1)).sum()))
            if "fid" in metrics:
                metrics["reference"] = self._reference(len(x))
        except Interrupted:
            self.samples_step = -1           # not done: again right after the command
            self.force_samples = True
            self.post(M.Progress("samples", done=True))
            return
        except Cancelled:
            raise
        except Exception as e:
            # shown once; the samples stay wanted and are tried again at the next model change
            self._fail("Sampling failed", e, pause=False)
            self.post(M.Progress("samples", done=True))
            return
        finally:
            if handle is not None:
                handle.remove()
            self.pacer.record("samples", t0, self.clock())
        seconds = self.clock() - t0
        metrics.update(nfe=counter[0] // max(1, len(parts)),     # evaluations per sample set
                       sample_seconds=seconds, samples_step=run.step)
        self._post_samples(x.numpy().copy(), metrics)

    def _post_samples(self, samples: np.ndarray, metrics: dict):
        snap = self.run.snapshot({})
        self._keep_history(snap)
        self.post(replace(snap, samples=samples, metrics={**snap.metrics, **metrics}))
        q = metrics.get("energy_distance_x_iid")
        if q is not None and self.playing and self.stop_at.kind == "metric" and q <= self.stop_at.value:
            self._pause()
            self.post(M.Notice(f"Stopped at step {self.run.step}: energy distance {q:.2f} × iid "
                               f"reached the target {self.stop_at.value:g}"))

    def _reference(self, n: int) -> dict:
        """The digit classifier's figures for n real images of this run: what a perfect model's
        n samples would score (shown next to the samples' own)."""
        if n not in self._reference_cache:
            from .digit_classifier import run_metrics
            idx = torch.randperm(len(self.run.data), generator=torch.Generator().manual_seed(3))[:n]
            try:
                self._reference_cache[n] = run_metrics(self.run.cfg.dataset, self.run.data[idx])
            except Exception:
                self._reference_cache[n] = {}
        return self._reference_cache[n]

    def _particles_job(self):
        req, run = self.particles_req, self.run
        n = self._sample_cap(req.n)
        per_frame = 4 * n * int(np.prod(run.data.shape[1:]))
        frames, meta = [], []
        state = dict(stride=1, count=0, last=self.clock(), latest=None)
        total = self._steps_hint.get(self.sampler)
        t0 = self.clock()

        def cb(info):
            self.check()
            if self.pending((M.Stop, M.Particles, M.Sampler, M.Step, M.Play)):
                raise Interrupted()
            c, x = state["count"], info["x"]
            if c % state["stride"] == 0:
                frames.append(x.numpy().astype(np.float32, copy=True))
                meta.append((c, _f(info.get("t")), _f(info.get("sigma"))))
                if len(frames) * per_frame > MAX_TRAJECTORY_BYTES and len(frames) > 2:
                    del frames[1::2]
                    del meta[1::2]
                    state["stride"] *= 2
            state["count"] = c + 1
            state["latest"] = info
            now = self.clock()
            if now - state["last"] >= PROGRESS_S:
                state["last"] = now
                self.post(M.Progress("particles", i=c + 1, total=total, elapsed=now - t0,
                                     x=x.numpy().astype(np.float32, copy=True),
                                     t=_f(info.get("t")), sigma=_f(info.get("sigma"))))
        counter, handle = self._count_nfe()
        try:
            x = run.sample(n, self.sampler or None, self.sampler_options, seed=req.seed, callback=cb)
        except Interrupted:
            self.post(M.Progress("particles", done=True))
            return                            # the request stays: run again when due
        except Cancelled:
            raise
        except Exception as e:
            self.particles_req = None
            self._fail("Sampling failed", e, pause=False)
            self.post(M.Progress("particles", done=True))
            return
        finally:
            if handle is not None:
                handle.remove()
            self.pacer.record("particles", t0, self.clock())
        if self.particles_req is req:
            self.particles_req = None
        final = x.numpy().astype(np.float32, copy=True)
        if not frames or meta[-1][0] != state["count"] - 1:
            lt = state["latest"] or {}
            frames.append(final)
            meta.append((state["count"] - 1, _f(lt.get("t")), _f(lt.get("sigma"))))
        self._steps_hint[self.sampler] = state["count"]
        m = np.asarray(meta, dtype=float).reshape(-1, 3)
        bad = int((~np.isfinite(final.reshape(len(final), -1)).all(1)).sum())
        seconds = self.clock() - t0
        shares = weights = None
        mix = run.family.context.get("mixture_data")          # an analytic mixture, in data coordinates
        if mix is not None and final.ndim == 2 and len(mix.weights) <= MAX_SHARED_MODES:
            shares, weights = component_shares(mix, final), np.asarray(mix.weights, dtype=float)
        self.post(M.Trajectory(frames=np.stack(frames), i=m[:, 0], t=m[:, 1], sigma=m[:, 2], nfe=counter[0],
                               steps=state["count"], seconds=seconds, step=run.step, sampler=self.sampler,
                               diverged=bad, mode_shares=shares, mode_weights=weights))
        if self.want.samples and not run.diverged and bad == 0:
            # the trajectory's last frame is a fresh sample of the current model: it refreshes
            # the Samples panel too, instead of a second sampling pass
            try:
                metrics = run.evaluate(torch.from_numpy(final))
                if "fid" in metrics:
                    metrics["reference"] = self._reference(len(final))
            except Exception:
                metrics = {}
            metrics.update(nfe=counter[0], sample_seconds=seconds, samples_step=run.step)
            self._post_samples(final, metrics)
            self.samples_step = run.step
            self.force_samples = False
            self.pacer.last_end["samples"] = self.clock()
