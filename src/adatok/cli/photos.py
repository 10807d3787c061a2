"""Assemble the real-photo training pool (70 photos) from Debian packages and installed wheels.

No data set can be downloaded at run time here, but Debian's package archive and PyPI can be
reached. The pool (README, "Default models"; `adatok data photos`):

* Debian wallpaper/doc packages, fetched with ``apt-get download NAME`` into a cache folder
  and unpacked with ``dpkg-deb -x`` into a temporary folder — never installed system-wide;
* images shipped in Python wheels that happen to be installed (scikit-image, scikit-learn,
  matplotlib); a missing wheel is skipped with a notice.

Files are copied with their original bytes into ``dest/train/`` and ``dest/heldout/``. The
held-out split is every ``heldout_every``-th photo of the sorted **catalogue** (all 70 names),
so a photo's split never depends on which sources were available on a given machine.
``dest/manifest.json`` records file, split, source, licence, attribution, sha256 and size;
``dest/LICENSES.md`` is the same as a table. Re-running reuses the cache, leaves unchanged
files alone, and moves/removes only files it wrote itself.
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote

from PIL import Image

from adatok.atomic import atomic_write_bytes
from adatok.data.images import read_image
from adatok.errors import AdatokError, ImageLoadError, InputError

__all__ = ["CATALOGUE", "assemble_photo_pool", "default_cache_dir"]

logger = logging.getLogger("adatok.data")

_MATE = "usr/share/backgrounds/mate/nature/"
_LOMIRI = "usr/share/backgrounds/"
_PLASMA = "usr/share/wallpapers/{}/contents/images/"
_OPENCV = "usr/share/doc/opencv-doc/examples/data/"
_LGPL3 = "LGPL-3"
_OPENCV_LICENCE = "Apache-2.0 AND BSD-3-Clause"


def _entries(source, prefix, folder, stems, licence, attribution=""):
    return [(source, prefix, folder.format(s) if "{}" in folder else folder + s, s,
             licence(s) if callable(licence) else licence, attribution) for s in stems]


_LOMIRI16_LICENCES = {
    "Bridge_by_Sander_Klootwijk": "CC-BY-SA-4.0", "Dragonfly_by_Bolly": "CC-BY-SA-4.0",
    "Picture_0B_by_freespace": "CC-BY-4.0", "Picture_1A_by_freespace": "CC-BY-4.0",
    "Wine_by_Jakkub_Mede": "CC-BY-4.0", "aitzgorri_by_Aitzol_Berasategi": "CC-BY-4.0",
    "analogpattern_by_Peter_Nerlich": "CC-BY-SA-4.0", "free_by_Peter_Nerlich": "CC-BY-SA-4.0",
    "friends_by_Aitzol_Berasategi": "CC-BY-4.0", "greentock_by_Peter_Nerlich": "CC-BY-SA-4.0",
    "life_by_Aitzol_Berasategi": "CC-BY-4.0", "picosdeeuropa_by_Aitzol_Berasategi": "CC-BY-4.0",
    "seeding_by_Clements_Engelhardt": "CC0-1.0", "sunset_by_Aitzol_Berasategi": "CC-BY-4.0",
}

#: ``(source, name prefix, path in the package (a file stem, or a folder for plasma), stem,
#: licence as stated in DATA.md, fixed attribution)`` for every photo of the pool.
CATALOGUE: list[tuple[str, str, str, str, str, str]] = (
    _entries("mate-backgrounds", "mate", _MATE, [
        "Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow", "LadyBird",
        "RainDrops", "Storm", "TwoWings", "Wood", "YellowFlower"], "GPL-2+")
    + _entries("lomiri-wallpapers-16.04", "lomiri", _LOMIRI, sorted(_LOMIRI16_LICENCES),
               _LOMIRI16_LICENCES.get)
    + _entries("lomiri-wallpapers-20.04", "lomiri", _LOMIRI, ["Kleiber_by_Lukas_Baubkus"],
               "CC-BY-SA-3.0")
    + _entries("plasma-workspace-wallpapers", "plasma", _PLASMA, [
        "BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow", "FallenLeaf",
        "Grey", "Kite", "OneStandsOut", "Path", "Volna", "summer_1am"],
        lambda s: "CC-BY-SA-4.0" if s == "Volna" else _LGPL3)
    + _entries("opencv-doc", "opencv", _OPENCV, [
        "aero1", "aero3", "aloeL", "apple", "baboon", "board", "building", "butterfly",
        "chicky_512", "ela_original", "fruits", "graf1", "home", "left", "leuvenA",
        "licenseplate_motion", "messi5", "orange", "rubberwhale1", "smarties", "squirrel_cls",
        "stuff", "sudoku"], _OPENCV_LICENCE, "OpenCV samples/data (OpenCV contributors)")
    + [("scikit-image", "skimage", "data/" + stem, stem, lic, who) for stem, lic, who in [
        ("astronaut", "public domain", "NASA (Eileen Collins), via scikit-image"),
        ("chelsea", "CC0", "Stefan van der Walt, via scikit-image"),
        ("coffee", "CC0", "Rachel Michetti, via scikit-image"),
        ("rocket", "public domain", "SpaceX, via scikit-image"),
        ("motorcycle_left", "unstated", "Middlebury 2014 stereo data set, via scikit-image")]]
    + [("scikit-learn", "sklearn", "datasets/images/" + stem, stem, "CC-BY-2.0",
        "see sklearn/datasets/images/README.txt") for stem in ("china", "flower")]
    + [("matplotlib", "matplotlib", "mpl-data/sample_data/grace_hopper", "grace_hopper",
        "unstated", "via matplotlib sample_data")]
)

#: Python module that ships each wheel source.
_WHEEL_MODULES = {"scikit-image": "skimage", "scikit-learn": "sklearn", "matplotlib": "matplotlib"}
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp")
_MISSING_LISTS = ("Unable to locate package", "has no installation candidate",
                  "Couldn't find any package")


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/adatok/debs`` (``~/.cache/adatok/debs``)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "adatok" / "debs"


def assemble_photo_pool(dest: str | Path, cache: str | Path | None = None,
                        heldout_every: int = 7) -> dict:
    """Build the photo pool in ``dest`` (see the module doc) and return a summary dict.

    Returns ``{"dest", "train", "heldout", "total_bytes", "copied", "reused", "sources"
    (source -> count), "notices" (one line per skipped package/file), "seconds"}``.

    Raises:
        AdatokError: nothing at all could be assembled (the message lists why), or a bad
            ``heldout_every`` (an int >= 2, or 0 for no held-out split).
    """
    if not isinstance(heldout_every, int) or heldout_every == 1 or heldout_every < 0:
        raise InputError(f"heldout_every must be an int >= 2 (or 0 for no held-out split), "
                         f"got {heldout_every!r}")
    start = time.perf_counter()
    dest = Path(dest)
    cache = Path(cache) if cache is not None else default_cache_dir()
    splits = _splits(heldout_every)
    notices: list[str] = []
    with tempfile.TemporaryDirectory(prefix="adatok-photos-") as work:
        found = _collect(cache, Path(work), notices)
        if not found:
            raise AdatokError("no photo could be assembled: " + "; ".join(notices))
        records, copied = _copy_all(found, dest, splits, notices)
    for note in notices:
        logger.warning("%s", note)
    _remove_stale(dest, records)
    _write_manifest(dest, records, heldout_every)
    _write_licenses(dest, records, notices)
    sources: dict[str, int] = {}
    for rec in records:
        sources[rec["source"]] = sources.get(rec["source"], 0) + 1
    return {
        "dest": str(dest),
        "train": sum(r["split"] == "train" for r in records),
        "heldout": sum(r["split"] == "heldout" for r in records),
        "total_bytes": sum(r["bytes"] for r in records),
        "copied": copied, "reused": len(records) - copied,
        "sources": sources, "notices": notices,
        "seconds": round(time.perf_counter() - start, 1),
    }


def _splits(heldout_every: int) -> dict[str, str]:
    """Output stem -> split, from the position in the sorted full catalogue."""
    stems = sorted(f"{prefix}_{stem}" for _, prefix, _, stem, _, _ in CATALOGUE)
    return {s: ("heldout" if heldout_every and (i + 1) % heldout_every == 0 else "train")
            for i, s in enumerate(stems)}


# ----------------------------------------------------------------------------- sources


def _collect(cache: Path, work: Path, notices: list[str]) -> list[dict]:
    """Locate every available catalogue photo: ``[{file, source, origin, licence, ...}]``."""
    found: list[dict] = []
    by_source: dict[str, list[tuple]] = {}
    for entry in CATALOGUE:
        by_source.setdefault(entry[0], []).append(entry)
    apt_state: dict = {}
    for source, entries in by_source.items():
        if source in _WHEEL_MODULES:
            root, version = _wheel_dir(_WHEEL_MODULES[source]), _wheel_version(source)
            if root is None:
                notices.append(f"{source}: not installed — skipped "
                               f"{', '.join(e[3] for e in entries)}")
                continue
        else:
            try:
                root, version = _fetch_and_unpack(source, cache, work / source, apt_state)
            except AdatokError as err:
                notices.append(str(err))
                continue
        authors = _package_attributions(root, source)
        for _, prefix, member, stem, licence, who in entries:
            path = _locate(root, member, folder=source == "plasma-workspace-wallpapers")
            if path is None:
                notices.append(f"{source}: {member}* not found in the package — skipped")
                continue
            found.append({
                "stem": f"{prefix}_{stem}", "path": path, "source": source,
                "version": version, "origin": path.relative_to(root).as_posix(),
                "licence": licence, "attribution": who or authors(stem, path),
            })
    return found


def _wheel_dir(module: str) -> Path | None:
    """Folder of an installed Python package, found without importing it (None if absent)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _wheel_version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return ""


