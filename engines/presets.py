"""Lesson preset files (resources/presets/NAME.toml): finding, listing and reading them, for the
window (app/presets.py, which interprets the lesson keys) and the command line (compare)."""
from __future__ import annotations

import glob
import os
import tomllib

from .config import ConfigError
from .resources import resource_path

PRESET_DIR = str(resource_path("presets"))


def preset_names() -> list[str]:
    return sorted(os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(PRESET_DIR, "*.toml")))


def preset_path(name: str) -> str:
    """A path as given when it is a file, else resources/presets/NAME.toml."""
    return name if os.path.isfile(name) else os.path.join(PRESET_DIR, f"{name}.toml")


def read_preset(name: str) -> tuple[str, dict]:
    """(file path, parsed TOML) of a preset; ConfigError naming the preset when it is missing or
    not valid TOML."""
    path = preset_path(name)
    if not os.path.isfile(path):
        raise ConfigError(f"no preset named {name!r}; presets: {', '.join(preset_names()) or '-'}")
    try:
        with open(path, "rb") as f:
            return path, tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"preset {name}: not valid TOML ({e})") from None
