"""Panels that do not animate redraw one a frame, in turn (app/frame_turns.py), so that a frame's
paint stays short while training; none starves, and a panel with nothing to draw passes its turn."""
from app.frame_turns import TakeTurns


def run_frames(turns, keys, dirty, frames):
    drawn = []
    for _ in range(frames):
        got = []

        def draw_one(k):
            if dirty.get(k):
                dirty[k] = False
                got.append(k)
                return True
            return False
        turns.draw(keys, draw_one)
        drawn.append(got)
    return drawn


def test_at_most_one_panel_a_frame_and_every_dirty_panel_gets_its_turn():
    keys = ["field", "losses", "samples", "schedule"]
    dirty = dict.fromkeys(keys, True)
    drawn = run_frames(TakeTurns(), keys, dirty, 6)
    assert all(len(f) <= 1 for f in drawn)
    assert [f[0] for f in drawn[:4]] == keys and drawn[4:] == [[], []]


def test_round_robin_does_not_starve_a_panel_behind_a_busy_one():
    keys = ["losses", "field", "schedule"]
    t = TakeTurns()
    seen = []
    dirty = dict(schedule=True)
    for frame in range(9):                       # losses and field have new data every frame
        dirty.update(losses=True, field=True)
        seen += run_frames(t, keys, dirty, 1)[0]
    assert seen.count("schedule") == 1 and abs(seen.count("losses") - seen.count("field")) <= 1


def test_a_panel_that_declines_passes_the_turn_in_the_same_frame():
    keys = ["losses", "field"]
    t = TakeTurns()
    calls = []

    def draw_one(k):                             # losses is rate-limited this frame: returns False
        calls.append(k)
        return k == "field"
    assert t.draw(keys, draw_one) and calls == ["losses", "field"] and t.last == "field"
    assert not TakeTurns().draw([], draw_one)


def test_the_comparison_loss_overlay_redraws_at_most_five_times_a_second_and_loses_nothing(themed_app):
    import time

    from app.compare.views import LossOverlay
    overlay = LossOverlay()
    overlay.set_run("a", "ddpm", (200, 100, 50))
    overlay.add("a", [1, 2, 3], [1.0, 0.9, 0.8])
    assert overlay.draw()
    overlay.add("a", [4, 5], [0.7, 0.6])
    assert not overlay.draw() and overlay.dirty          # too soon: kept for a later frame
    overlay._last_draw = time.perf_counter() - 1.0 / LossOverlay.MAX_HZ
    assert overlay.draw() and not overlay.dirty
    xs, ys = overlay.curves["a"].getData()
    assert list(xs) == [1, 2, 3, 4, 5] and list(ys) == [1.0, 0.9, 0.8, 0.7, 0.6]
    overlay.deleteLater()


def test_the_loss_plots_history_stays_bounded_and_keeps_the_whole_run(themed_app, monkeypatch):
    """Hours of training: past MAX_POINTS records per term the older half is coarsened, so memory
    is flat while the first and the newest steps stay drawable (issue 9, bounded everything)."""
    import numpy as np

    from app.panels.losses import LossesPanel
    monkeypatch.setattr(LossesPanel, "MAX_POINTS", 4096)
    panel = LossesPanel()
    step, sizes = 0, []
    for _ in range(200):                                  # 200 snapshots of 300 steps: 60,000 records
        steps = np.arange(step + 1, step + 301, dtype=float)
        step += 300
        panel.append(steps, dict(loss=1.0 / np.sqrt(steps), kl=0.1 + 0 * steps))
        sizes.append(max(len(t.raw) for t in panel.terms.values()))
    assert max(sizes) <= LossesPanel.MAX_POINTS + 300
    for t in panel.terms.values():
        assert len(t.steps) == len(t.raw) == len(t.smooth)
        assert t.steps.v[0] <= 0.01 * step and t.steps.v[-1] == step   # the start (a mean of the first steps) and the newest
        assert t.count.v.sum() == step                          # every step is in exactly one record
        assert t.count.v.max() <= 0.05 * step                   # no record stands for a large part of the run
        assert np.all(np.diff(t.steps.v) > 0)
        assert len(t.raw.a) <= 4 * LossesPanel.MAX_POINTS    # the backing arrays are bounded too
    # the newest half is exact: the last records are the values appended
    loss = panel.terms["loss"]
    np.testing.assert_allclose(loss.raw.v[-300:], 1.0 / np.sqrt(np.arange(step - 299, step + 1)))
    assert panel.draw()
    panel.deleteLater()


def test_a_huge_history_at_once_is_compacted_below_the_cap_in_one_append(themed_app):
    """Opening a long run hands the panel its whole history at once: one append brings it under
    the cap (merging takes several pairwise passes), and every step is still counted once."""
    import numpy as np

    from app.panels.losses import LossesPanel
    panel = LossesPanel()
    n = 4 * LossesPanel.MAX_POINTS
    steps = np.arange(1, n + 1, dtype=float)
    panel.append(steps, dict(loss=1.0 + 0.5 * np.cos(steps / 1e4)))
    t = panel.terms["loss"]
    assert len(t.raw) <= LossesPanel.MAX_POINTS and t.count.v.sum() == n
    assert t.steps.v[0] < 0.001 * n and t.steps.v[-1] == n and t.raw.v[-1] == 1.0 + 0.5 * np.cos(n / 1e4)
    panel.deleteLater()
