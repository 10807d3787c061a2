"""Weight-init schemes (layers/init.py): "official" is the papers' trunc-normal(0.02); "fan_in"
keeps a narrow untrained 1D tokenizer's outputs dependent on its input."""

import pytest
import torch

import adatok
from adatok.errors import ConfigError

SMALL = dict(image_size=64, patch_size=8, decoder_patch_size=8, num_tokens=16,
             encoder=dict(width=128, depth=2, heads=4), decoder=dict(width=128, depth=2, heads=4))


def _titok(init):
    torch.manual_seed(0)
    return adatok.create_model("titok_pixels_tiny", init=init, **SMALL).eval()


def test_official_init_is_trunc_normal_002():
    m = _titok("official")
    w = m.encoder.transformer.blocks[0].mlp.fc1.weight.detach()
    assert float(w.std()) == pytest.approx(0.02, rel=0.05)  # (truncated at +-2 absolute, as timm)
    assert float(m.encoder.transformer.blocks[0].mlp.fc1.bias.detach().abs().max()) == 0.0


def test_fan_in_init_scales_with_fan_in():
    m = _titok("fan_in")
    fc1, fc2 = (m.encoder.transformer.blocks[0].mlp.fc1.requires_grad_(False), m.encoder.transformer.blocks[0].mlp.fc2.requires_grad_(False))
    assert float(fc1.weight.std()) == pytest.approx(128**-0.5, rel=0.05)
    assert float(fc2.weight.std()) == pytest.approx(512**-0.5, rel=0.05)


@torch.no_grad()
def test_fan_in_lets_the_image_reach_the_tokens_at_width_128():
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    spread = {}
    for init in ("official", "fan_in"):
        m = _titok(init)
        z = m.encoder(x, m.latent_tokens)
        spread[init] = float((z[0] - z[1]).std() / z.std())
    # official: the two images' tokens are nearly identical (the plateau); fan_in: clearly apart
    assert spread["official"] < 0.01
    assert spread["fan_in"] > 10 * spread["official"]


def test_alit_takes_the_init_field_and_it_round_trips(tmp_path):
    m = adatok.create_model("alit_test_tiny", init="fan_in")
    assert m.config.init == "fan_in"
    adatok.save(m, tmp_path / "m")
    assert adatok.load(tmp_path / "m").config.init == "fan_in"


def test_unknown_init_is_a_config_error():
    with pytest.raises(ConfigError, match="init='xavier'.*official"):
        adatok.create_model("titok_pixels_tiny", init="xavier")
    with pytest.raises(ConfigError, match="ALITConfig.init"):
        adatok.create_model("alit_test_tiny", init="xavier")
