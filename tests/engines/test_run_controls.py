"""Live training settings reach the optimizer / loader at the next step (issue 8, item 4), and a
Run is self-contained: its own generators, no global RNG or thread count touched (item 5)."""
import dataclasses
import threading

import pytest
import torch

from engines import controls
from engines import run as run_module
from engines.config import ConfigError, RunConfig, TrainConfig, build
from engines.run import Run, configure_threads


def small_run(family="ddpm", seed=0, **train):
    t = dict(batch=32, n_data=500, warmup=10, lr=1e-3, ema=0.9, seed=seed)
    t.update(train)
    options = dict(hidden=16, depth=1, T=20) if family == "ddpm" else {}
    return Run(RunConfig(dataset="moons", family=family, options=options, train=build(TrainConfig, t)))


def record_steps(run):
    """Per optimizer step: (lr, weight_decay) of every optimizer's first group, as the step sees them."""
    seen = []
    for i, o in enumerate(run.optimizers):
        o.register_step_pre_hook(lambda opt, args, kw, i=i: seen.append((i, opt.param_groups[0]["lr"],
                                                                         opt.param_groups[0]["weight_decay"])))
    return seen


def record_train_step(run):
    """Per training step: (batch size, grad_clip) the family's train_step was called with."""
    calls, inner = [], run.family.train_step

    def spy(batch, optimizers, clip, generator=None):
        calls.append((batch.shape[0], clip))
        return inner(batch, optimizers, clip, generator)
    run.family.train_step = spy
    return calls


# ----------------------------------------------------------------------------- the table

def test_every_train_setting_is_either_live_or_fixed_with_a_reason():
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(controls.LIVE) | set(controls.FIXED) == names
    assert not set(controls.LIVE) & set(controls.FIXED)
    run = small_run()
    for name, reason in controls.FIXED.items():
        with pytest.raises(ConfigError, match=name) as e:
            run.set_train_setting(name, getattr(run.cfg.train, name))
        assert reason in str(e.value)


@pytest.mark.parametrize("name,value", [("lr", -1.0), ("lr", "fast"), ("batch", 0), ("batch", 2.5),
                                        ("ema", 1.5), ("grad_clip", -1), ("warmup", -3), ("nope", 1)])
def test_bad_values_are_refused_and_change_nothing(name, value):
    run = small_run()
    before = dataclasses.asdict(run.cfg.train)
    with pytest.raises(ConfigError):
        run.set_train_setting(name, value)
    assert dataclasses.asdict(run.cfg.train) == before


# ----------------------------------------------------------------------------- one test per live setting

def test_lr_after_warmup_reaches_the_next_step():
    run = small_run(warmup=5)
    run.train(8)                                    # warm-up over: the lr is the base lr
    seen = record_steps(run)
    run.set_train_setting("lr", 4e-3)
    run.train(2)
    assert [lr for _, lr, _ in seen] == pytest.approx([4e-3, 4e-3])
    assert run.lr == run.cfg.train.lr == 4e-3
    assert run.set_lr(2e-3) == 2e-3                 # the app's alias
    run.train(1)
    assert seen[-1][1] == pytest.approx(2e-3)


def test_lr_during_warmup_scales_the_ramp():
    run = small_run(warmup=10)
    seen = record_steps(run)
    run.train(3)                                    # factors 1/10, 2/10, 3/10
    run.set_train_setting("lr", 1e-2)
    run.train(2)                                    # factors 4/10, 5/10 of the new lr
    assert [lr for _, lr, _ in seen] == pytest.approx([1e-4, 2e-4, 3e-4, 4e-3, 5e-3])


def test_warmup_change_applies_to_the_next_step():
    run = small_run(warmup=100)
    seen = record_steps(run)
    run.train(4)
    run.set_train_setting("warmup", 0)              # warm-up switched off: full lr at once
    run.train(1)
    run.set_train_setting("warmup", 10)             # step 5 of a 10-step warm-up: factor 6/10
    run.train(1)
    assert [lr for _, lr, _ in seen][-2:] == pytest.approx([1e-3, 6e-4])


def test_weight_decay_reaches_the_optimizer():
    run = small_run()
    seen = record_steps(run)
    run.train(1)
    run.set_train_setting("weight_decay", 0.05)
    run.train(1)
    assert [wd for _, _, wd in seen] == [0.0, 0.05]


