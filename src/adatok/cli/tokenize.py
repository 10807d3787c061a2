"""``adatok tokenize``: images -> one file of token ids (+ lengths) for many images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from ..errors import ConfigError
from .adaptive import add_adaptive_args, check_adaptive_args, select
from ..atomic import atomic_write, atomic_write_path
from .common import ReadableBatches, add_model_args, autocast, check_output_file, load_tokenizer


def add_parser(sub) -> None:
    p = sub.add_parser("tokenize", help="encode images to token ids")
    p.add_argument("images", nargs="+", help="image files or folders (searched recursively)")
    add_model_args(p)
    p.add_argument("--out", required=True, help="output file: .safetensors (default) or .npz; variable-length "
                   "ids are padded with -1 beyond each image's `lengths`")
    add_adaptive_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    out = Path(args.out)
    if out.suffix not in (".safetensors", ".npz"):
        raise ConfigError(f"--out {out}: use a .safetensors or .npz file name")
    check_output_file(out)  # before loading the model: a bad --out must not cost the whole run
    model = load_tokenizer(args)
    check_adaptive_args(args, model)
    device = next(model.parameters()).device
    ids, lengths, codes, names = [], [], [], []
    batches = ReadableBatches(args, model.image_size, "tokenize")
    with torch.inference_mode(), autocast(args, device):
        for paths, batch in batches:
            tokens, _ = select(model, batch.to(device), args, return_images=False)
            names += [str(p) for p in paths]
            lengths.append(tokens.lengths.cpu())
            (ids if tokens.ids is not None else codes).append(
                (tokens.ids if tokens.ids is not None else tokens.codes.float()).cpu()
            )
    failed = batches.failed
    if not names:
        print(f"adatok: no image could be read ({failed} failed)")
        return 1
    tensors = {"lengths": torch.cat(lengths)}
    tensors["ids" if ids else "codes"] = torch.cat(ids or codes)
    meta = {"model": str(args.model), "paths": names, "num_tokens": int(tensors["lengths"].max())}
    # written whole or not at all: a full disk leaves an earlier file of that name as it was
    if out.suffix == ".npz":
        arrays = {k: v.numpy() for k, v in tensors.items()}
        atomic_write(out, lambda f: np.savez(f, **arrays, paths=np.array(names), model=str(args.model)))
    else:
        state = {k: v.contiguous() for k, v in tensors.items()}
        atomic_write_path(out, lambda tmp: save_file(state, str(tmp), metadata={"adatok": json.dumps(meta)}))
    for name, length in zip(names, tensors["lengths"].tolist()):
        print(f"{name}\t{length} tokens")
    print(f"wrote {len(names)} image(s) to {out}" + (f"; {failed} file(s) skipped" if failed else ""))
    return 1 if failed else 0
