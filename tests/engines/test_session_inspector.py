"""The inspector probe, checkpoint rewind / branch and the sampler lab inside a Session (no Qt, no
thread; the real clock where training plays, since on a clock that barely moves training chunks
grow to their maximum): InspectorExtras go out with the snapshots, Rewind answers with the pictures
of a kept checkpoint, Branch hands over a Run holding the checkpoint's weights bit for bit, and a
RunLab job stops at the next sampler step once a command waits (or the session is cancelled)."""
import time

import pytest
import torch

from engines import messages as M
from engines.checkpoints import CheckpointPictures
from engines.config import ConfigError, RunConfig, TrainConfig
from engines.inspector import InspectorExtras
from engines.run import Run
from engines.session import Cancelled, Session


class FakeClock:
    def __init__(self, tick: float = 1e-3):
        self.t, self.tick = 0.0, tick

    def __call__(self):
        self.t += self.tick
        return self.t


def ddpm_session(pending=None, clock=time.perf_counter, **kw):
    cfg = RunConfig(dataset="8gaussians", family="ddpm", options=dict(hidden=32, depth=2, T=20),
                    train=TrainConfig(threads=1, n_data=400, batch=64))
    s = Session(cfg, clock=clock, make_run=Run, pending=pending, **kw)
    assert s.build()
    return s


def run_until(s, cond, max_jobs=20000):
    out = []
    for _ in range(max_jobs):
        out += s.drain()
        if cond(out):
            return out
        if not s.work() and isinstance(s.clock, FakeClock):
            s.clock.t += 0.05
    raise AssertionError(f"condition not reached; got {sorted({type(m).__name__ for m in out})}")


def of(kind, msgs):
    return [m for m in msgs if isinstance(m, kind)]


def trained(steps=400):
    s = ddpm_session()
    s.handle(M.Step(steps))
    run_until(s, lambda out: s.run.step >= steps)
    s.drain()
    return s


def test_probe_posts_inspector_extras_with_the_snapshots():
    s = ddpm_session()
    assert s.probe is not None and s.probe.ring.steps == [0]          # the untrained model is kept
    s.handle(M.Play(True))
    msgs = run_until(s, lambda out: any(e.strip is not None and len(e.strip.steps) >= 2
                                        and len(e.checkpoint_steps) >= 3 for e in of(InspectorExtras, out)))
    extras = of(InspectorExtras, msgs)
    assert all(e.run_id == s.run_id for e in extras)
    last = extras[-1]
    assert list(last.checkpoint_steps) == sorted(last.checkpoint_steps) and last.checkpoint_steps[0] == 0
    assert last.fisher is not None                                   # 8gaussians: the exact score is known
    # paced: far fewer extras than snapshots (a heat-strip row spans >= 0.5 s of the clock)
    assert len(extras) < len(of(M.Snapshot, msgs))


def test_rewind_posts_the_pictures_of_the_nearest_kept_checkpoint():
    s = trained()
    kept = s.probe.ring.steps
    # a target one step past a kept checkpoint whose next neighbour is at least 3 steps further,
    # so that exactly one kept checkpoint is the nearest (the ring may keep steps 0, 1, 2, ...)
    i = next(i for i in range(len(kept) - 1) if kept[i + 1] - kept[i] >= 3)
    s.handle(M.Rewind(kept[i] + 1))
    pics = of(CheckpointPictures, run_until(s, lambda out: of(CheckpointPictures, out)))[0]
    assert pics.step == kept[i] and pics.run_id == s.run_id
    assert pics.samples.shape == (500, 2) and pics.particles.shape[1:] == (500, 2)
    assert "score" in pics.field


