"""A comparison: one base RunConfig and 2-4 variations of it, trained on one shared dataset.

Items are written the way `--compare` takes them, comma-separated:

    ddpm,ncsn,score_sde                           # one run per family, each with its defaults
    ddpm:schedule=linear,ddpm:schedule=cosine     # one family, one option changed per run
    ddpm:sampler=ddim:sampler.steps=10            # several changes: more ':'-separated pairs
    schedule=linear                               # no family: the base run's family

Keys of an item: a family option (`schedule`, `T`, `hidden`...), `sampler` (a sampler name),
`sampler.NAME` (a sampler option), `train.NAME` or a bare TrainConfig field (`lr`, `batch`,
`seed`...). Every value goes through `engines.config.build` for its type and range, so a bad
item fails with the item, the option and what is allowed.

What the runs share (the point of comparing): the dataset (loaded once), the training seed
(unless the item changes it) and the sampler's initial noise. Every noise-based family's
`sample()` draws its start x_T first from the generator it is given, as standard normal noise
of the data's shape (scaled by sigma_max for VE-type processes), and `Run.sample` builds that
generator from one seed, so equal seeds give the same x_T; `initial_noise` reproduces it and
tests/engines/test_compare.py checks it against what each sampler is actually handed.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from .. import data as D
from .. import families
from ..config import ConfigError, RunConfig, TrainConfig, build, describe
from ..families import train_config

MIN_RUNS, MAX_RUNS = 2, 4
FAIR_MODES = ("steps", "time")
TRAIN_KEYS = frozenset(d["name"] for d in describe(TrainConfig))
# what every run of a comparison must share, whatever its item says
SHARED_TRAIN_KEYS = ("n_data", "device")


@dataclass(frozen=True)
class Item:
    """One parsed `--compare` item: a family (None: the base's) and its changes by kind."""
    text: str
    family: str | None = None
    options: tuple = ()              # ((key, value), ...) family options
    train: tuple = ()                # TrainConfig overrides
    sampler: str | None = None
    sampler_options: tuple = ()

    def changes(self) -> str:
        """`schedule=linear sampler=ddim steps=10`: what this item changes, for labels."""
        parts = [f"{k}={v}" for k, v in self.options + self.train]
        if self.sampler:
            parts.append(f"sampler={self.sampler}")
        parts += [f"{k}={v}" for k, v in self.sampler_options]
        return " ".join(parts)


@dataclass(frozen=True)
class RunSpec:
    label: str
    cfg: RunConfig
    item: Item


@dataclass(frozen=True)
class Comparison:
    """2-4 runs of one dataset. fair: "steps" (equal training steps) or "time" (equal training
    wall time); target_quality: the x-iid level whose first crossing the table times."""
    base: RunConfig
    runs: tuple
    fair: str = "steps"
    target_quality: float = 1.5
    title: str = ""
    lesson: str = ""

    @property
    def labels(self) -> list[str]:
        return [r.label for r in self.runs]

    @property
    def sample_seed(self) -> int:
        """The seed every run's sampler generator starts from: the base's training seed + 1 (as
        `Run.sample` does by default), so runs whose item changes the seed still share x_T."""
        return _train_seed(self.base) + 1

    def replace_run(self, index: int, text: str) -> "Comparison":
        """The same comparison with run `index` changed to item `text` (the others untouched)."""
        items = [r.item.text for r in self.runs]
        items[index] = text
        return make(self.base, items, fair=self.fair, target_quality=self.target_quality,
                    title=self.title, lesson=self.lesson)

    def without(self, index: int) -> "Comparison":
        if len(self.runs) <= 1:
            raise ConfigError("a comparison keeps at least one run")
        runs = tuple(r for i, r in enumerate(self.runs) if i != index)
        return dataclasses.replace(self, runs=runs)

    def with_added(self, text: str) -> "Comparison":
        if len(self.runs) >= MAX_RUNS:
            raise ConfigError(f"a comparison holds at most {MAX_RUNS} runs")
        return make(self.base, [r.item.text for r in self.runs] + [text], fair=self.fair,
                    target_quality=self.target_quality, title=self.title, lesson=self.lesson)


def split_items(text: str) -> list[str]:
    items = [s.strip() for s in str(text).split(",")]
    if any(not s for s in items):
        raise ConfigError(f"--compare {text!r}: an empty item (two commas in a row, or a trailing comma)")
    return items


def parse_item(text: str) -> Item:
    """`family[:key=value[:key=value...]]`, or `key=value[:...]` for the base family."""
    parts = [p.strip() for p in text.split(":")]
    family = None
    if "=" not in parts[0]:
        family = parts.pop(0)
        if family not in families.names():
            raise ConfigError(f"compare item {text!r}: no family named {family!r}; "
                              f"families: {', '.join(families.names())}")
    kinds = dict(options=[], train=[], sampler_options=[])
    sampler = None
    for p in parts:
        if "=" not in p:
            raise ConfigError(f"compare item {text!r}: {p!r} is not key=value")
        key, value = (s.strip() for s in p.split("=", 1))
        if not key:
            raise ConfigError(f"compare item {text!r}: an empty key in {p!r}")
        if key == "dataset":
            raise ConfigError(f"compare item {text!r}: the runs of a comparison share one dataset; "
                              f"choose it with --dataset")
        if key == "sampler":
            sampler = value
        elif key.startswith("sampler."):
            kinds["sampler_options"].append((key[8:], value))
        elif key.startswith("train."):
            kinds["train"].append((key[6:], value))
        else:
            kinds["options"].append((key, value))
    return Item(text=text, family=family, options=tuple(kinds["options"]), train=tuple(kinds["train"]),
                sampler=sampler, sampler_options=tuple(kinds["sampler_options"]))


def train_dict(train) -> dict:
    if isinstance(train, TrainConfig):
        return dataclasses.asdict(train)
    return dict(train or {})


def _train_seed(cfg: RunConfig) -> int:
    return int(train_dict(cfg.train).get("seed", 0))


def vary(base: RunConfig, item: Item, is_image: bool) -> RunConfig:
    """The base config with the item's changes, validated (ConfigError naming the item)."""
    family = item.family or base.family
    same = family == base.family
    try:
        cls = families.get(family)
        fam_keys = {d["name"] for d in describe(cls.Config)}
        options = dict(base.options) if same else {}
        train = train_dict(base.train) if same else {}
        for k, v in item.options:
            # a bare TrainConfig name (lr, batch, seed) that is not a family option is a train change
            (train if k not in fam_keys and k in TRAIN_KEYS else options)[k] = v
        train.update(dict(item.train))
        for k in SHARED_TRAIN_KEYS:
            if k in dict(item.train) or (k in dict(item.options) and k not in fam_keys):
                raise ConfigError(f"{k} is shared by every run of a comparison; set it on the base run")
        base_train = train_dict(base.train)
        for k in ("seed", "threads"):   # the same training seed unless the item changes it
            if k in base_train:
                train.setdefault(k, base_train[k])
        for k in SHARED_TRAIN_KEYS:     # one dataset, one device: not a per-run choice
            if k in base_train:
                train[k] = base_train[k]
        fam_cfg = build(cls.Config, options)
        tc = train_config(family, is_image, train)
        sampler = item.sampler if item.sampler is not None else (base.sampler if same else "")
        keep = same and sampler == base.sampler
        sampler_options = {**(dict(base.sampler_options) if keep else {}), **dict(item.sampler_options)}
        name = sampler or cls.default_sampler
        if cls.samplers:
            if name not in cls.samplers:
                raise ConfigError(f"{family} has no sampler {name!r}; choose one of {', '.join(cls.samplers)}")
            build(cls.samplers[name], sampler_options)
        elif sampler or sampler_options:
            raise ConfigError(f"{family} has no sampler to choose")
    except (ConfigError, ValueError) as e:
        raise ConfigError(f"compare item {item.text!r}: {e}") from None
    return RunConfig(dataset=base.dataset, family=family, train=tc,
                     options={k: getattr(fam_cfg, k) for k in options}, sampler=sampler,
                     sampler_options=sampler_options)


def _labels(items: list[Item], cfgs: list[RunConfig]) -> list[str]:
    fams = [c.family for c in cfgs]
    out = []
    for it, c in zip(items, cfgs):
        ch = it.changes()
        if len(set(fams)) == len(fams) and not ch:
            out.append(c.family)
        elif len(set(fams)) == 1 and ch:
            out.append(ch)
        else:
            out.append(f"{c.family} {ch}".strip())
    seen: dict[str, int] = {}
    for i, lab in enumerate(out):
        if lab in seen or out.count(lab) > 1:
            seen[lab] = seen.get(lab, 0) + 1
            out[i] = f"{lab} #{seen[lab]}"
    return out


def make(base: RunConfig, items, fair: str = "steps", target_quality: float = 1.5,
         title: str = "", lesson: str = "", labels=None) -> Comparison:
    """A validated Comparison from a base config and item strings (or one comma-separated string)."""
    texts = split_items(items) if isinstance(items, str) else [str(t).strip() for t in items]
    if not MIN_RUNS <= len(texts) <= MAX_RUNS:
        raise ConfigError(f"a comparison takes {MIN_RUNS} to {MAX_RUNS} runs; got {len(texts)} "
                          f"({', '.join(texts) or 'none'})")
    if fair not in FAIR_MODES:
        raise ConfigError(f"fair: {fair!r} is not one of {', '.join(FAIR_MODES)}")
    if not target_quality > 0:
        raise ConfigError(f"target quality must be a positive x-iid level, got {target_quality}")
    is_image = D.is_image(base.dataset) if isinstance(base.dataset, str) else False
    if not isinstance(base.train, TrainConfig):   # resolve the base's own defaults once
        try:
            base = dataclasses.replace(base, train=train_config(base.family, is_image, train_dict(base.train)))
        except ValueError as e:
            raise ConfigError(f"the base run: {e}") from None
    parsed = [parse_item(t) for t in texts]
    cfgs = [vary(base, it, is_image) for it in parsed]
    labels = list(labels) if labels else _labels(parsed, cfgs)
    if len(labels) != len(cfgs):
        raise ConfigError(f"{len(labels)} labels for {len(cfgs)} runs")
    runs = tuple(RunSpec(lab, c, it) for lab, c, it in zip(labels, cfgs, parsed))
    return Comparison(base=base, runs=runs, fair=fair, target_quality=float(target_quality),
                      title=title, lesson=lesson)


def from_preset(preset: dict) -> Comparison:
    """A Comparison from `app.presets.load`'s dict (or any dict with cfg and compare):

        [compare]
        runs = ["ddpm:schedule=linear", "ddpm:schedule=cosine"]   # --compare items
        labels = ["linear", "cosine"]                             # optional
        fair = "steps"                                            # or "time"
        target_quality = 1.5
    """
    spec = dict(preset.get("compare") or {})
    bad = sorted(set(spec) - {"runs", "labels", "fair", "target_quality"})
    if bad:
        raise ConfigError(f"preset {preset.get('name', '?')}: unknown [compare] key {bad[0]!r} "
                          f"(known: runs, labels, fair, target_quality)")
    runs = spec.get("runs")
    if not isinstance(runs, list) or not all(isinstance(r, str) for r in runs):
        raise ConfigError(f"preset {preset.get('name', '?')}: [compare] runs must be a list of item strings")
    return make(preset["cfg"], runs, fair=spec.get("fair", "steps"),
                target_quality=float(spec.get("target_quality", 1.5)), title=preset.get("title", ""),
                lesson=preset.get("lesson", ""), labels=spec.get("labels"))


PRESET_KEYS = ("dataset", "family", "options", "sampler", "sampler_options", "train")
# app/presets.py's lesson keys (read by the window; a comparison keeps title and lesson)
PRESET_META = ("title", "lesson", "view", "topic", "formula", "panels", "hide", "compare")


def load_preset(name: str) -> Comparison:
    """A comparison preset (a lesson preset with a [compare] table) read without the app."""
    import os
    from ..presets import read_preset
    path, d = read_preset(name)
    if "compare" not in d:
        raise ConfigError(f"preset {name} has no [compare] table: it is a single-run lesson")
    stem = os.path.splitext(os.path.basename(path))[0]
    bad = sorted(set(d) - set(PRESET_KEYS) - set(PRESET_META))
    if bad:
        raise ConfigError(f"preset {stem}: unknown key {bad[0]!r}")
    cfg = RunConfig(**{k: d[k] for k in PRESET_KEYS if k in d})
    return from_preset(dict(name=stem, title=d.get("title", stem), lesson=str(d.get("lesson", "")).strip(),
                            cfg=cfg, compare=d["compare"]))


def shared_data(comp: Comparison) -> torch.Tensor:
    """The dataset, loaded once for every run: (N, 2) points or (N, C, H, W) images."""
    tc = comp.runs[0].cfg.train
    return D.load(comp.base.dataset, tc.n_data, seed=_train_seed(comp.base))


def initial_noise(n: int, data_shape: tuple, seed: int) -> torch.Tensor:
    """(n, *data_shape) standard normal noise: the first draw of the generator `Run.sample(seed=)`
    builds, i.e. the x_T every noise-based sampler starts from (times sigma_max on a VE ladder)."""
    g = torch.Generator().manual_seed(int(seed))
    return torch.randn((n,) + tuple(data_shape), generator=g)


def run_configs(comp: Comparison, threads: list[int] | None = None) -> list[RunConfig]:
    """Each run's config, copied, with its CPU thread budget written into train.threads."""
    out = []
    for i, r in enumerate(comp.runs):
        tc = dataclasses.replace(r.cfg.train, **({"threads": threads[i]} if threads else {}))
        out.append(dataclasses.replace(r.cfg, train=tc, options=dict(r.cfg.options),
                                       sampler_options=dict(r.cfg.sampler_options)))
    return out


__all__ = ["Item", "RunSpec", "Comparison", "make", "from_preset", "parse_item", "split_items", "vary",
           "shared_data", "initial_noise", "run_configs", "MIN_RUNS", "MAX_RUNS", "FAIR_MODES"]
