"""docs/build_docs.py: the pdoc API reference and the guide pages build offline, with docstring text."""

import importlib.util
import re
import time
from pathlib import Path

import pdoc  # noqa: F401  (the dev extra; the build needs it)
import pytest

import adatok.eval
import adatok.interface
import adatok.reduction

ROOT = Path(__file__).resolve().parents[1]


def load_build_docs():
    spec = importlib.util.spec_from_file_location("build_docs", ROOT / "docs" / "build_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def first_line(obj) -> str:
    return obj.__doc__.strip().splitlines()[0]


def test_build_writes_api_pages_and_guides(tmp_path):
    build_docs = load_build_docs()
    start = time.perf_counter()
    # A subset keeps the test fast (the full build, `make docs`, takes ~15 s on one core).
    written = build_docs.build(tmp_path, modules=["adatok.interface", "adatok.eval", "adatok.reduction"])
    assert time.perf_counter() - start < 20

    interface = (tmp_path / "adatok" / "interface.html").read_text()
    assert 'id="Tokenizer"' in interface
    assert "An image tokenizer" in interface and first_line(adatok.interface.Tokenizer).split(":")[0] in interface
    assert 'id="AdaptiveTokenizer.select"' in interface
    for module, page in ((adatok.eval, "adatok/eval.html"), (adatok.reduction, "adatok/reduction.html")):
        html = (tmp_path / page).read_text()
        words = re.findall(r"\w+", first_line(module))[:4]
        assert all(word in html for word in words), (page, words)
    assert (tmp_path / "adatok" / "eval" / "metrics.html").is_file()    # submodules of a listed package too

    index = (tmp_path / "index.html").read_text()
    assert "adatok — adaptive image tokens" in index and '<table>' in index     # README, tables rendered
    assert 'href="reduction.html"' in index and 'href="generation.html"' in index   # README's links rewritten
    assert "docs/reduction.md" not in re.findall(r'href="([^"]*)"', index)
    for guide in sorted((ROOT / "docs").glob("*.md")):
        assert (tmp_path / f"{guide.stem}.html") in written
    generation = (tmp_path / "generation.html").read_text()
    for image in re.findall(r'src="(images/[^"]+)"', generation):
        assert (tmp_path / image).is_file()
    # API pages link back to the guides
    assert 'href="../index.html"' in interface


def test_check_offline_rejects_remote_resources(tmp_path):
    build_docs = load_build_docs()
    (tmp_path / "ok.html").write_text('<a href="https://pdoc.dev">pdoc</a><svg xmlns="http://www.w3.org/2000/svg"/>')
    build_docs.check_offline(tmp_path)   # links and xml namespaces load nothing
    (tmp_path / "bad.html").write_text('<script src="https://cdn.jsdelivr.net/npm/mathjax@3/x.js"></script>')
    with pytest.raises(RuntimeError, match="bad.html: loads a remote resource"):
        build_docs.check_offline(tmp_path)
