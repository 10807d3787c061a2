"""The training recipes shipped inside the package (``adatok/configs/*.yaml``).

``adatok train NAME`` accepts a recipe name (``titok_single``, ``defaults/titok``), the name of a
shipped file (``configs/titok_single.yaml``, as the README writes it) or any YAML path; a
``pip install``ed adatok has the recipes without the source tree.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from .errors import ConfigError

RECIPE_DIR = Path(__file__).resolve().parent / "configs"


def list_recipes() -> list[str]:
    """Names of the shipped recipes, sorted (``defaults/...`` are the shipped models' runs)."""
    return sorted(p.relative_to(RECIPE_DIR).with_suffix("").as_posix() for p in RECIPE_DIR.rglob("*.yaml"))


def resolve_recipe(source: str | Path) -> Path:
    """A recipe name or path -> the YAML file. An existing path wins over a shipped name."""
    path = Path(source)
    if path.is_file():
        return path
    name = path.as_posix()
    if name.startswith("configs/"):  # the README's paths, from any working directory
        name = name[len("configs/"):]
    name = name.removesuffix(".yaml").removesuffix(".yml")
    shipped = RECIPE_DIR / f"{name}.yaml"
    if shipped.is_file():
        return shipped
    close = difflib.get_close_matches(name, list_recipes(), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ConfigError(f"{source}: no such recipe file or shipped recipe name{hint} (list them: adatok train --list)")
