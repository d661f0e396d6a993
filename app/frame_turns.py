"""Which panels redraw in a frame: animating panels every frame, the others one a frame, in turn.

Measured while training (event filter + timers on the GUI thread, 2-core machine): a frame in
which the loss plot, the field and the schedule all had new data repainted them one after the
other in the same event-loop pass, 15-25 ms with the particles' animation, and the 10 ms
heartbeat fired that late. Data panels change a few times a second (losses <= 5 Hz, the field's
rate is set by its cost), so letting them take turns delays a redraw by at most a frame or two
(33-66 ms) while a frame's paint is bounded by the animation plus one plot.
"""
from __future__ import annotations

from typing import Callable, Sequence


def draw_guarded(panel, on_error: Callable[[Exception], None]) -> bool:
    """panel.draw(); a failure is reported once (on_error) and never starves the other panels."""
    try:
        return panel.draw()
    except Exception as e:
        panel.dirty = False
        on_error(e)
        return False


class TakeTurns:
    """Round-robin over the turn-taking panels: each frame, the first one after the panel that
    drew last whose draw() actually draws (a panel with nothing new, or held back by its own
    rate limit, returns False and passes the turn on within the same frame)."""

    def __init__(self):
        self.last: str | None = None

    def draw(self, keys: Sequence[str], draw_one: Callable[[str], bool]) -> bool:
        """keys: the visible turn-taking panels in a fixed order; draw_one(key) -> drew.
        Returns True when a panel drew."""
        keys = list(keys)
        if self.last in keys:
            i = keys.index(self.last) + 1
            keys = keys[i:] + keys[:i]
        for k in keys:
            if draw_one(k):
                self.last = k
                return True
        return False
