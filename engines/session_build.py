"""Building a Session's Run (engines/session.py): the cancellable construction, and the RunInfo
that tells the window what the run is (its family, data, schedule, preview, sampler levels)
before any snapshot. A failure here ends the session with a fatal Error the person can act on.
"""
from __future__ import annotations

import traceback

import numpy as np
import torch

from . import messages as M
from .config import ConfigError
from .nets import count_parameters
from .session_sampling import Cancelled


def describe_error(e: BaseException) -> str:
    """The message a person can act on, with the last frames of the traceback for a bug report."""
    if isinstance(e, ConfigError):
        return str(e)
    tail = "".join(traceback.format_exception(type(e), e, e.__traceback__)[-3:]).strip()
    return f"{type(e).__name__}: {e}\n\n{tail}"


class RunBuilding:
    """Mixed into Session: uses its cfg, data, run_id, make_run, run, want, sampler, pacer,
    clock, check(), post() and _make_probe() (engines.session_inspect)."""

    def build(self) -> bool:
        """Construct the Run (cancellable); posts RunInfo, or a fatal Error and ends the session."""
        t0 = self.clock()
        try:
            if self.run is None:
                self.run = self.make_run(self.cfg, data=self.data, cancel=self.check)
            self.check()
            self.info = self._run_info(self.run, self.clock() - t0)
            self.probe = self._make_probe(self.run)
        except Cancelled:
            self.finished = True
            return False
        except ConfigError as e:
            self.post(M.Error("Bad setting", str(e), fatal=True))
            self.finished = True
            return False
        except Exception as e:
            self.post(M.Error("Could not start the run", describe_error(e), fatal=True))
            self.finished = True
            return False
        self.post(self.info)
        self.views_probe = not self.info.has_views
        # while playing, the first samples come one period into training, not before the first step
        self.pacer.last_end.setdefault("samples", self.clock())
        return True

    def _run_info(self, run, seconds: float) -> M.RunInfo:
        fam = run.family
        try:
            sch = fam.schedule() or {}
            schedule = {k: (v if k == "x_label" else (np.asarray(v[0], float), np.asarray(v[1], float)))
                        for k, v in sch.items()}
        except Exception as e:
            schedule = {}
            self.post(M.Notice(f"schedule unavailable: {e}"))
        idx = torch.randperm(len(run.data), generator=torch.Generator().manual_seed(0))
        preview = run.data[idx[:64 if run.is_image else 3000]].numpy().copy()
        self.check()
        try:    # does this family draw pictures of its own? (the window shows that panel then)
            has_views = bool(run.views(dict(self.want.views or {"n": 200})))
        except Exception:
            has_views = False
        return M.RunInfo(
            run_id=self.run_id, family=fam.name, title=fam.title or fam.name, summary=fam.summary,
            dataset=str(run.cfg.dataset), capabilities=frozenset(fam.capabilities),
            level=dict(fam.level) if fam.level else None, samplers=tuple(fam.samplers),
            default_sampler=fam.default_sampler, parameters=count_parameters(fam.net), device=str(run.device),
            is_image=run.is_image, data_shape=tuple(run.data.shape[1:]), n_data=len(run.data),
            trainable=fam.trainable, analytic="mixture_data" in fam.context, threads=torch.get_num_threads(),
            init_seconds=seconds, schedule=schedule, preview=preview,
            bounds=None if run.is_image else run.bounds(), sampler_levels=self._sampler_levels(),
            has_views=has_views)

    def _sampler_levels(self):
        try:
            name, opts = self.run.family.sampler_options(self.sampler or None, self.sampler_options)
            lv = self.run.family.sampler_levels(name, opts)
            return None if lv is None else np.asarray(lv, float)
        except Exception:
            return None
