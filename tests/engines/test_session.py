"""The Session without Qt and without a thread: commands in, typed messages out, the rate
policy on a fake clock, cancellation inside construction / training / sampling, and the
lifecycle defects of issue 9 (samples that stop for good, Play that does nothing after a
divergence, non-finite particles)."""
import math
import threading
import time

import numpy as np
import pytest
import torch

from engines import messages as M
from engines.config import ConfigError, RunConfig, TrainConfig
from engines.pacing import BUDGETS, Budget, Pacer
from engines.run import Run
from engines.session import Cancelled, Session

TINY = dict(hidden=32, depth=2, T=20)


class FakeClock:
    """Time that moves only when told to (or by `tick` per call, for costs). Tests that play
    for a while use the real clock: on a clock that barely moves, training chunks grow to
    their maximum (5000 steps) and time-based targets never come."""

    def __init__(self, tick: float = 0.0):
        self.t, self.tick = 0.0, tick

    def __call__(self):
        self.t += self.tick
        return self.t


def cfg(family="ddpm", n_data=400, **train):
    return RunConfig(dataset="moons", family=family, options=dict(TINY) if family == "ddpm" else {},
                     train=TrainConfig(threads=1, n_data=n_data, batch=64, **train))


def session(clock=None, **kw):
    s = Session(kw.pop("config", None) or cfg(), clock=clock or FakeClock(tick=1e-3), make_run=Run, **kw)
    assert s.build()
    return s


def kinds(msgs):
    return [type(m).__name__ for m in msgs]


def run_until(s, cond, max_jobs=2000):
    for _ in range(max_jobs):
        if cond():
            return
        if not s.work():
            s.clock.t += 0.05 if isinstance(s.clock, FakeClock) else 0
    raise AssertionError("condition not reached")


# ---------------------------------------------------------------- the policy alone
def test_side_job_waits_by_its_measured_cost():
    p = Pacer(dict(field=Budget(share=0.1, min_period=0.2)))
    assert p.due("field", 0.0, playing=True)                      # never run: due at once
    p.record("field", 0.0, 0.5)                                   # it cost 0.5 s
    # at a 10% share it may run again 0.5 * (1/0.1 - 1) = 4.5 s after it ended
    assert not p.due("field", 0.5 + 4.4, playing=True)
    assert p.due("field", 0.5 + 4.5, playing=True)
    # paused, the trainer waits for nothing: only the minimum period applies
    assert p.due("field", 0.5 + 0.21, playing=False)
    # a cheap job runs at its maximum rate, not more often
    p = Pacer(dict(field=Budget(share=0.1, min_period=0.2)))
    p.record("field", 10.0, 10.001)
    assert not p.due("field", 10.1, playing=True) and p.due("field", 10.201, playing=True)


def test_chunk_grows_to_the_target_length():
    p = Pacer(chunk_s=0.02)
    for _ in range(40):                                            # 1 ms per step
        k = p.chunk
        p.record_chunk(k, k, k * 0.001)
    assert 15 <= p.chunk <= 25
    for _ in range(40):                                            # the model got 10x slower
        k = p.chunk
        p.record_chunk(k, k, k * 0.01)
    assert 1 <= p.chunk <= 3


# ---------------------------------------------------------------- messages
def test_build_posts_typed_run_info():
    s = session()
    (info,) = s.drain()
    assert isinstance(info, M.RunInfo) and info.family == "ddpm" and info.n_data == 400
    assert info.bounds is not None and info.preview.shape[1] == 2 and not info.is_image
    with pytest.raises(Exception):
        info.family = "other"                                      # frozen


def test_commands_are_range_checked_like_configs():
    with pytest.raises(ConfigError):
        M.SetTrain("lr", 5.0)                                      # above TrainConfig's 1.0
    with pytest.raises(ConfigError):
        M.SetTrain("n_data", 10)                                   # not a live setting
    with pytest.raises(ConfigError):
        M.Step(0)
    with pytest.raises(ConfigError):
        M.Want(samples=dict(n=10 ** 9))
    with pytest.raises(ConfigError):
        M.StopAt("loss", float("nan"))
    assert M.SetTrain("batch", "128").value == 128


