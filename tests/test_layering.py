"""The model packages import downward only, and never each other's internals."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "adatok"
# package -> packages it must not import (higher layers, or a sibling model package)
FORBIDDEN = {
    "layers": ("tokenizers", "pixel", "quantizers", "losses", "train", "cli", "reduction", "generators"),
    "quantizers": ("tokenizers", "pixel", "losses", "train", "cli", "reduction", "generators"),
    "pixel": ("tokenizers", "losses", "train", "cli", "reduction", "generators"),
    "losses": ("tokenizers", "pixel", "train", "cli", "reduction", "generators"),
    "tokenizers/alit": ("tokenizers.titok", "train", "cli"),
    "tokenizers/titok": ("tokenizers.alit", "train", "cli"),
}


def _imports(path: Path) -> set[str]:
    """Absolute ``adatok.*`` module names a file imports (relative imports resolved)."""
    pkg = path.relative_to(SRC.parent).with_suffix("").parts[:-1]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = list(pkg[: len(pkg) - node.level + 1]) if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            names.add(mod)
            names |= {f"{mod}.{a.name}" for a in node.names}
    return {n[len("adatok."):] for n in names if n.startswith("adatok.")}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_upward_or_sideways_imports(package):
    bad = []
    for path in sorted((SRC / package).rglob("*.py")):
        for name in _imports(path):
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[package]):
                bad.append(f"{path.relative_to(SRC)} imports adatok.{name}")
    assert not bad, bad
