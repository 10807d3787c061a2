"""Build adatok's HTML documentation: the API reference from the docstrings (pdoc) plus the guides.

    python docs/build_docs.py                         # everything into out/docs/ (``make docs``)
    python docs/build_docs.py --out DIR --modules adatok.interface adatok.eval   # a subset

Output (open ``out/docs/index.html`` in a browser, no server and no network needed):

* ``index.html`` — the landing page, README.md rendered;
* ``<name>.html`` — one page per ``docs/*.md`` guide and ``benchmarks.html`` (benchmarks/README.md);
* ``adatok.html``, ``adatok/<module>.html`` — the API reference of every module, with a search box;
* ``images/`` — the pictures the guides show.

Offline by construction: pdoc's default template inlines its CSS and JavaScript into every page
(the search index is the local ``search.js``); the only pdoc features that load files from a CDN,
math (MathJax) and mermaid diagrams, stay off. ``check_offline`` verifies it on the written pages:
no ``src=`` / ``<link href=`` pointing to ``http(s)://``. Links in the guides between README.md and
``docs/*.md`` are rewritten to the generated pages.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = Path(__file__).resolve().parent / "templates"
ROOT_MODULE = "adatok"


def guide_sources(root: Path = ROOT) -> dict[str, Path]:
    """Guide page name -> markdown source: ``index`` (README.md), ``docs/*.md``, ``benchmarks``."""
    pages = {"index": root / "README.md"}
    for path in sorted((root / "docs").glob("*.md")):
        pages[path.stem] = path
    if (root / "benchmarks" / "README.md").is_file():
        pages["benchmarks"] = root / "benchmarks" / "README.md"
    return pages


def page_title(markdown: str, fallback: str) -> str:
    """The first ``# heading`` of a markdown text, without inline code marks."""
    match = re.search(r"^# (.+)$", markdown, flags=re.MULTILINE)
    return match.group(1).replace("`", "").strip() if match else fallback


def rewrite_links(markdown: str, source: Path, pages: dict[str, Path], root: Path = ROOT) -> str:
    """Point ``](x.md)`` links at the generated ``.html`` pages and ``images/`` at the copies."""
    by_path = {path.resolve(): name for name, path in pages.items()}

    def repl(match: re.Match) -> str:
        target, anchor = match.group(1), match.group(2) or ""
        resolved = (source.parent / target).resolve()
        if resolved in by_path:
            return f"]({by_path[resolved]}.html{anchor})"
        if resolved.is_relative_to(root / "docs" / "images"):
            return f"](images/{resolved.relative_to(root / 'docs' / 'images').as_posix()}{anchor})"
        return match.group(0)

    return re.sub(r"\]\((?!https?:|#)([^)#\s]+)(#[^)\s]*)?\)", repl, markdown)


def all_modules(package: str = ROOT_MODULE) -> list[str]:
    """``package`` and every public submodule (pdoc alone would stop at a package's ``__all__``)."""
    import importlib
    import pkgutil

    names = [package]
    module = importlib.import_module(package)
    for info in pkgutil.walk_packages(getattr(module, "__path__", []), prefix=package + "."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return names


def check_offline(out: Path) -> None:
    """Raise ``RuntimeError`` naming the page if a written page loads anything over the network."""
    remote = re.compile(r"""(?:\ssrc=|<link[^>]*\shref=|@import\s+url\(|url\()\s*["']?https?://""", re.I)
    for page in sorted(out.rglob("*.html")) + sorted(out.rglob("*.js")):
        match = remote.search(page.read_text(encoding="utf-8"))
        if match:
            raise RuntimeError(f"{page}: loads a remote resource ({match.group(0).strip()}); "
                               "the docs must render offline")


def build(out: Path, modules: list[str] | None = None, root: Path = ROOT) -> list[Path]:
    """Write the API reference of ``modules`` and their submodules (default: adatok) and the guides.

    Returns the written HTML pages. Needs ``pdoc`` (``pip install 'adatok[dev]'``).
    """
    try:
        import pdoc
        import pdoc.render
        from pdoc.render_helpers import to_html
    except ImportError:
        raise SystemExit("build_docs: error: pdoc is not installed; pip install 'adatok[dev]' (or pip install pdoc)")

    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    pages = guide_sources(root)
    texts = {name: path.read_text(encoding="utf-8") for name, path in pages.items()}
    titles = [(name, "adatok" if name == "index" else page_title(text, name)) for name, text in texts.items()]

    pdoc.render.configure(docformat="restructuredtext", math=False, mermaid=False, search=True,
                          show_source=True, template_directory=TEMPLATES,
                          footer_text="adatok API reference")
    pdoc.render.env.globals["guide_pages"] = titles
    with warnings.catch_warnings():   # pdoc walks a package's submodules itself: listing them again is fine
        warnings.filterwarnings("ignore", message="The module specification", category=UserWarning)
        pdoc.pdoc(*[name for package in (modules or [ROOT_MODULE]) for name in all_modules(package)],
                  output_directory=out)

    template = pdoc.render.env.get_template("guide.html.jinja2")
    for (name, title) in titles:
        html = to_html(rewrite_links(texts[name], pages[name], pages, root))
        page = template.render(title=title, body=str(html), toc=getattr(html, "toc_html", None),
                               root_module=ROOT_MODULE)
        (out / f"{name}.html").write_text(page, encoding="utf-8")   # index.html replaces pdoc's redirect
    if (root / "docs" / "images").is_dir():
        shutil.copytree(root / "docs" / "images", out / "images")
    check_offline(out)
    return sorted(out.rglob("*.html"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "docs", help="output folder (replaced)")
    parser.add_argument("--modules", nargs="+", default=None,
                        help="modules to document (default: adatok and every submodule)")
    args = parser.parse_args(argv)
    written = build(args.out, args.modules)
    print(f"build_docs: wrote {len(written)} pages to {args.out} (open {args.out / 'index.html'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
