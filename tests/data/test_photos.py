"""Tests for adatok.cli.photos (the `adatok data photos` command) without the network: fake package trees stand in for .debs."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess

import pytest
from PIL import Image

from adatok.cli import photos
from adatok.errors import AdatokError

MATE_COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/

Files: *
Copyright: 2011, Packager <p@example.org>
License: GPL-2+

Files: nature/Aqua.jpg
       nature/Garden.jpg
Copyright: 2008, Jane Painter <jane@example.org>
License: GPL-2+

Files: debian/*
Copyright: 2020, Someone Else
License: GPL-2+
"""


def _jpeg(path, color, size=(24, 16)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, format="JPEG" if path.suffix == ".jpg" else None)
    return path


def _fake_tree(root, package):
    """The catalogue's files of one Debian package, as tiny images (distinct bytes each)."""
    for i, (source, _, member, stem, _, _) in enumerate(photos.CATALOGUE):
        if source != package:
            continue
        color = (i * 3 % 256, 40, 200)
        if package == "plasma-workspace-wallpapers":
            folder = root / member
            _jpeg(folder / "640x400.jpg", color, (16, 10))
            _jpeg(folder / "1280x800.jpg", color, (64, 40))  # the largest one is taken
            (folder / "800x600.jpg").symlink_to("1280x800.jpg")
            meta = {"KPlugin": {"Authors": [{"Name": f"Artist {stem}"}]}}
            (folder.parent.parent / "metadata.json").write_text(json.dumps(meta))
        else:
            _jpeg(root / (member + ".jpg"), color)
    if package == "mate-backgrounds":
        doc = root / "usr/share/doc/mate-backgrounds"
        doc.mkdir(parents=True)
        (doc / "copyright").write_text(MATE_COPYRIGHT)
    return root


@pytest.fixture
def fake_sources(tmp_path, monkeypatch):
    """Debian packages from fake trees (opencv-doc 'fails to download'); only scikit-image."""
    calls = []

    def fetch(package, cache, into, apt_state):
        calls.append(package)
        if package == "opencv-doc":
            raise AdatokError("opencv-doc: apt-get download failed: E: network down")
        return _fake_tree(into, package), "1.0-1"

    wheel = tmp_path / "site" / "skimage"
    for stem in ["astronaut", "chelsea", "coffee", "motorcycle_left"]:
        _jpeg(wheel / "data" / f"{stem}.png", (200, 10, 10))
    _jpeg(wheel / "data" / "rocket.jpg", (10, 200, 10))
    monkeypatch.setattr(photos, "_fetch_and_unpack", fetch)
    monkeypatch.setattr(photos, "_wheel_dir", lambda module: wheel if module == "skimage" else None)
    return calls


def _expected_split(heldout_every):
    names = sorted(f"{prefix}_{stem}" for _, prefix, _, stem, _, _ in photos.CATALOGUE)
    return {n: "heldout" if (i + 1) % heldout_every == 0 else "train" for i, n in enumerate(names)}


def _files(dest):
    return sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())


def test_assemble_split_manifest_licences(tmp_path, fake_sources, caplog):
    dest = tmp_path / "pool"
    summary = photos.assemble_photo_pool(dest, cache=tmp_path / "cache", heldout_every=7)
    # 70 in the catalogue - 23 opencv (download failed) - 3 (wheels not installed) = 44.
    assert summary["train"] + summary["heldout"] == 44
    assert summary["sources"]["mate-backgrounds"] == 12 and "opencv-doc" not in summary["sources"]
    assert any("opencv-doc" in n for n in summary["notices"])
    assert any(n.startswith("scikit-learn: not installed") for n in summary["notices"])
    assert any("opencv-doc" in r.getMessage() for r in caplog.records)
    manifest = json.loads((dest / "manifest.json").read_text())
    rows = {r["file"]: r for r in manifest["photos"]}
    split = _expected_split(7)
    assert len(rows) == 44 and summary["heldout"] == sum(r["split"] == "heldout" for r in rows.values())
    for rel, row in rows.items():
        stem = rel.split("/", 1)[1].rsplit(".", 1)[0]
        assert row["split"] == split[stem] and rel.startswith(row["split"] + "/")
        data = (dest / rel).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row["sha256"] and row["bytes"] == len(data)
    assert _files(dest) == sorted(list(rows) + ["LICENSES.md", "manifest.json"])
    volna = rows[f"{split['plasma_Volna']}/plasma_Volna.jpg"]
    assert volna["licence"] == "CC-BY-SA-4.0" and volna["size"] == [64, 40]
    assert volna["origin"].endswith("Volna/contents/images/1280x800.jpg")
    assert volna["attribution"] == "Artist Volna"
    kite = rows[f"{split['plasma_Kite']}/plasma_Kite.jpg"]
    assert kite["licence"] == "LGPL-3"
    seeding = rows[f"{split['lomiri_seeding_by_Clements_Engelhardt']}/lomiri_seeding_by_Clements_Engelhardt.jpg"]
    assert seeding["licence"] == "CC0-1.0" and seeding["source"] == "lomiri-wallpapers-16.04"
    aqua = rows[f"{split['mate_Aqua']}/mate_Aqua.jpg"]
    assert aqua["attribution"] == "2008, Jane Painter" and aqua["licence"] == "GPL-2+"
    assert aqua["version"] == "1.0-1"
    assert rows[f"{split['mate_Storm']}/mate_Storm.jpg"]["attribution"] == ""  # only Files: *
    # Original bytes: the copy equals the file in the (fake) package.
    original = _fake_tree(tmp_path / "again", "mate-backgrounds") / "usr/share/backgrounds/mate/nature/Aqua.jpg"
    assert (dest / aqua["file"]).read_bytes() == original.read_bytes()
    licences = (dest / "LICENSES.md").read_text()
    assert "| file | source package |" in licences
    for rel, row in rows.items():
        assert f"| {rel} | {row['source']} |" in licences
    assert "| CC-BY-SA-4.0 | Artist Volna |" in licences
    assert "opencv-doc" in licences.split("Not included")[1]


