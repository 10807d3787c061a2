"""``adatok generate --npz``: samples in the ADM evaluator's format, batch by batch, atomically,
never over an existing file without --overwrite."""

import numpy as np

import adatok
from adatok.cli.main import main
from adatok.data.images import to_uint8
from adatok.generators import generate_images


def test_generate_npz_writes_adm_arrays_equal_to_the_api(generator_dir, tokenizer_dir, tmp_path, capsys):
    path = tmp_path / "samples.npz"
    args = ["generate", "--generator", str(generator_dir), "--tokenizer", str(tokenizer_dir), "--classes", "1,7",
            "--n", "3", "--steps", "2", "--seed", "4", "--batch-size", "4", "--npz", str(path), "--out",
            str(tmp_path / "pngs")]
    assert main(args) == 0
    assert "wrote 6 sample(s)" in capsys.readouterr().out
    assert not (tmp_path / "pngs").exists()  # --npz writes only the .npz
    want = generate_images(adatok.load(generator_dir), adatok.load(tokenizer_dir), [1, 7], n=3, batch_size=4,
                           seed=4, steps=2)
    with np.load(path) as z:
        arr, labels = z["arr_0"], z["arr_1"]
    assert arr.shape == (6, 64, 64, 3) and arr.dtype == np.uint8  # batches of 4 + 2
    assert np.array_equal(arr, to_uint8(want.images).permute(0, 2, 3, 1).numpy())
    assert labels.tolist() == [1, 1, 1, 7, 7, 7]
    before = path.read_bytes()
    assert main(args[:-4] + ["--npz", str(path)]) == 2  # exists: kept
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--overwrite" in err and path.read_bytes() == before
    assert main(args[:-4] + ["--npz", str(path), "--overwrite", "--seed", "5"]) == 0
    assert path.read_bytes() != before
    assert not list(tmp_path.glob(".*.tmp"))  # no temp file left behind


def test_generate_npz_all_classes_and_bad_target(generator_dir, tokenizer_dir, tmp_path, capsys):
    path = tmp_path / "all.npz"
    assert main(["generate", "--generator", str(generator_dir), "--tokenizer", str(tokenizer_dir), "--classes", "all",
                 "--n", "1", "--steps", "1", "--npz", str(path)]) == 0
    classes = adatok.load(generator_dir).config.num_classes
    with np.load(path) as z:
        assert z["arr_0"].shape == (classes, 64, 64, 3) and z["arr_1"].tolist() == list(range(classes))
    assert main(["generate", "--generator", str(generator_dir), "--npz", str(tmp_path / "x.png")]) == 2
    assert ".npz" in capsys.readouterr().err
