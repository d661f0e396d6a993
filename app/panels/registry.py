"""The panel registry: one row per panel. The window builds, places, feeds and asks every panel
from these rows only.

Adding a panel = one file + one row:
  1. Write app/panels/my_panel.py with a `Panel` subclass (base.py). It computes nothing: what
     it shows arrives in messages (engines.messages). Override `reset(info: RunInfo)`,
     `on_snapshot(snap)`, `on_message(msg)` for the other message types it consumes, `want()`
     (what the session should compute for it, e.g. dict(field=dict(resolution=32))) and
     `_draw()` (called on the frame timer when `dirty`).
  2. Add a PanelSpec row to PANELS below: its key, class, where its dock goes (`place`: the
     first row is added to `area`; later rows split beside / below, or tab with, an earlier
     row's dock), the message types it `consumes`, whether its `want()` is asked, and whether
     it animates (`every_frame`; the other panels redraw one a frame, in turn).
The View menu, the docks, the dispatch of messages and the union of wants all loop over PANELS;
a lesson can show only some panels by key (`visible_keys`).
"""
from __future__ import annotations

from dataclasses import dataclass

from engines import messages as M
from engines.checkpoints import CheckpointPictures
from engines.inspector import InspectorExtras

from .field import FieldPanel
from .lab import LabPanel
from .losses import LossesPanel
from .particles import ParticlesPanel
from .samples import SamplesPanel
from .schedule import SchedulePanel
from .schedule_inspector import ScheduleInspectorPanel
from .score_error import ScoreErrorPanel
from .stats import StatsPanel
from .timeline import TimelinePanel
from .views import ViewsPanel


@dataclass(frozen=True)
class PanelSpec:
    key: str
    cls: type
    place: tuple                 # ("area", "right") | ("right_of"|"below"|"tab", other key)
    consumes: tuple              # message types handed to the panel (RunInfo -> reset, Snapshot -> on_snapshot, ...)
    wants: bool = False          # the panel's want() joins the session's Want while it is visible
    size: int = 400              # initial size along its split (pixels)
    front: bool = True           # for tabs: raised at start
    every_frame: bool = False    # it animates: drawn every frame; the others take turns, one a frame
                                 # (app/frame_turns.py: a frame's paint stays short)


INFO_AND_SNAPSHOTS = (M.RunInfo, M.Snapshot)

PANELS: tuple[PanelSpec, ...] = (
    PanelSpec("field", FieldPanel, ("area", "right"), INFO_AND_SNAPSHOTS, wants=True, size=580),
    PanelSpec("losses", LossesPanel, ("below", "field"), INFO_AND_SNAPSHOTS, size=400),
    PanelSpec("particles", ParticlesPanel, ("right_of", "field"), INFO_AND_SNAPSHOTS + (M.Trajectory, M.Progress),
              size=420, every_frame=True),
    PanelSpec("samples", SamplesPanel, ("right_of", "particles"), INFO_AND_SNAPSHOTS, wants=True, size=420),
    PanelSpec("schedule", SchedulePanel, ("right_of", "losses"), INFO_AND_SNAPSHOTS + (M.SamplerLevels,), size=540),
    PanelSpec("stats", StatsPanel, ("right_of", "schedule"), INFO_AND_SNAPSHOTS, size=270),
    PanelSpec("views", ViewsPanel, ("tab", "schedule"), INFO_AND_SNAPSHOTS, wants=True, front=False),
    PanelSpec("inspector", ScheduleInspectorPanel, ("tab", "schedule"), (M.RunInfo, InspectorExtras), front=False),
    PanelSpec("timeline", TimelinePanel, ("tab", "schedule"), (M.RunInfo, InspectorExtras, CheckpointPictures),
              front=False),
    PanelSpec("score_error", ScoreErrorPanel, ("tab", "schedule"), (M.RunInfo, InspectorExtras), front=False),
    PanelSpec("lab", LabPanel, ("tab", "schedule"), (M.RunInfo, M.LabProgress, M.LabResult), front=False),
)

# the panels that animate: drawn every frame (the window's frame loop; the others take turns)
EVERY_FRAME = frozenset(p.key for p in PANELS if p.every_frame)


def keys() -> list[str]:
    return [p.key for p in PANELS]


def spec(key: str) -> PanelSpec:
    for p in PANELS:
        if p.key == key:
            return p
    raise KeyError(f"no panel {key!r}; panels: {', '.join(keys())}")


def deliver(panel, msg):
    """Hand one message to a panel by its type."""
    if isinstance(msg, M.RunInfo):
        panel.reset(msg)
    elif isinstance(msg, M.Snapshot):
        panel.on_snapshot(msg)
    else:
        panel.on_message(msg)
