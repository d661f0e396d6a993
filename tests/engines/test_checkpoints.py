"""Checkpoint ring: bounded in count and bytes, denser early; a branched run starts from the
checkpoint's weights bit for bit and continues exactly like the original."""
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from engines.checkpoints import CheckpointRing, PicturesStopped, branch, capture, pictures_at
from engines.config import RunConfig
from engines.run import Run


def fake_run(width=8):
    """The parts of a Run a checkpoint reads, around a small linear layer."""
    net = torch.nn.Linear(width, width)
    fam = SimpleNamespace(state_dict=net.state_dict, ema_net=None, extra_state=dict, net=net)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    return SimpleNamespace(family=fam, optimizers=[opt], generator=torch.Generator().manual_seed(0), lr=1e-3, step=0)


def test_ring_is_bounded_in_count_and_denser_early():
    run, ring = fake_run(), CheckpointRing(max_count=10, growth=1.1)
    for step in range(5000):
        run.step = step
        ring.offer(run)
        assert len(ring) <= 10
    steps = ring.steps
    assert steps[0] == 0 and len(steps) == 10 and steps == sorted(steps)
    assert steps[-1] * 1.1 + 1 >= 4999                     # the latest due step is kept...
    assert np.median(steps) < 0.05 * steps[-1]             # ...and half of them lie in the first 5%
    log_gaps = np.diff(np.log(np.array(steps) + 1.0))
    assert log_gaps.max() <= 2 * math.log(steps[-1] + 1) / (len(steps) - 1)   # no hole in log-step


def test_ring_is_bounded_in_bytes():
    run = fake_run(64)
    run.family.net(torch.ones(1, 64)).sum().backward()
    run.optimizers[0].step()                               # Adam now holds its two moments
    one = capture(run).nbytes
    assert one >= 3 * (64 * 64 + 64) * 4                   # weights + exp_avg + exp_avg_sq, float32
    ring = CheckpointRing(max_count=50, max_bytes=4 * one + one // 2, growth=1.05)
    for step in range(1, 3000):
        run.step = step
        ring.offer(run)
        assert ring.nbytes <= ring.max_bytes
    assert len(ring) == 4 and ring.steps[0] == 1
    assert CheckpointRing(max_bytes=10).offer(run) is False          # one copy over budget: none kept


def test_nearest_and_empty_ring():
    ring = CheckpointRing()
    with pytest.raises(LookupError, match="train"):
        ring.nearest(5)
    run = fake_run()
    for s in (0, 10, 100):
        run.step = s
        ring.offer(run, force=True)
    assert ring.nearest(60).step == 100 and ring.nearest(40).step == 10


@pytest.fixture(scope="module")
def trained():
    cfg = RunConfig(dataset="moons", family="ddpm", train=dict(n_data=1000, batch=128, threads=1, warmup=20))
    run = Run(cfg)
    ring = CheckpointRing(max_count=8)
    for _ in range(80):
        ring.offer(run)
        run.train(1)
    return run, ring


def test_branch_starts_from_the_checkpoints_weights_bit_for_bit(trained):
    run, ring = trained
    ckpt = ring.nearest(15)
    assert 0 < ckpt.step < run.step
    new = branch(run, ckpt)
    assert new.step == ckpt.step and new is not run
    for (k, v), (k2, w) in zip(new.family.net.state_dict().items(), ckpt.net.items()):
        assert k == k2 and torch.equal(v, w)
    for v, w in zip(new.family.ema_net.state_dict().values(), ckpt.ema.values()):
        assert torch.equal(v, w)
    saved = ckpt.optimizers[0]["state"]
    for i, st in new.optimizers[0].state_dict()["state"].items():
        assert all(torch.equal(st[k].cpu(), saved[i][k]) for k in st)
    # trained on to the original's step, the branch repeats the original exactly (same batches,
    # same noise, same Adam moments and warm-up)
    new.train(run.step - ckpt.step)
    for v, w in zip(new.family.net.state_dict().values(), run.family.net.state_dict().values()):
        assert torch.equal(v, w)
    # and the original is untouched by branching
    assert run.step == 80


def test_pictures_rewind_the_field_and_samples(trained):
    run, ring = trained
    first, last = ring.items[0], ring.items[-1]
    p0 = pictures_at(run, first, resolution=8, n=64, frames=5)
    p1 = pictures_at(run, last, resolution=8, n=64, frames=5)
    assert p0.step == 0 and p0.field["score"].shape == (8, 8, 2)
    assert not np.allclose(p0.field["score"], p1.field["score"])       # the model changed in between
    assert p0.samples.shape == (64, 2) and p0.particles.shape[1:] == (64, 2) and len(p0.particles) == 5
    again = pictures_at(run, last, resolution=8, n=64, frames=5)
    assert np.array_equal(again.samples, p1.samples) and np.array_equal(again.field["score"], p1.field["score"])


def test_pictures_stop_within_one_sampler_step_on_a_fake_clock(trained, monkeypatch):
    """should_stop is polled at every sampler step: with a fake clock that advances 0.1 s a step,
    a rewind asked to stop at 0.5 s ends at the first poll past it, not at the end of the sampler."""
    run, ring = trained
    full = pictures_at(run, ring.items[-1], resolution=8, n=64, frames=5)
    polls, steps, now = [], [], [0.0]
    original = Run.sample

    def sample(self, n, sampler=None, options=None, seed=None, callback=None):
        def cb(info):                  # one sampler step = 0.1 s of the fake clock
            now[0] += 0.1
            steps.append(info["i"])
            callback(info)
        return original(self, n, sampler, options, seed=seed, callback=cb)

    def should_stop():
        polls.append(now[0])
        return now[0] >= 0.5

    monkeypatch.setattr(Run, "sample", sample)
    with pytest.raises(PicturesStopped):
        pictures_at(run, ring.items[-1], resolution=8, n=64, frames=5, should_stop=should_stop)
    assert polls[-1] >= 0.5 and all(t < 0.5 for t in polls[:-1])   # stopped at the first poll past 0.5 s
    assert polls[-1] < 0.5 + 0.1 + 1e-9 and len(steps) == 5           # within one step of the deadline
    # never asked to stop: the same pictures as without should_stop
    steps.clear()
    again = pictures_at(run, ring.items[-1], resolution=8, n=64, frames=5, should_stop=lambda: False)
    assert np.array_equal(again.samples, full.samples) and len(steps) > 5


def test_pictures_let_the_sessions_own_cancellation_through(trained):
    run, ring = trained

    class Closed(Exception):
        pass

    def check():
        raise Closed

    with pytest.raises(Closed):
        pictures_at(run, ring.items[-1], resolution=8, n=64, frames=5, should_stop=check)
