"""Presets: TOML "lessons" in resources/presets/NAME.toml.

    title = "..."              # shown in the Lessons menu and the lesson box
    lesson = "..."             # what to look at, what to try
    dataset = "moons"          # engines.data name (or a file path)
    family = "ddpm"
    sampler = "ddpm"           # "" = the family's default
    [options]                  # the family's Config fields
    [sampler_options]          # the sampler's options dataclass fields
    [train]                    # engines.config.TrainConfig fields
    [view]                     # optional: field_level, particles, speed
    topic = "Diffusion models" # the course topic the lesson browser files it under (TOPICS order)
    formula = "..."            # the one formula the lesson shows (plain Unicode)
    panels = ["field", ...]    # optional: the only panels presentation mode shows
    hide = ["training", ...]   # optional: controls hidden in presentation mode, as TensorFlow
                               # Playground's _hide: a group (dataset, family, sampler, training)
                               # or one field (options.T, train.lr, sampler.steps)
    [compare]                  # optional: a comparison preset (engines/compare/spec.py, from_preset):
    runs = ["ddpm:schedule=linear", "ddpm:schedule=cosine"]  # 2-4 `--compare` items varying the run above
    labels = ["linear", "cosine"]                           # optional names for the runs
    fair = "steps"             # equal training steps per run, or "time" (equal training time)
    target_quality = 1.5       # the x iid level whose first crossing the table times
"""
from __future__ import annotations

import os

from engines.config import ConfigError, RunConfig, TrainConfig, build
from engines.families import train_config
from engines.presets import preset_names, preset_path, read_preset


DEFAULT = "moons_ddpm"
META = ("title", "lesson", "view", "topic", "formula", "panels", "hide", "compare")
# the course's order (shared/course notes): the lesson browser lists topics in this order
TOPICS = ("Likelihood models", "Latent-variable models", "Normalizing flows", "Energy-based models",
          "Score matching and Langevin", "Diffusion models", "Score SDEs", "Adversarial models")
OTHER_TOPIC = "Other lessons"
CONTROL_GROUPS = ("dataset", "family", "sampler", "training")


def _names_list(name: str, key: str, value) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"preset {name}: {key} must be a list of names, e.g. {key} = [\"field\"]")
    return tuple(value)


def _hide_names(name: str, value) -> tuple[str, ...]:
    hide = _names_list(name, "hide", value)
    for h in hide:
        group, _, field = h.partition(".")
        ok = (h in CONTROL_GROUPS) or (group in ("options", "train", "sampler") and field)
        if not ok:
            raise ConfigError(f"preset {name}: hide = [{h!r}]: name a control group "
                              f"({', '.join(CONTROL_GROUPS)}) or a field (options.NAME, train.NAME, sampler.NAME)")
    return hide


def names() -> list[str]:
    return preset_names()


def path(name: str) -> str:
    return preset_path(name)


def load(name: str) -> dict:
    """dict(name, title, lesson, view, cfg: RunConfig). ConfigError for a missing or bad preset."""
    p, d = read_preset(name)
    meta = {k: d.pop(k, None) for k in META}
    known = {"dataset", "family", "options", "sampler", "sampler_options", "train"}
    bad = sorted(set(d) - known)
    if bad:
        raise ConfigError(f"preset {name}: unknown key {bad[0]!r} (known: {', '.join(sorted(known | set(META)))})")
    from engines import data as D
    family, dataset = d.get("family", "ddpm"), d.get("dataset", "moons")
    try:
        train = train_config(family, D.is_image(dataset), d.pop("train", {}))
    except ValueError as e:
        raise ConfigError(f"preset {name}: {e}") from None
    cfg = RunConfig(train=train, **d)
    topic = meta["topic"] if isinstance(meta["topic"], str) and meta["topic"].strip() else OTHER_TOPIC
    return dict(name=os.path.splitext(os.path.basename(p))[0], title=meta["title"] or name,
                lesson=(meta["lesson"] or "").strip(), view=dict(meta["view"] or {}), cfg=cfg,
                topic=topic.strip(), formula=str(meta["formula"] or "").strip(),
                panels=_names_list(name, "panels", meta["panels"]), hide=_hide_names(name, meta["hide"]),
                compare=dict(meta["compare"]) if isinstance(meta["compare"], dict) else None)
