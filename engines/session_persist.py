"""What a Session (engines/session.py) keeps of its run beyond the current moment: the whole
run's loss history within bounded memory, the files it writes on request (File > Save run,
Export losses), and the last good weights, so that a diverged run can go back and continue.
"""
from __future__ import annotations

import copy

import numpy as np

from . import messages as M
from .pacing import Budget

CHECKPOINT = Budget(share=0.01, min_period=5.0)     # last good weights, for recovery after divergence
RAW_KEEP = 65536                  # loss records the Run keeps as they were (stop target, hover)


class SavingAndRecovery:
    """Mixed into Session: uses its run, history (engines.history.History), _good (None until
    the first checkpoint), dirty, force_field, force_views and post()."""

    def _keep_history(self, snap):
        """The whole run's losses in the bounded multi-resolution History; the Run's own raw lists
        keep only the last RAW_KEEP records once they have been sent (memory flat over hours)."""
        self.history.append(snap.loss_steps, snap.losses)
        run = self.run
        n = len(run.history_steps)
        if n > 2 * RAW_KEEP and run._sent == n:
            cut = n - RAW_KEEP
            del run.history_steps[:cut]
            for v in run.history.values():
                del v[:cut]
            run._sent -= cut

    def _save(self, cmd):
        """File > Save run / Export losses, on this thread between jobs (the weights are not
        changing while they are read). A Notice when written, an Error naming the file if not."""
        from .bundle import save_bundle
        from .export import write_losses
        run = self.run
        if run is None:
            self.post(M.Error("Nothing to save yet", "The run is still being built; try again in a moment."))
            return
        try:
            steps, history = self._whole_run_losses()
            if isinstance(cmd, M.SaveRun):
                save_bundle(run, cmd.path, cmd.view_state, losses=(steps, history))
                self.post(M.Notice(f"Saved the run (step {run.step}) to {cmd.path}"))
            else:
                rows = write_losses(cmd.path, steps, history)
                self.post(M.Notice(f"Saved {rows} loss records to {cmd.path}"))
        except (OSError, ValueError) as e:
            self.post(M.Error("Could not save", f"{cmd.path}: {e}"))

    def _whole_run_losses(self) -> tuple:
        """(steps (k,), {term: (k,)}) over the whole run: the Run keeps only its last RAW_KEEP
        records, so when it has been trimmed the session's multi-resolution History is written
        (exact recent records, block means before them; steps rounded to integers)."""
        run, hist = self.run, self.history
        if len(hist) <= len(run.history_steps) or not hist.terms:
            return run.history_steps, run.history
        k = run._sent                                       # records not yet in a snapshot (nor in hist)
        tail = np.asarray(run.history_steps[k:], np.int64)
        steps = np.concatenate([np.rint(hist.series(hist.terms[0])[0]).astype(np.int64), tail])
        nan = np.full(len(tail), np.nan)
        return steps, {t: np.concatenate([hist.series(t)[1],
                                          np.asarray(run.history[t][k:], np.float64) if t in run.history else nan])
                       for t in hist.terms}

    # ------------------------------------------------------------ divergence
    def _checkpoint(self):
        """Copy the weights and optimizer state of a healthy model (bounded by CHECKPOINT's share)."""
        run = self.run
        fam = run.family
        self._good = (run.step, copy.deepcopy(fam.net.state_dict()),
                      copy.deepcopy(fam.ema_net.state_dict()) if fam.ema_net is not None else None,
                      [copy.deepcopy(o.state_dict()) for o in run.optimizers])

    def _recover(self) -> bool:
        """After a divergence: back to the last good weights, so that a lowered learning rate
        (the message's advice) and Play continue the run. False when there is nothing to go back to."""
        run = self.run
        if not run.diverged or self._good is None:
            return not run.diverged
        step, net, ema, opts = self._good
        fam = run.family
        fam.net.load_state_dict(net)
        if ema is not None and fam.ema_net is not None:
            fam.ema_net.load_state_dict(ema)
        for o, s in zip(run.optimizers, opts):
            o.load_state_dict(copy.deepcopy(s))
        run.diverged = ""
        self.post(M.Notice(f"weights restored from step {step} (before the divergence); "
                           f"learning rate {run.lr:g}"))
        self.dirty = self.force_field = self.force_views = True
        return True
