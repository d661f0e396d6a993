"""One file per view. Each panel is a Panel (base.py): reset(info), on_snapshot(snap), draw(), want()."""
from .field import FieldPanel
from .losses import LossesPanel
from .particles import ParticlesPanel
from .samples import SamplesPanel
from .schedule import SchedulePanel
from .stats import StatsPanel
from .views import ViewsPanel

__all__ = ["FieldPanel", "LossesPanel", "ParticlesPanel", "SamplesPanel", "SchedulePanel", "StatsPanel", "ViewsPanel"]