def _locate(root: Path, member: str, folder: bool) -> Path | None:
    """The image file ``member.*`` under ``root``; for a folder, its largest image file."""
    if folder:
        images = [p for p in (root / member).glob("*")
                  if p.suffix.lower() in _IMAGE_SUFFIXES and p.is_file() and not p.is_symlink()]
        return max(images, key=lambda p: (p.stat().st_size, p.name)) if images else None
    base = root / member
    for suffix in _IMAGE_SUFFIXES:
        for candidate in (base.with_name(base.name + suffix),
                          base.with_name(base.name + suffix.upper())):
            if candidate.is_file():
                return candidate
    return None


def _fetch_and_unpack(package: str, cache: Path, into: Path, apt_state: dict) -> tuple[Path, str]:
    """``apt-get download`` into ``cache`` (reused when there), ``dpkg-deb -x`` into ``into``.

    Returns ``(unpacked tree, package version)``; AdatokError (one line) if anything fails.
    """
    if shutil.which("dpkg-deb") is None:
        raise AdatokError(f"{package}: dpkg-deb not found — cannot unpack Debian packages "
                          "here (run on Debian/Ubuntu)")
    deb = _cached_deb(package, cache) or _download(package, cache, apt_state)
    into.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["dpkg-deb", "-x", str(deb), str(into)],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:  # a damaged cache entry: fetch it again once
        deb.unlink(missing_ok=True)
        deb = _download(package, cache, apt_state)
        result = subprocess.run(["dpkg-deb", "-x", str(deb), str(into)],
                                capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise AdatokError(f"{package}: dpkg-deb -x {deb.name} failed: {_last_line(result)}")
    version = unquote(deb.name.split("_")[1]) if deb.name.count("_") >= 2 else ""
    return into, version


def _cached_deb(package: str, cache: Path) -> Path | None:
    debs = [p for p in cache.glob(f"{package}_*.deb") if p.is_file()]
    return max(debs, key=lambda p: p.stat().st_mtime) if debs else None


def _download(package: str, cache: Path, apt_state: dict) -> Path:
    if shutil.which("apt-get") is None:
        raise AdatokError(f"{package}: apt-get not found — cannot download Debian packages "
                          f"here; copy {package}_*.deb into {cache} to use it")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=cache) as tmp:
        result = _apt(["apt-get", "download", package], tmp)
        if result.returncode != 0 and any(m in result.stderr for m in _MISSING_LISTS) \
                and not apt_state.get("updated"):
            apt_state["updated"] = True  # package lists missing or stale: refresh once
            _apt(["apt-get", "update"], tmp)
            result = _apt(["apt-get", "download", package], tmp)
        debs = sorted(Path(tmp).glob("*.deb"))
        if result.returncode != 0 or not debs:
            raise AdatokError(f"{package}: apt-get download failed: {_last_line(result)}")
        final = cache / debs[0].name
        os.replace(debs[0], final)  # complete files only ever appear in the cache
    return final


