"""Dataclass configs with validation that gives clear messages, and TOML in/out.

Every tunable field is declared with `opt(...)`, whose metadata (help text, the formula it
stands for, choices, range) drives CLI `--set key=value` parsing, validation and the app's
generated hyper-parameter form and tooltips.
"""
from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field, fields

import tomli_w


class ConfigError(ValueError):
    """A bad option value; the message says which option, what was given and what is allowed."""


def opt(default, help: str = "", formula: str = "", choices=None, lo=None, hi=None, log=False):
    """A config field with the metadata the CLI, the validator and the app's form read."""
    meta = dict(help=help, formula=formula, choices=tuple(choices) if choices else None,
                lo=lo, hi=hi, log=log)
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def describe(cls) -> list[dict]:
    """[{name, type, default, help, formula, choices, lo, hi, log}] for a config dataclass."""
    out = []
    for f in fields(cls):
        d = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        out.append(dict(name=f.name, type=type(d), default=d, **f.metadata))
    return out


def _coerce(name, value, typ):
    if typ is bool:
        if isinstance(value, str):
            v = value.strip().lower()
            if v in ("1", "true", "yes", "on"):
                return True
            if v in ("0", "false", "no", "off"):
                return False
            raise ConfigError(f"{name}: expected true or false, got {value!r}")
        return bool(value)
    if typ in (int, float):
        try:
            v = float(value) if typ is float else value
            if typ is int:
                fv = float(value)
                if not fv.is_integer():
                    raise ValueError
                v = int(fv)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: expected {'an integer' if typ is int else 'a number'}, got {value!r}") from None
        if typ is float and not math.isfinite(v):
            raise ConfigError(f"{name}: must be a finite number, got {value!r}")
        return v
    if typ is str:
        return str(value)
    return value


def build(cls, options: dict | None = None):
    """cls(**options) with every value coerced and range-checked; unknown keys are errors."""
    options = dict(options or {})
    spec = {d["name"]: d for d in describe(cls)}
    unknown = sorted(set(options) - set(spec))
    if unknown:
        raise ConfigError(f"unknown option {unknown[0]!r} for {cls.__name__}; "
                          f"known options: {', '.join(spec)}")
    values = {}
    for name, d in spec.items():
        v = _coerce(name, options[name], d["type"]) if name in options else d["default"]
        if d["choices"] and v not in d["choices"]:
            raise ConfigError(f"{name}: {v!r} is not one of {', '.join(map(str, d['choices']))}")
        if d["lo"] is not None and v < d["lo"]:
            raise ConfigError(f"{name}: {v} is below the smallest sensible value {d['lo']}")
        if d["hi"] is not None and v > d["hi"]:
            raise ConfigError(f"{name}: {v} is above the largest sensible value {d['hi']}")
        values[name] = v
    obj = cls(**values)
    check = getattr(obj, "validate", None)
    if check:
        check()
    return obj


def as_dict(obj) -> dict:
    return dataclasses.asdict(obj)


@dataclass
class TrainConfig:
    batch: int = opt(256, "examples per training step", "B in the Monte-Carlo estimate of the loss", lo=1, hi=65536)
    lr: float = opt(2e-3, "learning rate", "theta <- theta - lr * Adam(grad L)", lo=1e-7, hi=1.0, log=True)
    optimizer: str = opt("adamw", "optimizer", choices=("adam", "adamw"))
    weight_decay: float = opt(0.0, "decoupled weight decay (AdamW)", lo=0.0, hi=1.0)
    warmup: int = opt(100, "linear learning-rate warm-up steps", "lr_k = lr * min(1, k / warmup)", lo=0, hi=10 ** 6)
    grad_clip: float = opt(1.0, "clip the gradient norm to this (0: off)", "g <- g min(1, c / ||g||)", lo=0.0, hi=1e6)
    ema: float = opt(0.995, "EMA decay of the weights used for sampling (0: off)",
                     "theta_ema <- d theta_ema + (1 - d) theta", lo=0.0, hi=0.99999)
    n_data: int = opt(20000, "number of training points drawn from the dataset", lo=2, hi=10 ** 7)
    seed: int = opt(0, "random seed: the same seed gives the same run on CPU", lo=0)
    device: str = opt("auto", "where to train", choices=("auto", "cpu", "cuda", "mps"))
    threads: int = opt(0, "torch CPU threads (0: all cores but one, leaving the GUI a core)", lo=0, hi=256)


@dataclass
class RunConfig:
    dataset: str = "moons"
    family: str = "ddpm"
    train: TrainConfig | dict | None = None             # None / a dict of overrides: the family's defaults
    options: dict = field(default_factory=dict)          # family options
    sampler: str = ""                                    # "" = the family's default
    sampler_options: dict = field(default_factory=dict)

    def to_toml(self) -> str:
        d = as_dict(self)
        return tomli_w.dumps(d)

    @classmethod
    def from_toml(cls, text: str) -> "RunConfig":
        try:
            d = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config.toml is not valid TOML: {e}") from None
        train = build(TrainConfig, d.pop("train", {}))
        known = {f.name for f in fields(cls)}
        bad = set(d) - known
        if bad:
            raise ConfigError(f"config.toml: unknown key {sorted(bad)[0]!r}")
        return cls(train=train, **d)
