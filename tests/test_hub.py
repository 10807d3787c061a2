"""Our own format: save/load round trips exactly; a lone safetensors file loads too."""

import json

import pytest
import torch

import adatok
from adatok.errors import CheckpointError, ConfigError


@pytest.mark.parametrize("name", ["titok_tiny", "titok_vae_tiny"])
def test_save_load_round_trip_is_exact(tmp_path, name):
    torch.manual_seed(0)
    model = adatok.create_model(name, num_tokens=6)  # a non-preset config survives the round trip
    path = adatok.save(model, tmp_path / "tok")
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
    meta = json.loads((path / "config.json").read_text())
    assert meta["format"] == "adatok" and meta["family"] == "titok" and meta["config"]["num_tokens"] == 6
    for source in (path, path / "model.safetensors"):  # the folder, or the file alone
        loaded = adatok.load(source)
        assert loaded.config == model.config and not loaded.training
        for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
            assert k == k2 and torch.equal(a, b), k
    # a preset name with our weights: the stored config wins
    assert adatok.load(name, weights=path).config.num_tokens == 6


def test_load_weights_into_existing_model(tmp_path):
    a = adatok.create_model("titok_pixels_tiny")
    b = adatok.create_model("titok_pixels_tiny")
    adatok.save(a, tmp_path / "a")
    adatok.load_weights(b, tmp_path / "a")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    with pytest.raises(CheckpointError, match="missing key.*decoder.head.fc1.*unexpected key.*to_patches"):
        adatok.load_weights(adatok.create_model("titok_tiny"), tmp_path / "a")
    with pytest.raises(CheckpointError, match="shape mismatch.*latent_tokens"):
        adatok.load_weights(adatok.create_model("titok_pixels_tiny", num_tokens=4), tmp_path / "a")


def test_no_temp_files_are_left_and_overwrite_is_atomic(tmp_path):
    model = adatok.create_model("titok_pixels_tiny")
    adatok.save(model, tmp_path / "m")
    adatok.save(model, tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]


def test_preset_without_weights_says_what_to_do():
    with pytest.raises(ConfigError, match=r"create_model\('titok_tiny'\)"):
        adatok.load("titok_tiny")
    with pytest.raises(CheckpointError, match="no such file"):
        adatok.load("titok_tiny", weights="/nonexistent/weights.safetensors")


def test_bundled_weights_load_by_preset_name(tmp_path, monkeypatch):
    """A preset can ship its weights inside the package (adatok/weights/<name>/)."""
    from adatok import hub, registry
    from adatok.registry import Preset

    model = adatok.create_model("titok_pixels_tiny")
    adatok.save(model, tmp_path / "weights" / "demo_bundle")
    monkeypatch.setattr(hub, "BUNDLED_DIR", tmp_path / "weights")
    preset = Preset("bundled_tiny", "titok", lambda: adatok.get_config("titok_pixels_tiny"), "test", bundled="demo_bundle")
    monkeypatch.setitem(registry.PRESETS, "bundled_tiny", preset)
    loaded = adatok.load("bundled_tiny")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    monkeypatch.setattr(hub, "BUNDLED_DIR", tmp_path / "elsewhere")
    with pytest.raises(CheckpointError, match="missing from this installation"):
        adatok.load("bundled_tiny")
