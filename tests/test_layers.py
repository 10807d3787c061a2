"""The layer picture (README, "Architecture") holds: read from the imports of src/adatok (``ast``),
no module imports a higher layer, and no model package imports another model package, except
the exceptions listed below — each with the change that removes it. A new exception fails here."""

import ast
from pathlib import Path

SRC = Path(__file__).parents[1] / "src"
PACKAGE = SRC / "adatok"

# Lowest first. A module may import its own layer and the layers below it, never one above.
LAYERS = [
    {"errors", "atomic", "config_utils", "convert_utils", "types", "interface", "checks", "registry", "hub",
     "layers", "data", "tracing", "model_types", "hub_mixin", "recipes", "extras"},
    {"quantizers", "pixel", "losses"},
    {"tokenizers", "tokenizers.titok", "tokenizers.alit", "reduction", "generators"},
    {"train", "eval", "viz"},
    {"cli", "demo", "models", "adatok", "__main__"},
]
# Model packages: none imports another (same layer or not) except through the shared parts below.
MODEL_PACKAGES = {"pixel", "losses", "tokenizers.titok", "tokenizers.alit", "reduction", "generators"}
SHARED = {"quantizers", "tokenizers"}  # parts every model may use: quantizers, selection criteria
# Today's exceptions, (importer, imported) -> why and what removes it.
EXCEPTIONS = {
    # the layer-1 model packages are the base tokenizers of the layer-2 ones
    ("tokenizers.titok", "pixel"): "TiTok decodes through the MaskGIT-VQGAN (its proxy-code teacher)",
    ("tokenizers.alit", "pixel"): "ALIT's base tokenizer is the MaskGIT-VQGAN or the KL-VAE",
    # ToMe inside a tokenizer encoder patches that encoder's forward (reduction/tokenizer_patch.py)
    ("reduction", "tokenizers.titok"): "the patch replaces TiTok's encoder transformer forward",
}


def _group(module: str) -> str:
    """``adatok.tokenizers.titok.model`` -> ``tokenizers.titok``; ``adatok.hub`` -> ``hub``."""
    parts = module.split(".")[1:]
    if not parts:
        return "adatok"
    if parts[0] == "tokenizers" and len(parts) > 1 and parts[1] in ("titok", "alit"):
        return ".".join(parts[:2])
    return parts[0]


def _module_exists(name: str) -> bool:
    path = SRC.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _imports(path: Path) -> set[str]:
    """adatok modules ``path`` imports (a name imported from a package counts as its module if it
    is one, else as the package)."""
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    package = parts[:-1] if parts[-1] != "__init__" else parts[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "adatok"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base.split(".")[0] != "adatok":
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if _module_exists(sub) else base)
    return found


def _layer(group: str) -> int:
    for i, layer in enumerate(LAYERS):
        if group in layer:
            return i
    raise AssertionError(f"{group}: not placed in LAYERS (add it to the picture in README and here)")


def _edges():
    for path in sorted(PACKAGE.rglob("*.py")):
        if "weights" in path.parts:
            continue
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        for target in _imports(path):
            yield module, target


def test_every_package_has_a_layer():
    for module, target in _edges():
        _layer(_group(module)), _layer(_group(target))


def test_no_module_imports_a_higher_layer():
    bad = sorted(f"{m} -> {t}" for m, t in _edges() if _layer(_group(t)) > _layer(_group(m)))
    assert not bad, "imports from a lower layer to a higher one:\n" + "\n".join(bad)


def test_no_model_package_imports_another_one():
    used, bad = set(), []
    for module, target in _edges():
        a, b = _group(module), _group(target)
        if a == b or a not in MODEL_PACKAGES or b in SHARED or b not in MODEL_PACKAGES:
            continue
        if (a, b) in EXCEPTIONS:
            used.add((a, b))
        else:
            bad.append(f"{module} -> {target}")
    assert not bad, "a model package imports another one's internals:\n" + "\n".join(sorted(bad))
    stale = set(EXCEPTIONS) - used
    assert not stale, f"exceptions no longer needed, remove them from EXCEPTIONS: {sorted(stale)}"


def test_data_runs_no_model():
    bad = sorted(f"{m} -> {t}" for m, t in _edges() if _group(m) == "data" and _layer(_group(t)) > 0)
    assert not bad, bad
