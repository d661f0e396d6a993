"""The instruments of issue 11 beside a Session's training (engines/session.py): the inspector
probe (loss per noise level, a checkpoint ring, the score error on analytic data), rewinding to
and branching from a kept checkpoint, and the sampler lab as a cancellable job.

  probe      built with the run (InspectorProbe: LossBins on the family, checkpoint at step 0);
             `after_train` after every training chunk; its InspectorExtras go out with the
             snapshots, at most every EXTRAS_PERIOD_S (the Fisher curve limits itself further)
  Rewind     -> engines.checkpoints.CheckpointPictures of the checkpoint nearest the step
  Branch     -> messages.Branched: a new Run from that checkpoint, bit for bit (checkpoints.branch)
  RunLab     -> LabProgress per row, then one LabResult: engines.lab.run_lab on the model, then
             on the exact-score oracle of an analytic dataset (the ceiling), same samplers.
             should_stop is polled at every sampler step and is true once a Stop, Play, Step,
             StopLab, RunLab, Rewind or Branch waits, so the window stays responsive (< 0.5 s).
"""
from __future__ import annotations

import math

from . import lab
from . import messages as M
from .checkpoints import PicturesStopped, branch, capture, pictures_at
from .data import mixture
from .inspector import InspectorProbe
from .session_sampling import Cancelled

EXTRAS_PERIOD_S = 0.5             # a heat-strip row spans >= 0.5 s of training, not one 30 Hz frame
REWIND_SAMPLES = 500              # points a rewound checkpoint draws
LAB_INTERRUPTS = (M.Stop, M.Play, M.Step, M.StopLab, M.RunLab, M.Rewind, M.Branch)
REWIND_INTERRUPTS = (M.Stop, M.Play, M.Step, M.Rewind, M.Branch)   # a rewind in progress yields to these