def test_bad_sampler_option_is_an_error_message_not_a_crash():
    s = session()
    s.drain()
    s.handle(M.Sampler("ddim", dict(steps=-3)))
    (err,) = s.drain()
    assert isinstance(err, M.Error) and "steps" in err.text
    assert s.sampler == ""                                         # the previous sampler stays


def test_failed_build_is_a_fatal_error_message():
    s = Session(RunConfig(dataset="moons", family="no_such_family"), clock=FakeClock(), make_run=Run)
    assert not s.build() and s.finished
    (err,) = s.drain()
    assert isinstance(err, M.Error) and err.fatal


# ---------------------------------------------------------------- scheduling
def test_step_is_exact_and_every_loss_record_arrives_once():
    s = session()
    s.drain()
    s.handle(M.Step(7))
    run_until(s, lambda: s.run.step == 7 and not s.dirty)
    snaps = [m for m in s.drain() if isinstance(m, M.Snapshot)]
    assert sum(len(x.loss_steps) for x in snaps) == 7
    assert snaps[-1].step == 7


def test_play_trains_and_the_field_follows_the_want():
    s = session(want=M.Want(field=dict(resolution=6, level=None)))
    s.drain()
    s.handle(M.Play(True, 1))
    run_until(s, lambda: s.run.step >= 30)
    snaps = [m for m in s.drain() if isinstance(m, M.Snapshot)]
    fields = [x.field for x in snaps if x.field is not None]
    assert fields and fields[0]["score"].shape == (6, 6, 2)
    s.handle(M.Want())                                             # the field panel was closed
    s.handle(M.Play(False, 2))
    run_until(s, lambda: not s.dirty)
    s.drain()
    s.handle(M.Step(3))
    run_until(s, lambda: s.run.step >= 33 and not s.dirty)
    assert all(m.field is None for m in s.drain() if isinstance(m, M.Snapshot))


def test_slow_field_is_bounded_by_its_share_on_a_fake_clock():
    """A field that costs 1 s (on the fake clock) while training: at its share s it runs at most
    once per (1/s - 1) s of training, however often snapshots go out."""
    clock = FakeClock()
    s = session(clock=clock, want=M.Want(field=dict(resolution=4, level=None)))
    real_field = s.run.field

    def slow_field(**kw):
        clock.t += 1.0
        return real_field(**kw)
    s.run.field = slow_field
    real_train = s.run.train

    def train(k):                                                  # 2 ms per step on the fake clock
        clock.t += 0.002 * k
        return k if real_train(1) else 0
    s.run.train = train
    s.handle(M.Play(True, 1))
    n_fields, start = 0, clock.t
    for _ in range(3000):
        job = s.next_job(clock.t)
        if job is None:
            clock.t += 0.01
            continue
        job.run()
        n_fields += sum(1 for m in s.drain() if isinstance(m, M.Snapshot) and m.field is not None)
        if clock.t - start > 3.0 / BUDGETS["field"].share:
            break
    elapsed = clock.t - start
    share = BUDGETS["field"].share
    # at most its share of the time (plus the first one, due at once), and still refreshed
    assert 2 <= n_fields <= share * elapsed / 1.0 * 1.25 + 1


# ---------------------------------------------------------------- stop targets
def test_loss_target_pauses_with_a_notice():
    s = session(clock=time.perf_counter, stop_at=M.StopAt("loss", 1e6))     # any loss is below this
    s.handle(M.Play(True, 4))
    run_until(s, lambda: not s.playing)
    msgs = s.drain()
    state = [m for m in msgs if isinstance(m, M.State)]
    assert state and state[-1].playing is False and state[-1].seq == 4
    assert any(isinstance(m, M.Notice) and "target" in m.text for m in msgs)
    assert s.run.step >= 20


