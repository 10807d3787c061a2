"""save_pretrained / from_pretrained / push_to_hub on every model family: a local folder round
trip with a model card, ``revision`` passed to the hub client, and one-line errors when the hub
is offline or unreachable."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import adatok
from adatok.errors import CheckpointError, ConfigError
from adatok.generators.maskgit import MaskGIT
from adatok.hub_mixin import HubMixin
from adatok.pixel.kl_vae import KLVAE
from adatok.pixel.maskgit_vqgan import MaskGITVQGAN
from adatok.tokenizers.alit.model import ALIT
from adatok.tokenizers.titok.model import TiTok

FAMILIES = [("titok_tiny", TiTok), ("alit_test_tiny", ALIT), ("maskgit_vqgan_tiny", MaskGITVQGAN),
            ("kl_vae_tiny", KLVAE), ("maskgit_tiny", MaskGIT)]


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("preset, cls", FAMILIES)
def test_save_pretrained_from_pretrained_round_trip(tmp_path, preset, cls):
    torch.manual_seed(0)
    model = adatok.create_model(preset)
    assert isinstance(model, HubMixin) and isinstance(model, cls)
    path = model.save_pretrained(tmp_path / "m")
    assert {p.name for p in path.iterdir()} == {"config.json", "model.safetensors", "README.md"}
    assert json.loads((path / "config.json").read_text())["format"] == "adatok"
    card = (path / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: adatok\n") and f"{cls.__name__}.from_pretrained" in card
    again = cls.from_pretrained(path)
    assert type(again) is cls and not again.training and _same_weights(model, again)
    assert _same_weights(model, adatok.load(path))  # the same folder adatok.load reads


def test_from_pretrained_checks_the_class_and_revision_use(tmp_path):
    adatok.create_model("titok_tiny").save_pretrained(tmp_path / "t")
    with pytest.raises(CheckpointError, match="holds a TiTok model; ALIT.from_pretrained"):
        ALIT.from_pretrained(tmp_path / "t")
    with pytest.raises(ConfigError, match="revision"):
        TiTok.from_pretrained(tmp_path / "t", revision="v1")


def test_revision_is_passed_to_the_hub_client(tmp_path, monkeypatch):
    import huggingface_hub

    model = adatok.create_model("titok_tiny")
    folder = model.save_pretrained(tmp_path / "snapshot")
    calls = []

    def fake_snapshot(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        return str(folder)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    again = TiTok.from_pretrained("someone/titok-test", revision="v1.0", cache_dir=str(tmp_path / "c"))
    assert _same_weights(model, again)
    assert calls[0][0] == "someone/titok-test" and calls[0][1]["revision"] == "v1.0"
    assert calls[0][1]["cache_dir"] == str(tmp_path / "c")


def test_push_to_hub_uploads_the_saved_folder_on_the_revision(monkeypatch):
    import huggingface_hub
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    seen = {}

    class FakeApi:
        def __init__(self, token=None):
            seen["token"] = token

        def create_repo(self, repo_id, private=None, exist_ok=False):
            seen["repo"] = (repo_id, private, exist_ok)

        def create_branch(self, repo_id, branch, exist_ok=False):
            seen["branch"] = branch

        def upload_folder(self, repo_id, folder_path, revision=None, commit_message="", create_pr=False):
            seen["files"] = sorted(p.name for p in Path(folder_path).iterdir())
            seen["revision"] = revision
            return "https://example.invalid/commit/1"

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    url = adatok.create_model("titok_tiny").push_to_hub("me/titok", revision="dev", private=True, token="t")
    assert url == "https://example.invalid/commit/1"
    assert seen["repo"] == ("me/titok", True, True) and seen["branch"] == "dev" and seen["revision"] == "dev"
    assert seen["files"] == ["README.md", "config.json", "model.safetensors"] and seen["token"] == "t"


def test_offline_hub_errors_are_clear(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(CheckpointError, match="offline"):
        adatok.create_model("titok_tiny").push_to_hub("me/titok")


def test_unreachable_hub_gives_one_line_errors(tmp_path):
    """The hub client pointed at a closed local port: no traceback, no long retries."""
    code = (
        "import adatok\n"
        "from adatok.tokenizers.titok.model import TiTok\n"
        "for call in (lambda: TiTok.from_pretrained('me/nothing', revision='v1'),\n"
        "             lambda: adatok.create_model('titok_tiny').push_to_hub('me/nothing')):\n"
        "    try:\n"
        "        call()\n"
        "    except adatok.AdatokError as e:\n"
        "        print('ERROR', e)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    lines = [line for line in out.stdout.splitlines() if line.startswith("ERROR")]
    assert len(lines) == 2, out.stdout + out.stderr
    assert "could not fetch 'me/nothing' at revision 'v1'" in lines[0]
    assert "could not push to 'me/nothing'" in lines[1]
