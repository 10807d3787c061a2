"""The length-aware generator on a prefix tokenizer's token files (docs/generation.md): per-image
lengths from ``select(x, "psnr", t)`` written by ``adatok data pretokenize`` / ``adatok tokenize
--adaptive``, a length-aware MaskGIT trained on them, and its samples decoded by the prefix model's
``decode_ids(ids, lengths)``."""

from pathlib import Path

import torch

import adatok
from adatok.cli.main import main
from adatok.data.images import load_image
from adatok.data.token_files import read_token_file
from adatok.generators import generate_images
from adatok.interface import PAD_ID
from adatok.tokenizers.prefix.lagrangian import per_image_psnr
from adatok.train import run
from adatok.train.config import load_run_config

CONFIGS = Path(__file__).parents[2] / "configs"


def _threshold_with_several_lengths(tok, images) -> float:
    """A PSNR target at which ``select`` gives these images at least two different lengths (read
    off a sweep: the untrained model's curves decide, not a hard-coded number)."""
    with torch.no_grad():
        psnr = per_image_psnr(tok.sweep(images).images, images)  # T x B
        for t in psnr.flatten().sort().values.tolist():
            if len(set(tok.select(images, "psnr", t, return_images=False).tokens.lengths.tolist())) >= 2:
                return t
    raise AssertionError("no PSNR target gives these images two lengths")


def test_length_aware_generator_on_prefix_tokens(photos, tmp_path):
    torch.manual_seed(0)
    tok_dir = adatok.save(adatok.create_model("prefix_tiny_step2"), tmp_path / "prefix")  # lengths 2/4/6/8
    tok = adatok.load(tok_dir).eval()
    files = sorted(photos.glob("*.jpg"))
    images = torch.stack([load_image(p, 64) for p in files])
    t = _threshold_with_several_lengths(tok, images)
    with torch.no_grad():
        want = tok.select(images, "psnr", t, return_images=False).tokens

    tokens = tmp_path / "prefix.safetensors"
    assert main(["data", "pretokenize", str(photos), str(tokens), "--tokenizer", str(tok_dir), "--flip",
                 "--criterion", "psnr", "--threshold", repr(t)]) == 0
    f = read_token_file(tokens)
    assert f.ids.shape == (8, 8) and f.meta["codebook_size"] == 64
    assert torch.equal(f.lengths[:4], want.lengths) and torch.equal(f.ids[:4], want.ids)  # center crops
    assert len(set(f.lengths.tolist())) >= 2 and set(f.lengths.tolist()) <= {2, 4, 6, 8}
    valid = torch.arange(8) < f.lengths.unsqueeze(1)
    assert (f.ids[~valid] == PAD_ID).all() and (f.ids[valid] >= 0).all()
    # `adatok tokenize --adaptive` writes the same ids and lengths (a file the generator also reads)
    assert main(["tokenize", str(photos), "--model", str(tok_dir), "--out", str(tmp_path / "tk.safetensors"),
                 "--adaptive", "--criterion", "psnr", "--threshold", repr(t)]) == 0
    g = read_token_file(tmp_path / "tk.safetensors")
    assert torch.equal(g.lengths, want.lengths) and torch.equal(g.ids, want.ids)

    cfg = load_run_config(CONFIGS / "maskgit_alit_length.yaml", [
        f"out={tmp_path / 'run'}", f"data.train={tokens}", "data.num_samples=4", "train.steps=3",
        "train.batch_size=8", "train.log_every=1", "train.ckpt_every=3", "train.sample_every=3",
        "train.tensorboard=false", "optim.warmup_steps=0", "options.length_hide_prob=0.5",
        "model_overrides.width=32", "model_overrides.depth=1", "model_overrides.heads=2"])
    exported = run(cfg)
    assert (tmp_path / "run" / "samples" / "step_0000003.png").exists()  # sample grid decoded by the prefix model
    gen = adatok.load(exported).eval()
    lengths = tuple(sorted(set(f.lengths.tolist())))
    assert gen.config.lengths == lengths and gen.config.num_tokens == lengths[-1]
    assert gen.config.tokenizer == str(tok_dir)

    out = generate_images(gen, tok, n=6, seed=0)
    assert out.images.shape == (6, 3, 64, 64) and set(out.lengths.tolist()) <= set(lengths)
    with torch.no_grad():
        torch.testing.assert_close(out.images, tok.decode_ids(out.ids, out.lengths), atol=1e-5, rtol=0)
    valid = torch.arange(out.ids.shape[1]) < out.lengths.unsqueeze(1)
    assert (out.ids[~valid] == PAD_ID).all() and ((out.ids[valid] >= 0) & (out.ids[valid] < 64)).all()
    short = lengths[0]
    forced = generate_images(gen, tok, n=2, seed=0, lengths=short)
    assert forced.lengths.tolist() == [short, short]
    with torch.no_grad():  # a prefix decode reads only the first `short` ids: the rest is the mask token
        padded = torch.where(torch.arange(forced.ids.shape[1]) < short, forced.ids, 0)
        torch.testing.assert_close(forced.images, tok.decode_ids(padded, forced.lengths), atol=1e-5, rtol=0)
    # the CLI: the tokenizer named in the token file decodes, token counts per image written
    assert main(["generate", "--generator", str(exported), "--n", "3", "--out", str(tmp_path / "s"),
                 "--seed", "1"]) == 0
    written = read_token_file(tmp_path / "s" / "tokens.safetensors")
    assert set(written.lengths.tolist()) <= set(lengths) and len(list((tmp_path / "s").glob("0*.png"))) == 3