def test_quality_target_pauses_after_samples():
    s = session(clock=time.perf_counter, want=M.Want(samples=dict(n=200, every=0.1)),
                stop_at=M.StopAt("metric", 1e9))
    s.handle(M.Play(True, 1))
    run_until(s, lambda: not s.playing)
    msgs = s.drain()
    assert any(isinstance(m, M.Snapshot) and m.samples is not None for m in msgs)
    assert any(isinstance(m, M.Notice) and "energy distance" in m.text for m in msgs)


# ---------------------------------------------------------------- defects of issue 9
def test_samples_keep_coming_after_one_sampling_failure():
    s = session(want=M.Want(samples=dict(n=50, every=0.1)))
    real = s.run.sample
    calls = dict(n=0)

    def flaky(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("simulated sampling failure")
        return real(*a, **kw)
    s.run.sample = flaky
    s.handle(M.SamplesNow())
    run_until(s, lambda: calls["n"] >= 1 and not s.force_samples)
    assert any(isinstance(m, M.Error) and "simulated" in m.text for m in s.drain())
    s.handle(M.Step(2))                                            # the model changes
    run_until(s, lambda: any(isinstance(m, M.Snapshot) and m.samples is not None for m in list(s.outbox)))


def test_play_after_divergence_and_a_lower_lr_trains_again():
    s = session(clock=time.perf_counter)
    s.handle(M.Step(5))
    run_until(s, lambda: s.run.step == 5)
    s._checkpoint()                                                # a healthy model to go back to
    fam = s.run.family
    real_loss = fam.loss
    fam.loss = lambda batch, generator=None: (batch.sum() * float("nan"), {})
    s.handle(M.Play(True, 1))
    run_until(s, lambda: not s.playing)
    msgs = s.drain()
    assert any(isinstance(m, M.Error) and m.title == "Training diverged" for m in msgs)
    fam.loss = real_loss
    s.handle(M.SetTrain("lr", 1e-4))                               # what the message advises
    s.handle(M.Play(True, 2))
    assert s.playing and not s.run.diverged
    step = s.run.step
    run_until(s, lambda: s.run.step >= step + 10)
    assert all(torch.isfinite(p).all() for p in fam.net.parameters())


def test_non_finite_particles_are_counted_not_raised():
    s = session()
    real = s.run.sample

    def exploding(n, *a, callback=None, **kw):
        x = real(n, *a, callback=callback, **kw)
        x[: n // 2] = float("nan")
        return x
    s.run.sample = exploding
    s.handle(M.Particles(40))
    run_until(s, lambda: s.particles_req is None)
    (traj,) = [m for m in s.drain() if isinstance(m, M.Trajectory)]
    assert traj.diverged == 20 and traj.frames.shape[1:] == (40, 2)


def test_trajectory_frames_are_capped_by_bytes(monkeypatch):
    import engines.session_sampling as S
    monkeypatch.setattr(S, "MAX_TRAJECTORY_BYTES", 30 * 100 * 2 * 4)     # room for 30 frames of 100 points
    s = session()
    s.handle(M.Particles(100))
    run_until(s, lambda: s.particles_req is None)
    (traj,) = [m for m in s.drain() if isinstance(m, M.Trajectory)]
    assert traj.frames.nbytes <= 2 * 30 * 100 * 2 * 4 and traj.steps == 20
    assert traj.i[0] == 0 and traj.i[-1] == 19                     # first and last step kept


# ---------------------------------------------------------------- cancellation
def test_cancel_inside_sampling_within_one_sampler_step():
    s = session()
    s.handle(M.Particles(50))
    seen = []

    def cancel_on_third(info):
        seen.append(1)
        if len(seen) == 3:
            s.cancel()
    real = s.run.sample
    s.run.sample = lambda n, *a, callback=None, **kw: real(
        n, *a, callback=lambda info: (cancel_on_third(info), callback(info)), **kw)
    job = s.next_job(0.0)
    assert job.kind == "particles"
    with pytest.raises(Cancelled):
        job.run()
    assert len(seen) == 3


def test_a_waiting_command_interrupts_sampling_and_the_request_stays():
    pending = dict(on=False)
    s = session(pending=lambda kinds: pending["on"] and M.Play in kinds)
    s.handle(M.Particles(30))
    real = s.run.sample

    def sample(n, *a, callback=None, **kw):
        pending["on"] = True                                       # the user pressed Play meanwhile
        return real(n, *a, callback=callback, **kw)
    s.run.sample = sample
    s.next_job(0.0).run()
    assert s.particles_req is not None                             # dropped now, run again later
    assert any(isinstance(m, M.Progress) and m.done for m in s.drain())


def test_cancel_during_run_construction_of_a_large_dataset():
    """n_data = 10^7 takes seconds to generate: cancel() from another thread ends the build
    within half a second."""
    s = Session(cfg(n_data=10 ** 7), make_run=Run)
    t = threading.Thread(target=s.build)
    t.start()
    time.sleep(0.3)
    t0 = time.perf_counter()
    s.cancel()
    t.join(5)
    assert not t.is_alive() and time.perf_counter() - t0 < 0.5 + 0.5   # generous on a loaded machine
    assert s.finished and s.run is None and s.drain() == []


def test_run_iterate_goes_through_the_session():
    run = Run(cfg())
    snaps = list(run.iterate(steps_per_snapshot=10, max_steps=30))
    assert [x.step for x in snaps] == [10, 20, 30]
    assert isinstance(snaps[0], M.Snapshot) and sum(len(x.loss_steps) for x in snaps) == 30


def test_loss_history_is_bounded_and_the_whole_run_kept(monkeypatch):
    import engines.session_persist as S
    monkeypatch.setattr(S, "RAW_KEEP", 20)
    s = session()
    for _ in range(6):
        s.handle(M.Step(25))
        run_until(s, lambda: not s.steps_pending and not s.dirty)
    assert s.run.step == 150
    assert len(s.run.history_steps) <= 2 * 20 and len(s.run.history["loss"]) == len(s.run.history_steps)
    steps, values = s.history.series("loss")
    assert len(s.history) == 150 and steps[0] <= 2 and steps[-1] == 150
    assert sum(len(m.loss_steps) for m in s.drain() if isinstance(m, M.Snapshot)) == 150


def test_moving_the_level_reuses_the_reverse_chain_of_an_unchanged_model():
    """Digits, Family views: the t slider redoes only the cheap rows (issue 9: 4.6 s per move)."""
    c = RunConfig(dataset="digits", family="ddpm", options=dict(T=10),
                  train=TrainConfig(threads=1, n_data=64, batch=8))
    s = session(config=c, want=M.Want(views=dict(level=5)))
    fam = s.run.family
    calls = dict(n=0)
    real = fam.sample

    def counted(*a, **kw):
        calls["n"] += 1
        return real(*a, **kw)
    fam.sample = counted
    s.handle(M.Step(1))
    run_until(s, lambda: s.run.step == 1 and not s.dirty)
    fam._traj_cache = None                                         # a chain of the step-1 model
    s.handle(M.Want(views=dict(level=3)))
    run_until(s, lambda: not s.dirty)
    n = calls["n"]
    assert n >= 1
    for level in (2, 7, 9):
        key, _, view, version = fam._traj_cache
        fam._traj_cache = (key, time.perf_counter() - 10.0, view, version)   # an old chain (> 3 s)...
        s.handle(M.Want(views=dict(level=level)))                         # ...of the same model
        run_until(s, lambda: not s.dirty)
    views = [m.views for m in s.drain() if isinstance(m, M.Snapshot) and m.views]
    assert "t = 10" in views[-1]["forward"]["title"]          # index 9 is the papers' t = 10
    assert calls["n"] == n                                         # no new chain for a new t
