"""Pretokenize (adatok.tokenizers.pretokenize) reads the tokenizer interface only: a continuous
tokenizer is a one-line error before any work, length options need an adaptive tokenizer, and
adaptive lengths are written padded with PAD_ID."""

import shutil
from pathlib import Path

import pytest
import torch

import adatok
from adatok.cli.main import main
from adatok.data import read_token_file
from adatok.errors import ConfigError
from adatok.interface import PAD_ID
from adatok.tokenizers.pretokenize import pretokenize

SAMPLES = Path(adatok.__file__).parent / "data" / "samples"


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pretok_photos")
    for p in sorted(SAMPLES.glob("*.jpg"))[:2]:
        shutil.copy(p, folder / p.name)
    return folder


@pytest.mark.parametrize("name", ["alit_continuous_test_tiny", "titok_vae_tiny"])
def test_continuous_tokenizer_is_a_one_line_error(photos, tmp_path, name):
    tok = adatok.create_model(name).eval()
    assert not tok.discrete
    with pytest.raises(ConfigError, match="continuous tokens"):
        pretokenize(str(photos), tmp_path / "t.safetensors", tok)
    assert not (tmp_path / "t.safetensors").exists()


def test_continuous_alit_on_the_cli_exits_2_with_one_line(photos, tmp_path, capsys):
    torch.manual_seed(0)
    folder = adatok.save(adatok.create_model("alit_continuous_test_tiny"), tmp_path / "alit")
    code = main(["data", "pretokenize", str(photos), str(tmp_path / "t.npz"), "--tokenizer", str(folder)])
    err = capsys.readouterr().err
    assert code == 2 and "continuous tokens" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_length_options_need_an_adaptive_tokenizer(photos, tmp_path):
    tok = adatok.create_model("titok_tiny").eval()
    with pytest.raises(ConfigError, match="adaptive tokenizer"):
        pretokenize(str(photos), tmp_path / "t.npz", tok, encode_kwargs={"criterion": "l1"})
    with pytest.raises(ConfigError, match="takes no"):
        pretokenize(str(photos), tmp_path / "t.npz", tok, encode_kwargs={"temperature": 1.0})


def test_adaptive_lengths_are_padded_with_pad_id(photos, tmp_path):
    torch.manual_seed(0)
    alit = adatok.create_model("alit_test_tiny").eval()
    out = tmp_path / "alit.safetensors"
    pretokenize(str(photos), out, alit, encode_kwargs={"criterion": "budget", "threshold": 8})
    f = read_token_file(out)
    assert f.lengths.tolist() == [8, 8] and f.ids.shape == (2, alit.max_tokens)
    assert bool((f.ids[:, 8:] == PAD_ID).all()) and bool((f.ids[:, :8] >= 0).all())
    assert f.meta["num_tokens"] == alit.max_tokens and f.meta["codebook_size"] == alit.codebook_size