def test_idempotent_and_split_changes(tmp_path, fake_sources):
    dest = tmp_path / "pool"
    first = photos.assemble_photo_pool(dest, cache=tmp_path / "cache")
    before = {p: (dest / p).stat().st_mtime_ns for p in _files(dest) if "/" in p}
    manifest = (dest / "manifest.json").read_text()
    second = photos.assemble_photo_pool(dest, cache=tmp_path / "cache")
    assert second["copied"] == 0 and second["reused"] == first["copied"] == 44
    assert (dest / "manifest.json").read_text() == manifest
    assert {p: (dest / p).stat().st_mtime_ns for p in _files(dest) if "/" in p} == before
    third = photos.assemble_photo_pool(dest, cache=tmp_path / "cache", heldout_every=5)
    files = [p for p in _files(dest) if "/" in p]
    assert len(files) == 44 and third["heldout"] == sum(p.startswith("heldout/") for p in files)
    names = [p.split("/", 1)[1] for p in files]
    assert len(set(names)) == 44  # moved, never duplicated


def test_nothing_available_is_an_error(tmp_path, monkeypatch):
    def fail(package, cache, into, apt_state):
        raise AdatokError(f"{package}: apt-get download failed: E: offline")

    monkeypatch.setattr(photos, "_fetch_and_unpack", fail)
    monkeypatch.setattr(photos, "_wheel_dir", lambda module: None)
    with pytest.raises(AdatokError) as err:
        photos.assemble_photo_pool(tmp_path / "pool", cache=tmp_path / "cache")
    msg = str(err.value)
    assert msg.startswith("no photo could be assembled") and "mate-backgrounds" in msg
    assert "\n" not in msg
    with pytest.raises(AdatokError):
        photos.assemble_photo_pool(tmp_path / "pool", heldout_every=1)


def test_missing_apt_get_names_each_package(tmp_path, monkeypatch):
    monkeypatch.setattr(photos.shutil, "which",
                        lambda name: "/usr/bin/dpkg-deb" if name == "dpkg-deb" else None)
    wheel = tmp_path / "skimage"
    _jpeg(wheel / "data" / "rocket.jpg", (1, 2, 3))
    monkeypatch.setattr(photos, "_wheel_dir", lambda module: wheel if module == "skimage" else None)
    summary = photos.assemble_photo_pool(tmp_path / "pool", cache=tmp_path / "cache")
    assert summary["train"] + summary["heldout"] == 1
    apt = [n for n in summary["notices"] if "apt-get not found" in n]
    assert len(apt) == 5 and apt[0].startswith("mate-backgrounds: apt-get not found")


def test_download_updates_lists_only_when_missing(tmp_path, monkeypatch):
    commands = []

    def fake_apt(cmd, cwd):
        commands.append(cmd[1])
        if cmd[1] == "download" and commands.count("update") == 0:
            return subprocess.CompletedProcess(cmd, 100, "", "E: Unable to locate package pkg")
        if cmd[1] == "download":
            (tmp_path / "cache").mkdir(exist_ok=True)
            open(os.path.join(cwd, "pkg_1.0-1_all.deb"), "wb").close()
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(photos, "_apt", fake_apt)
    monkeypatch.setattr(photos.shutil, "which", lambda name: "/usr/bin/" + name)
    state = {}
    deb = photos._download("pkg", tmp_path / "cache", state)
    assert commands == ["download", "update", "download"] and deb.name == "pkg_1.0-1_all.deb"
    assert deb.parent == tmp_path / "cache" and photos._cached_deb("pkg", tmp_path / "cache") == deb
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [deb.name]  # no temp left


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")
def test_real_unpack_of_a_cached_deb(tmp_path):
    """dpkg-deb -x on a tiny .deb we build ourselves (no download: it is in the cache)."""
    pkg = tmp_path / "build"
    _jpeg(pkg / "usr/share/backgrounds/x.jpg", (5, 5, 5))
    (pkg / "DEBIAN").mkdir()
    (pkg / "DEBIAN" / "control").write_text(
        "Package: fake-wallpapers\nVersion: 1:2.0-3\nArchitecture: all\n"
        "Maintainer: t <t@example.org>\nDescription: test\n")
    cache = tmp_path / "cache"
    cache.mkdir()
    deb = cache / "fake-wallpapers_1%3a2.0-3_all.deb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(pkg), str(deb)],
                   check=True, capture_output=True)
    tree, version = photos._fetch_and_unpack("fake-wallpapers", cache, tmp_path / "x", {})
    assert version == "1:2.0-3" and (tree / "usr/share/backgrounds/x.jpg").is_file()