def test_branch_hands_over_a_run_with_the_checkpoints_weights_bit_for_bit():
    s = trained()
    ckpt = s.probe.ring.items[len(s.probe.ring) // 2]
    s.handle(M.Branch(ckpt.step))
    b = of(M.Branched, run_until(s, lambda out: of(M.Branched, out)))[0]
    assert b.step == ckpt.step and b.run.step == ckpt.step and b.run is not s.run
    state = b.run.family.state_dict()
    assert state.keys() == ckpt.net.keys()
    for k, v in ckpt.net.items():
        assert torch.equal(state[k].cpu(), v), k
    assert ckpt.step < s.run.step                                    # the original is not rewound
    # and a copy of the original as it is now rides along, for the comparison window
    assert b.original is not s.run and b.original.step == s.run.step
    for k, v in s.run.family.state_dict().items():
        assert torch.equal(b.original.family.state_dict()[k], v), k
    # a session on the branched run goes on from there
    s2 = Session(b.run.cfg, clock=FakeClock(), run=b.run)
    assert s2.build() and s2.run.step == ckpt.step


def test_rewind_without_checkpoints_says_why():
    s = ddpm_session()
    s.probe = None
    s.handle(M.Rewind(0))
    assert "no checkpoints" in of(M.Notice, run_until(s, lambda out: of(M.Notice, out)))[0].text


def test_lab_job_measures_model_and_oracle_curves():
    s = trained(200)
    s.handle(M.RunLab((5,), n_samples=200))
    msgs = run_until(s, lambda out: of(M.LabResult, out))
    res = of(M.LabResult, msgs)[0]
    assert not res.cancelled and res.step == s.run.step and res.run_id == s.run_id
    sources = {c.source for c in res.curves}
    assert sources == {"model", "oracle"}
    model = {c.sampler for c in res.curves if c.source == "model"}
    assert {c.sampler for c in res.curves if c.source == "oracle"} <= model
    assert len(res.curves) == len({(r.source, r.sampler) for r in res.rows})
    prog = of(M.LabProgress, msgs)
    assert len(prog) == len(res.rows) and prog[-1].done == prog[-1].total == len(res.rows)


def test_lab_stops_at_the_next_sampler_step_when_a_command_waits():
    waiting = []
    s = ddpm_session(pending=lambda kinds: any(isinstance(c, kinds) for c in waiting))
    s.handle(M.RunLab((5, 10, 20), n_samples=200))
    seen = []
    orig = s.post

    def post(msg):                     # a Play arrives while the first row is reported
        orig(msg)
        if isinstance(msg, M.LabProgress):
            seen.append(msg)
            waiting.append(M.Play(True))
    s.post = post
    res = of(M.LabResult, run_until(s, lambda out: of(M.LabResult, out)))[0]
    assert res.cancelled and len(res.rows) == len(seen) == 1


def test_cancel_ends_a_running_lab():
    s = ddpm_session()
    s.handle(M.RunLab((5, 10, 20), n_samples=200))
    orig = s.post
    s.post = lambda msg: (orig(msg), isinstance(msg, M.LabProgress) and s.cancel())
    job = s.next_job(s.clock())
    while job.kind != "lab":
        job.run()
        job = s.next_job(s.clock())
    with pytest.raises(Cancelled):
        job.run()


def test_lab_commands_check_their_values():
    assert M.RunLab("20, 5,5").nfe == (5, 20)
    for bad in ("", "five", "0", "5, 2000"):
        with pytest.raises(ConfigError):
            M.RunLab(bad)
    with pytest.raises(ConfigError):
        M.Rewind(-1)


def test_a_rewind_yields_to_a_waiting_command_and_comes_back_after_it():
    waiting = []
    s = ddpm_session(pending=lambda kinds: any(isinstance(c, kinds) for c in waiting))
    s.drain()
    polls = []
    orig = s._rewind_should_stop
    s._rewind_should_stop = lambda: (polls.append(1), orig())[1]
    s.handle(M.Rewind(0))
    orig_sample, polls_at_play = Run.sample, []
    # a Play arrives while the rewind's sampler is on its third step (pictures_at samples on a
    # type(run) copy of the run: the spy class reaches it)
    s.run.__class__ = type("SpyRun", (Run,), dict(sample=lambda self, *a, **k: orig_sample(self, *a, **{
        **k, "callback": (lambda info, cb=k["callback"]: (info["i"] == 2 and not polls_at_play
                                                           and (polls_at_play.append(len(polls)),
                                                                waiting.append(M.Play(True))), cb(info)))})))
    job = s.next_job(s.clock())
    assert job.kind == "checkpoints"
    job.run()
    assert not of(CheckpointPictures, s.drain())                 # dropped mid-sampler...
    assert s.rewind_req == M.Rewind(0) and len(polls) == polls_at_play[0] + 1   # ...at the next poll, queued again
    waiting.clear()                                              # the Play handled: the rewind comes back
    pics = of(CheckpointPictures, run_until(s, lambda out: of(CheckpointPictures, out)))
    assert pics and pics[0].step == 0 and len(polls) > 10
