"""A discrete chain's steps are shown as the papers number them, t = 1..T (Ho et al. 2020 eq. 2-4),
while the engines keep their 0-based index: the Field slider, its caption and the schedule axis agree."""
import math

import numpy as np

from engines.families.base import time_display_offset
from engines.families.ddpm import DDPM, DDPMConfig


def test_ddpm_field_slider_and_caption_show_1_to_T_with_the_matching_alpha_bar(themed_app):
    from app.panels.field import LevelSlider, noising_caption
    T = 20
    family = DDPM(DDPMConfig(T=T, schedule="linear"), (2,), "cpu")
    assert time_display_offset(family.level) == 1
    slider = LevelSlider()
    slider.set_level(family.level)
    for index, shown in ((0, 1), (T - 1, T), (7, 8)):
        slider.set_value(index)
        assert slider.value() == index                        # what the engine is asked for: its index
        assert slider.label.text() == str(shown)              # what the user reads: the papers' t
        text = noising_caption(index, family.level, family.level_alpha_sigma(index))
        abar = float(family.abar[index])                      # ᾱ at paper t = index + 1
        assert text.startswith(f"t = {shown}  ·")
        assert f"(ᾱ_t = {abar:.4g})" in text
        assert f"= {math.sqrt(abar):.3f}·x₀ + {math.sqrt(1 - abar):.3f}·ε" in text
    # ᾱ_1 = 1 − β_1: the first step shown is one step of noise, not the clean data
    assert float(family.abar[0]) == float(1 - family.betas[0]) < 1.0


def test_continuous_time_and_sigma_levels_are_shown_as_they_are(themed_app):
    from app.panels.field import LevelSlider
    assert time_display_offset({"kind": "t", "lo": 1e-3, "hi": 1.0}) == 0   # score SDE / flow matching
    assert time_display_offset({"kind": "sigma", "lo": 0.01, "hi": 1.0, "display_offset": 1}) == 0
    assert time_display_offset(None) == 0
    slider = LevelSlider()
    slider.set_level(dict(kind="t", lo=0.0, hi=1.0, log=False, default=0.25))
    assert slider.label.text() == "0.25"


def test_schedule_axis_runs_1_to_T_on_a_discrete_chain(themed_app, run_info):
    from app.panels.schedule import SchedulePanel
    T = 20
    family = DDPM(DDPMConfig(T=T), (2,), "cpu")
    panel = SchedulePanel()
    panel.reset(run_info(level=family.level, schedule=family.schedule()))
    xs = [it.xData for p in panel.plots for it in p.listDataItems()]
    assert xs and all(x[0] == 1 and x[-1] == T for x in xs)
    panel.set_time(dict(i=0, t=float(T), sigma=None))        # the particles' frames carry the shown t
    assert panel.draw()                                      # the marker moves on the panel's turn
    assert all(m.isVisible() and m.value() == T for m in panel.markers)
