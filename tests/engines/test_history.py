"""The bounded loss history: exact recent records, block means before them, memory flat
however many records arrive (issue 9: 250 MB per hour before)."""
import numpy as np

from engines.history import History, loss_mean_recent


def test_recent_records_are_exact_and_old_ones_are_block_means():
    h = History(capacity=64, factor=4, levels=6)
    steps = np.arange(1, 1001)
    h.append(steps, dict(loss=steps * 2.0))
    s, v = h.series("loss")
    assert np.all(np.diff(s) > 0)                                  # increasing steps, no overlap
    assert np.array_equal(s[-64:], steps[-64:]) and np.array_equal(v[-64:], 2.0 * steps[-64:])
    # a linear series: every block mean lies on the line at its mean step
    assert np.allclose(v, 2 * s)
    assert s[0] < 50                                               # the start of the run is still drawn
    assert np.array_equal(h.recent("loss", 10), 2.0 * steps[-10:])
    assert len(h) == 1000


def test_memory_is_flat_over_many_records():
    h = History(capacity=256, factor=4, levels=10)
    sizes = []
    for k in range(200):
        st = np.arange(k * 5000, (k + 1) * 5000)
        h.append(st, dict(loss=np.ones(5000), aux=np.zeros(5000)))
        sizes.append(h.nbytes())
    assert sizes[-1] == sizes[10]                                  # no growth
    s, v = h.series("loss")
    assert len(s) <= 10 * 256 and s[0] < 5000 and s[-1] == 999_999
    assert np.allclose(v, 1.0)


def test_appending_in_pieces_equals_appending_at_once():
    rng = np.random.default_rng(0)
    vals = rng.normal(size=3000)
    a, b = History(capacity=32, factor=4, levels=6), History(capacity=32, factor=4, levels=6)
    a.append(np.arange(3000), dict(loss=vals))
    for i in range(0, 3000, 7):
        b.append(np.arange(i, min(i + 7, 3000)), dict(loss=vals[i:i + 7]))
    for x, y in zip(a.series("loss"), b.series("loss")):
        assert np.allclose(x, y)


def test_a_term_that_appears_later_is_nan_before():
    h = History(capacity=16, factor=2, levels=4)
    h.append(np.arange(10), dict(loss=np.ones(10)))
    h.append(np.arange(10, 20), dict(loss=np.ones(10), gp=np.full(10, 3.0)))
    s, v = h.series("gp")
    assert np.isnan(v[s < 10]).all() and (v[s >= 10] == 3.0).all()


def test_loss_mean_recent():
    assert loss_mean_recent([1.0] * 5) is None
    assert loss_mean_recent(list(range(100)), 50) == np.mean(range(50, 100))
