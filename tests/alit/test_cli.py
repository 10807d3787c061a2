"""`adatok tokenize/reconstruct --adaptive` on an ALIT: per-image lengths, strips of every length."""

import torch
from safetensors.torch import load_file

import adatok
from adatok.cli.main import main
from adatok.data.images import load_image


def test_adaptive_tokenize_and_reconstruct(tmp_path, capsys):
    torch.manual_seed(0)
    model = adatok.create_model("alit_test_tiny").eval()
    folder = adatok.save(model, tmp_path / "alit")
    photos = adatok.__path__[0] + "/data/samples"
    out = tmp_path / "ids.safetensors"
    assert main(["tokenize", photos, "--model", str(folder), "--adaptive", "--criterion", "budget",
                 "--threshold", "16", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("\t16 tokens") == 4
    saved = load_file(str(out))
    assert saved["lengths"].tolist() == [16] * 4 and (saved["ids"][:, 16:] == -1).all()
    # the file's ids decode to what reconstruct writes at the same length
    assert main(["reconstruct", photos, "--model", str(folder), "--adaptive", "--criterion", "budget",
                 "--threshold", "16", "--all-lengths", "--out", str(tmp_path / "rec")]) == 0
    assert "16 tokens" in capsys.readouterr().out
    assert len(list((tmp_path / "rec").glob("*_lengths.png"))) == 4
    with torch.no_grad():
        decoded = model.decode_ids(saved["ids"], saved["lengths"])
    first = sorted((tmp_path / "rec").glob("*_recon.png"))[0]
    assert (load_image(first, 64) - decoded[0]).abs().max() < 2 / 255  # PNG rounding only
    # a fixed-length model refuses --adaptive with one line
    tiny = adatok.save(adatok.create_model("titok_tiny"), tmp_path / "titok")
    assert main(["tokenize", photos, "--model", str(tiny), "--adaptive", "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "adaptive-length tokenizer" in capsys.readouterr().err
