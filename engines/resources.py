"""Where the project's shipped files are, in a checkout and in an installed wheel alike.

`resources/` (lesson presets, the style sheet, the digit classifier's weights) always sits beside
`engines/` and `app/`: in a checkout at the repository's top, and after `pip install .` inside
site-packages/genplayground/ (see pyproject.toml and setup.py). Every path into it goes through
`resource_path()`, so moving the folder means changing one line.
"""
from __future__ import annotations

import tomllib
from functools import lru_cache
from pathlib import Path

DISTRIBUTION = "genplayground"

# engines/ -> the project's top (the checkout, or site-packages/genplayground)
PROJECT_ROOT = Path(__file__).resolve().parent.parent
RESOURCES = PROJECT_ROOT / "resources"


def resource_path(*parts: str) -> Path:
    """The path of a shipped file or folder, e.g. resource_path("presets", "moons_ddpm.toml").
    The path may not exist (a user's preset name that is not there): callers check."""
    return RESOURCES.joinpath(*parts)


@lru_cache(maxsize=1)
def version() -> str:
    """The project's version. One place: `version` in pyproject.toml. In a checkout it is read
    from there (an editable install's metadata goes stale when the file changes); an installed
    wheel has no pyproject.toml, and its metadata was written from that same field."""
    pyproject = PROJECT_ROOT / "pyproject.toml"
    if pyproject.is_file():
        try:
            project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
            if project.get("name") == DISTRIBUTION and project.get("version"):
                return str(project["version"])
        except (OSError, tomllib.TOMLDecodeError):
            pass
    from importlib import metadata
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown"