class InspectorJobs:
    """Mixed into Session: uses its run, info, want, sampler, pacer, clock, check(), pending(),
    post(), _timed(), _fail() and _pause(). Call `_init_inspector()` in __init__."""

    def _init_inspector(self):
        self.probe: InspectorProbe | None = None
        self._extras_at = -math.inf
        # the latest Rewind / Branch / RunLab, kept by Session.handle (engines.session.KEPT_REQUESTS)
        # until next_job runs it; StopLab clears lab_req
        self.rewind_req: M.Rewind | None = None
        self.branch_req: M.Branch | None = None
        self.lab_req: M.RunLab | None = None

    def _make_probe(self, run) -> InspectorProbe | None:
        """Loss bins on the family and a checkpoint ring (step 0 kept now); None when the run cannot
        have one (the inspector then shows what RunInfo alone gives)."""
        try:
            return InspectorProbe(run, clock=self.clock)
        except Exception as e:
            self.post(M.Notice(f"checkpoint timeline unavailable: {e}"))
            return None

    def _after_train(self):
        if self.probe is not None:
            self.probe.after_train(self.run)     # a checkpoint when due (a geometric grid of steps)

    def _post_extras(self, now: float, force: bool = False):
        """The heat-strip row, the Fisher curve (analytic data) and the kept checkpoint steps."""
        if self.probe is None or (not force and now - self._extras_at < EXTRAS_PERIOD_S):
            return
        self._extras_at = now
        try:
            self.post(self._timed("extras", lambda: self.probe.extras(self.run, fisher=self.info.analytic)))
        except Cancelled:
            raise
        except Exception as e:
            self.probe = None                    # shown once, not every frame
            self._fail("The schedule inspector failed", e, pause=False)

    # ------------------------------------------------------------ checkpoints
    def _nearest_checkpoint(self, step: int):
        if self.probe is None:
            self.post(M.Notice("this run keeps no checkpoints"))
            return None
        try:
            return self.probe.ring.nearest(step)
        except LookupError as e:
            self.post(M.Notice(str(e)))
            return None

    def _checkpoint_jobs(self):
        """A waiting Branch, else a waiting Rewind (both between training chunks: the weights
        are not changing while they are read)."""
        if self.branch_req is not None:
            req, self.branch_req = self.branch_req, None
            self._branch(req.step)
        elif self.rewind_req is not None:
            req, self.rewind_req = self.rewind_req, None
            self._rewind(req.step)

    def _rewind(self, step: int):
        ckpt = self._nearest_checkpoint(step)
        if ckpt is None:
            return
        field = self.want.field or {}
        try:
            pics = self._timed("rewind", lambda: pictures_at(
                self.run, ckpt, resolution=int(field.get("resolution", 24)), level=field.get("level"),
                n=REWIND_SAMPLES, sampler=self.sampler or None, options=self.sampler_options,
                should_stop=self._rewind_should_stop))
        except PicturesStopped:                  # a newer Rewind replaces it; after other commands, again
            if self.rewind_req is None:
                self.rewind_req = M.Rewind(step)
            return
        except Cancelled:
            raise
        except Exception as e:
            self._fail(f"Rewinding to step {ckpt.step} failed", e, pause=False)
            return
        self.post(pics)

    def _rewind_should_stop(self) -> bool:
        """The session's check (Cancelled once it closes), then: does a command wait that the
        rewind should yield to? Polled at every sampler step of pictures_at."""
        self.check()
        return self.pending(REWIND_INTERRUPTS)

    def _branch(self, step: int):
        ckpt = self._nearest_checkpoint(step)
        if ckpt is None:
            return
        self._pause()                            # the branch goes on; this run waits
        try:
            new_run = branch(self.run, ckpt)
            original = branch(self.run, capture(self.run))   # this run now, for the comparison
        except Exception as e:
            self._fail(f"Branching from step {ckpt.step} failed", e, pause=False)
            return
        self.post(M.Branched(ckpt.step, new_run, original=original))

    # ------------------------------------------------------------ sampler lab
    def _lab_should_stop(self) -> bool:
        return self.cancel_event.is_set() or self.pending(LAB_INTERRUPTS)

    def _lab_job(self):
        req, self.lab_req = self.lab_req, None
        run = self.run
        rows: list = []
        offset = [0]                             # rows of the model's lab before the oracle's

        def progress(done, total, row):
            self.post(M.LabProgress(offset[0] + done, offset[0] + total, row.sampler, row.nfe, row.x_iid,
                                    row.source))

        def result(cancelled=False, message=""):
            res = lab.LabResult(tuple(rows), req.n_samples, str(run.cfg.dataset), run.cfg.family, cancelled,
                                lab.DEFAULT_READINGS)
            return M.LabResult(res.curves(), res.rows, step=run.step, n_samples=req.n_samples,
                               dataset=str(run.cfg.dataset), cancelled=cancelled, message=message)

        t0 = self.clock()
        try:
            try:
                model = lab.run_lab(run, req.nfe, req.n_samples, should_stop=self._lab_should_stop,
                                    progress=progress)
            except ValueError as e:              # the lab can budget none of this family's samplers
                self.post(result(message=str(e)))
                return
            rows += model.rows
            if model.cancelled:
                self.check()                     # a Stop / close ends the session here
                self.post(result(True, "stopped"))
                return
            if not rows:
                self.post(result(message=f"{run.family.title or run.family.name} has no sampler "
                                         f"with a budget of network evaluations"))
                return
            oracle = self._lab_oracle(run, req, progress, offset)
            if oracle is not None:
                rows += oracle.rows
                if oracle.cancelled:
                    self.check()
                    self.post(result(True, "stopped"))
                    return
            self.post(result())
        except Cancelled:
            raise
        except Exception as e:
            self.post(result(True, f"failed: {e}"))
            self._fail("The sampler lab failed", e, pause=False)
        finally:
            self.pacer.record("lab", t0, self.clock())

    def _lab_oracle(self, run, req: M.RunLab, progress, offset):
        """The exact-score oracle's lab (the ceiling) for the samplers the model ran, when the
        dataset is an analytic mixture and the model is not itself the oracle; else None."""
        ds = run.cfg.dataset
        if run.cfg.family == "exact" or not isinstance(ds, str) or mixture(ds) is None:
            return None
        names = {p.sampler for p in lab.plan(run.family, req.nfe)}
        ref = lab.oracle_run(ds, seed=run.cfg.train.seed)
        subset = [s for s in ref.family.applicable_samplers() if s in names]
        if not subset:
            return None
        offset[0] = len(lab.plan(run.family, req.nfe))
        # same n, same K starting-noise seeds, scored against the model's reference set
        return lab.run_lab(ref, req.nfe, req.n_samples, subset, source="oracle",
                           should_stop=self._lab_should_stop, progress=progress, scorer=run)
