"""Token files pad with the one padding value (adatok.interface.PAD_ID) and still read the 0-padded
files of format version 1: lengths are the truth, whatever sits past them is not a token."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from adatok.data import TokenDataset, read_token_file, write_token_file
from adatok.interface import PAD_ID

IDS = torch.tensor([[5, 6, 7, 8], [9, 10, 0, 0]])  # row 1 has 2 tokens, padded with 0 as version 1 wrote
LENGTHS = torch.tensor([4, 2])


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_written_files_pad_with_pad_id(tmp_path, suffix):
    path = write_token_file(tmp_path / f"t{suffix}", IDS, LENGTHS, torch.tensor([-1, 3]), torch.arange(2), {})
    f = read_token_file(path)
    assert f.meta["pad_id"] == PAD_ID == -1 and f.meta["format_version"] == 2
    assert f.ids.tolist() == [[5, 6, 7, 8], [9, 10, PAD_ID, PAD_ID]] and f.lengths.tolist() == [4, 2]
    item = TokenDataset(path)[1]
    assert item["ids"].tolist() == [9, 10, PAD_ID, PAD_ID] and int(item["length"]) == 2


def test_old_zero_padded_safetensors_still_loads(tmp_path):
    path = tmp_path / "old.safetensors"
    meta = {"kind": "tokens", "format_version": 1, "codebook_size": 64, "num_tokens": 4}
    save_file({"ids": IDS.int(), "lengths": LENGTHS, "labels": torch.tensor([-1, -1]), "source": torch.arange(2)},
              str(path), metadata={"adatok": json.dumps(meta)})
    f = read_token_file(path)
    assert f.ids.tolist() == [[5, 6, 7, 8], [9, 10, PAD_ID, PAD_ID]]  # the 0s past the length are padding
    assert f.lengths.tolist() == [4, 2] and f.codebook_size == 64


def test_old_zero_padded_npz_still_loads(tmp_path):
    path = tmp_path / "old.npz"
    np.savez(path, ids=IDS.numpy(), lengths=LENGTHS.numpy(), meta=np.array(json.dumps({"format_version": 1})))
    f = read_token_file(path)
    assert f.ids.tolist() == [[5, 6, 7, 8], [9, 10, PAD_ID, PAD_ID]] and f.labels.tolist() == [-1, -1]


def test_a_real_zero_id_inside_the_length_is_kept(tmp_path):
    ids = torch.tensor([[0, 0, 3, 0]])
    f = read_token_file(write_token_file(tmp_path / "z.safetensors", ids, torch.tensor([4]), torch.tensor([-1]),
                                         torch.arange(1), {}))
    assert f.ids.tolist() == [[0, 0, 3, 0]]