def _apt(cmd: list[str], cwd: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900,
                              check=False)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(cmd, 1, "", f"{' '.join(cmd)} timed out")


def _last_line(result: subprocess.CompletedProcess) -> str:
    lines = [ln.strip() for ln in (result.stderr or result.stdout or "").splitlines()
             if ln.strip() and not ln.startswith("W: ")]
    return lines[-1] if lines else f"exit code {result.returncode}"


# ----------------------------------------------------------------------------- attribution


def _package_attributions(root: Path, source: str):
    """``(stem, path) -> attribution`` from the package's own metadata (may be "")."""
    dep5 = _dep5_holders(root / "usr/share/doc" / source / "copyright")

    def lookup(stem: str, path: Path) -> str:
        meta = path.parent.parent.parent / "metadata.json"  # plasma: <Name>/metadata.json
        if source == "plasma-workspace-wallpapers" and meta.is_file():
            try:
                plugin = json.loads(meta.read_text(encoding="utf-8")).get("KPlugin", {})
                names = [a.get("Name", "") for a in plugin.get("Authors", [])]
                return ", ".join(n for n in names if n)
            except (ValueError, AttributeError):
                return ""
        holders = ""
        for patterns, who in dep5:  # DEP-5: the last matching stanza wins
            if any(_names_file(p, path.name) for p in patterns):
                holders = who
        return holders

    return lookup


