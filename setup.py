"""Packaging of the checkout's layout under one top-level name (metadata: pyproject.toml).

    checkout                    site-packages
    main.py                 ->  genplayground/main.py          (`genplayground` = main.console)
    app/, engines/ (+ subs) ->  genplayground/app/, genplayground/engines/
    resources/              ->  genplayground/resources/       (presets, style sheets, weights)

Why: `app`, `engines` and `main` are generic names that other distributions also install at the
top of site-packages; one folder named after the distribution cannot collide. The code keeps
its absolute imports (`from engines.config import ...`): `main.console()` puts that one folder
first on sys.path of the genplayground process only, so it imports exactly as a checkout run by
`python main.py` does (one module per file, no alias layer, nothing added to other processes).
"""
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

TOP = "genplayground"
PACKAGES = find_packages(include=["app", "app.*", "engines", "engines.*"])
# every shipped file under resources/, whatever its kind (paths relative to the top folder)
RESOURCES = sorted(p.as_posix() for p in Path("resources").rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts)


class BuildPy(build_py):
    """The top folder maps to the checkout's root, whose only module to ship is main.py."""

    def find_package_modules(self, package, package_dir):
        modules = super().find_package_modules(package, package_dir)
        if package == TOP:
            modules = [m for m in modules if m[1] == "main"]
        return modules


setup(
    packages=[TOP] + [f"{TOP}.{p}" for p in PACKAGES],
    package_dir={TOP: "."},
    package_data={TOP: RESOURCES},
    include_package_data=False,
    cmdclass={"build_py": BuildPy},
)
