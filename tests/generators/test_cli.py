"""``adatok generate``: outputs, and one-line errors (exit 2) before any sampling."""

import pytest
import torch
from PIL import Image

import adatok
from adatok.cli.main import main
from adatok.data.token_files import read_token_file


def test_generate_writes_pngs_sheet_and_ids(generator_dir, tokenizer_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["generate", "--generator", str(generator_dir), "--tokenizer", str(tokenizer_dir), "--classes", "1,7",
                 "--n", "2", "--steps", "3", "--guidance", "1.5", "--schedule", "power-cosine", "--seed", "3",
                 "--out", str(out)]) == 0
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == ["0000_class1.png", "0001_class1.png", "0002_class7.png", "0003_class7.png", "contact_sheet.png"]
    assert Image.open(out / "0000_class1.png").size == (64, 64)
    assert Image.open(out / "contact_sheet.png").size == (2 * 66 + 2, 2 * 66 + 2)  # n columns, one row per class
    tokens = read_token_file(out / "tokens.safetensors")
    assert tokens.labels.tolist() == [1, 1, 7, 7]
    gen = adatok.load(generator_dir)
    want = gen.generate([1, 1, 7, 7], steps=3, guidance=1.5, schedule="power-cosine", seed=3)
    assert torch.equal(tokens.ids, want.ids)
    assert "wrote 4 image(s)" in capsys.readouterr().out


@pytest.mark.parametrize("extra, message", [
    (["--classes", "1,10"], r"class ids must lie in \[0, 9\]"),
    (["--classes", "a"], "expected comma-separated integers"),
    (["--steps", "0"], "steps must be an integer >= 1"),
    (["--schedule", "cosine"], "unknown guidance schedule 'cosine'"),
    (["--n", "0"], "--n and --batch-size must be >= 1"),
    (["--tokenizer", "TOK16"], "makes 8 tokens per image but the tokenizer reads 16"),
])
def test_generate_bad_input_one_line(extra, message, generator_dir, tokenizer_dir, tmp_path, capsys):
    if "TOK16" in extra:
        extra = ["--tokenizer", str(adatok.save(adatok.create_model("titok_tiny", num_tokens=16), tmp_path / "t16"))]
    args = ["generate", "--generator", str(generator_dir), "--tokenizer", str(tokenizer_dir), "--out",
            str(tmp_path / "o")]
    assert main(args + extra) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("adatok: error:") and "\n" not in err
    assert __import__("re").search(message, err), err
    assert not (tmp_path / "o").exists()  # nothing was written


def test_models_table_lists_generators(capsys):
    assert main(["models", "maskgit_titok"]) == 0
    out = capsys.readouterr().out
    assert "maskgit_titok_l32" in out and "177.2M" in out and "295.0M" in out