def test_batch_and_grad_clip_reach_the_next_step():
    run = small_run(batch=32, grad_clip=1.0)
    calls = record_train_step(run)
    run.train(1)
    run.set_train_setting("batch", "64")            # strings from a form are coerced
    run.set_train_setting("grad_clip", 0.25)
    run.train(1)
    assert calls == [(32, 1.0), (64, 0.25)]


def test_ema_off_and_on_mid_run():
    run = small_run(ema=0.9)
    run.train(3)
    run.set_train_setting("ema", 0.0)               # off: sampling uses the trained weights
    assert run.family.ema_net is None and run.family.model is run.family.net
    run.train(1)
    run.set_train_setting("ema", 0.5)               # on again: starts from the current weights
    ema = run.family.ema_net
    assert ema is not None and ema is not run.family.net
    start = [p.detach().clone() for p in run.family.net.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(start, ema.parameters()))
    run.train(1)                                    # theta_ema <- d theta_ema + (1 - d) theta
    d = min(0.5, (1 + run.step) / (10 + run.step))  # the new decay, with the Run's early-step ramp
    for s, e, p in zip(start, ema.parameters(), run.family.net.parameters()):
        assert torch.allclose(e, d * s + (1 - d) * p.detach(), atol=1e-6)


def test_gan_lr_change_keeps_the_two_optimizers_ratio():
    run = small_run("gan", warmup=0)
    seen = record_steps(run)
    g0, d0 = (o.param_groups[0]["lr"] for o in run.optimizers)
    run.set_train_setting("lr", run.cfg.train.lr * 3)
    run.train(1)
    lrs = {i: lr for i, lr, _ in seen}
    assert lrs[0] == pytest.approx(3 * g0) and lrs[1] == pytest.approx(3 * d0)


# ----------------------------------------------------------------------------- item 5: self-contained

def fingerprint(run):
    return [p.detach().clone() for p in run.family.net.parameters()], list(run.history.get("loss", []))


def same(a, b):
    return len(a[0]) == len(b[0]) and all(torch.equal(x, y) for x, y in zip(a[0], b[0])) and a[1] == b[1]


def test_constructing_a_run_leaves_the_global_rng_and_threads_alone():
    threads = torch.get_num_threads()
    state = torch.get_rng_state()
    run = small_run(threads=threads + 1)
    run.train(3)
    run.sample(50)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.get_num_threads() == threads
    assert configure_threads(1) == 1 and torch.get_num_threads() == 1
    configure_threads(threads)


def test_same_seed_same_run_bit_for_bit_with_other_runs_interleaved():
    reference = small_run(seed=3)
    reference.train(15)
    want = fingerprint(reference)
    # three quick Resets: runs built and trained interleaved, the global RNG drawn from in between
    a = small_run(seed=3)
    torch.rand(100)
    b = small_run(seed=4)
    a.train(5)
    torch.manual_seed(123)
    c = small_run(seed=3)
    b.train(5)
    a.train(10)
    c.train(15)
    assert same(fingerprint(a), want) and same(fingerprint(c), want)
    assert not same(fingerprint(b), want)
    assert torch.equal(a.sample(200), reference.sample(200))


def test_runs_built_on_three_threads_at_once_match():
    reference = fingerprint(small_run(seed=5))
    out, barrier = {}, threading.Barrier(3)

    def reset(k):
        barrier.wait()
        out[k] = fingerprint(small_run(seed=5))
    workers = [threading.Thread(target=reset, args=(k,)) for k in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert all(same(out[k], reference) for k in range(3))


def test_large_sample_requests_are_drawn_in_chunks(monkeypatch):
    monkeypatch.setattr(run_module, "SAMPLE_CHUNK_VALUES", 200)        # 100 points of 2 values
    run = small_run()
    sizes, inner = [], run.family.sample

    def spy(n, sampler=None, options=None, generator=None, callback=None):
        sizes.append((n, callback is not None))
        return inner(n, sampler, options, generator=generator, callback=callback)
    run.family.sample = spy
    frames = []
    x = run.sample(250, callback=lambda info: frames.append(info["x"].shape[0]))
    assert x.shape == (250, 2) and torch.isfinite(x).all()
    assert sizes == [(100, True), (100, False), (50, False)]
    assert frames and set(frames) == {100}                             # callbacks: the first chunk only
    assert torch.equal(run.sample(250), x)                             # same seed, same chunks
