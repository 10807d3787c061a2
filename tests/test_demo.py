"""`make demo` runs offline on the shipped default models and says what it ran."""

import re

import torch

import adatok
from adatok.demo import main


def test_demo_runs_on_the_shipped_models(tmp_path, capsys):
    assert main(["--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "titok_default" in out and "alit_default" in out
    assert "decode_ids(ids) == the reconstruction: TiTok True, ALIT True, prefix True" in out
    # the flat colour and the gradient meet the L1 threshold at 16 tokens; the cat and the coffee cup
    # need 32, the astronaut more (the night-sky rocket photo is as simple as the gradient in L1)
    assert "simple images get fewer: True" in out
    assert "simple images [16, 16], photos [48, 32, 32, 16]" in out
    titok_psnr = float(re.search(r"TiTok mean PSNR ([\d.]+) dB", out).group(1))
    alit_psnr = float(re.search(r"ALIT mean PSNR ([\d.]+) dB", out).group(1))
    # the shipped weights (24.9 and 23.4 dB measured); untrained models give ~8 dB, the CPU-trained
    # defaults of earlier sessions 22.5 and 18.3
    assert titok_psnr > 24.0 and alit_psnr > 22.0
    assert (tmp_path / "reconstructions.png").exists()
    # the prefix default: every length decodes and quality rises with each (the demo images), the
    # simple images reach 22 dB at 8 tokens, the photos need 24-64
    assert "prefix tokens: simple images [8, 8], photos [64, 64, 64, 24]" in out
    curve = [float(v) for v in re.findall(r"(\d+\.\d) dB", out.split("mean PSNR at every length:")[1].split("\n")[0])]
    assert len(curve) == 8 and all(b > a for a, b in zip(curve, curve[1:]))
    from PIL import Image
    grid = Image.open(tmp_path / "prefix_lengths.png")
    assert grid.width >= 9 * 128 and grid.height >= 6 * 128  # 6 images x (original + 8 lengths), enlarged


def test_demo_shows_the_models_it_is_given(tmp_path, capsys):
    """--titok / --alit take a saved model folder (a run's OUT/model): here a copy of the defaults."""
    adatok.save(adatok.load("alit_default"), tmp_path / "my_alit")
    assert main(["--out", str(tmp_path / "shipped")]) == 0
    shipped = capsys.readouterr().out
    assert main(["--out", str(tmp_path / "mine"), "--alit", str(tmp_path / "my_alit")]) == 0
    mine = capsys.readouterr().out
    assert f"{tmp_path / 'my_alit'}: " in mine and "alit_default: " not in mine
    assert "the tokenizers given" in mine and "these defaults are small" not in mine
    assert "these defaults are small" in shipped
    alit_line = re.compile(r"ALIT mean PSNR [\d.]+ dB at [\d.]+ tokens")
    assert alit_line.search(mine).group(0) == alit_line.search(shipped).group(0)
    assert (tmp_path / "mine" / "reconstructions.png").exists()


def test_default_models_load_offline_and_match_their_cards():
    for name in ("maskgit_vqgan_default", "titok_default", "alit_default", "titok_prefix_default"):
        model = adatok.load(name)
        folder = adatok.hub.BUNDLED_DIR / name
        card = (folder / "MODEL_CARD.md").read_text()
        assert "PSNR" in card and "configs/defaults/" in card
        assert model.config == adatok.get_config(name)  # the preset describes the shipped weights
    total = sum(f.stat().st_size for f in adatok.hub.BUNDLED_DIR.rglob("*.safetensors"))
    assert total < 60e6
    alit = adatok.load("alit_default")
    assert alit.config.halting == "threshold"  # deterministic at inference
    with torch.no_grad():
        x = torch.rand(2, 3, 64, 64)
        assert alit.select(x, "l1", 0.08).tokens.lengths.shape == (2,)