def _names_file(pattern: str, name: str) -> bool:
    """Whether a DEP-5 ``Files:`` pattern names this file specifically (installed paths
    differ from source paths, so only the base name is compared; ``*`` and ``dir/*``
    cover whole trees and say nothing about who made a particular photo)."""
    base = pattern.rsplit("/", 1)[-1]
    return base.strip("*") != "" and fnmatch.fnmatch(name, base)


def _dep5_holders(path: Path) -> list[tuple[list[str], str]]:
    """``[(file patterns, copyright holders)]`` of a Debian machine-readable copyright file."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    out = []
    for stanza in re.split(r"\n\s*\n", text):
        fields, key = {}, None
        for line in stanza.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if "Files" in fields and "Copyright" in fields:
            holders = [re.sub(r"\s*<[^>]*>", "", h).strip(" .´") for h in
                       fields["Copyright"].splitlines()]
            out.append((fields["Files"].split(), "; ".join(h for h in holders if h)))
    return out


# ----------------------------------------------------------------------------- output


def _copy_all(found: list[dict], dest: Path, splits: dict[str, str], notices: list[str]):
    records, copied = [], 0
    for item in found:
        split = splits[item["stem"]]
        name = item["stem"] + item["path"].suffix
        data = item["path"].read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        target = dest / split / name
        if not (target.is_file() and _sha256(target) == digest):
            try:
                read_image(data, name=item["origin"])  # never put an unreadable file in the pool
            except ImageLoadError as err:
                notices.append(f"{item['source']}: {err} — skipped")
                continue
            atomic_write_bytes(target, data)
            copied += 1
        other = dest / ("heldout" if split == "train" else "train") / name
        other.unlink(missing_ok=True)  # the split changed (another heldout_every)
        with Image.open(target) as img:
            width, height = img.size
        records.append({
            "file": f"{split}/{name}", "split": split, "source": item["source"],
            "version": item["version"], "origin": item["origin"], "licence": item["licence"],
            "attribution": item["attribution"], "sha256": digest, "bytes": len(data),
            "size": [width, height],
        })
    records.sort(key=lambda r: r["file"])
    return records, copied


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _remove_stale(dest: Path, records: list[dict]) -> None:
    """Delete files an earlier run listed in its manifest that this run does not have."""
    try:
        old = json.loads((dest / "manifest.json").read_text(encoding="utf-8"))
        old_files = {p["file"] for p in old.get("photos", [])}
    except (OSError, ValueError, AttributeError, TypeError, KeyError):
        return
    for rel in old_files - {r["file"] for r in records}:
        if "/" in rel and ".." not in rel:
            (dest / rel).unlink(missing_ok=True)


def _write_manifest(dest: Path, records: list[dict], heldout_every: int) -> None:
    manifest = {"created_by": "adatok.cli.photos.assemble_photo_pool",
                "heldout_every": heldout_every, "photos": records}
    atomic_write_bytes(dest / "manifest.json",
                  (json.dumps(manifest, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))


def _write_licenses(dest: Path, records: list[dict], notices: list[str]) -> None:
    lines = [
        "# Photo pool: sources and licences", "",
        "Assembled by `adatok data photos` from Debian packages (downloaded with `apt-get "
        "download`, unpacked with `dpkg-deb -x`, never installed) and installed Python "
        "wheels. Files keep their original bytes. Licences are as stated by the packages "
        "(`usr/share/doc/<package>/copyright` inside each .deb, plasma's `metadata.json`, "
        "scikit-image's `data/_fetchers.py`). CC-BY and CC-BY-SA files may be redistributed "
        "only with the attribution below and under the same licence; the GPL/LGPL and "
        "Apache/BSD texts are in each package's copyright file.", "",
        "| file | source package | version | path in package | licence | attribution |",
        "|---|---|---|---|---|---|",
    ]
    for r in records:
        cells = [r["file"], r["source"], r["version"], r["origin"], r["licence"],
                 r["attribution"]]
        lines.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
    if notices:
        lines += ["", "Not included in this copy:", ""] + [f"- {n}" for n in notices]
    atomic_write_bytes(dest / "LICENSES.md", ("\n".join(lines) + "\n").encode("utf-8"))
