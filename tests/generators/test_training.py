"""Generator training: the objective's pieces, token files (pretokenize round trip), the small
recipe overfitting one batch on the shared loop, and length-aware training + sampling."""

import csv
import math
from pathlib import Path

import pytest
import torch

import adatok
from adatok.cli.main import main
from adatok.data.images import load_image
from adatok.data.token_files import read_token_file, write_token_file
from adatok.errors import ConfigError
from adatok.interface import PAD_ID
from adatok.generators.training import arccos_mask, drop_labels, masked_token_loss
from adatok.train import run
from adatok.train.config import load_run_config

CONFIGS = Path(__file__).parents[2] / "configs"


def losses(out, column="loss_model"):
    with (out / "log.csv").open() as f:
        return [float(r[column]) for r in csv.DictReader(f) if r.get(column)]


def test_arccos_mask_counts_and_positions():
    torch.manual_seed(0)
    lengths = torch.tensor([16] * 2000 + [5] * 2000)
    mask = arccos_mask(lengths, 16)
    counts = mask.sum(1)
    assert (counts >= 1).all() and (counts <= lengths).all()
    assert not mask[2000:, 5:].any()  # never past a sample's length
    # E[ratio] = E[acos(t)] / (pi/2) = 2/pi for t ~ U(0, 1)
    assert abs(counts[:2000].float().mean().item() / 16 - 2 / math.pi) < 0.03
    assert (mask[:2000].float().mean(0) - mask[:2000].float().mean()).abs().max() < 0.06  # uniform positions


def test_loss_weights_masked_one_visible_tenth():
    logits = torch.randn(2, 4, 10)
    targets = torch.randint(0, 10, (2, 4))
    masked = torch.tensor([[True, False, False, False], [True, True, False, False]])
    valid = torch.tensor([[True] * 4, [True, True, True, False]])
    loss, logs = masked_token_loss(logits, targets, masked, valid, label_smoothing=0.1, unmasked_weight=0.1)
    ce = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), label_smoothing=0.1,
                                           reduction="none").view(2, 4)
    w = torch.tensor([[1, 0.1, 0.1, 0.1], [1, 1, 0.1, 0]])
    torch.testing.assert_close(loss, (ce * w).sum() / w.sum())
    assert 0 <= logs["masked_acc"] <= 1
    dropped = drop_labels(torch.zeros(10000, dtype=torch.long), 0.1)
    assert abs((dropped == -1).float().mean().item() - 0.1) < 0.02


def test_pretokenize_round_trip(photos, tokenizer_dir, tmp_path):
    out = tmp_path / "t.safetensors"
    assert main(["data", "pretokenize", str(photos), str(out), "--tokenizer", str(tokenizer_dir), "--flip",
                 "--views", "2", "--batch-size", "3"]) == 0
    f = read_token_file(out)
    assert f.ids.shape == (12, 8) and f.meta["codebook_size"] == 64 and f.meta["tokenizer"] == str(tokenizer_dir)
    assert f.source.tolist() == [0, 1, 2, 3] * 3 and (f.labels == -1).all() and (f.lengths == 8).all()
    tok = adatok.load(tokenizer_dir)
    images = torch.stack([load_image(p, 64) for p in sorted(photos.glob("*.jpg"))])
    with torch.no_grad():
        assert torch.equal(f.ids[:4], tok.encode(images).ids)  # center crops
        assert torch.equal(f.ids[4:8], tok.encode(images.flip(-1)).ids)  # their mirrors
    npz = tmp_path / "t.npz"
    write_token_file(npz, f.ids, f.lengths, f.labels, f.source, f.meta)
    g = read_token_file(npz)
    assert torch.equal(g.ids, f.ids) and g.meta == f.meta
    with pytest.raises(ConfigError, match="no such token file"):
        read_token_file(tmp_path / "missing.safetensors")
    # an ImageFolder tree: labels and class names come along
    for i, p in enumerate(sorted(photos.glob("*.jpg"))):
        (tmp_path / "tree" / ("cats" if i % 2 else "dogs")).mkdir(parents=True, exist_ok=True)
        (tmp_path / "tree" / ("cats" if i % 2 else "dogs") / p.name).write_bytes(p.read_bytes())
    assert main(["data", "pretokenize", str(tmp_path / "tree"), str(npz), "--tokenizer", str(tokenizer_dir),
                 "--labelled"]) == 0
    labelled = read_token_file(npz)
    assert labelled.meta["classes"] == ["cats", "dogs"] and sorted(labelled.labels.tolist()) == [0, 0, 1, 1]
    # encode options go to the tokenizer (an adaptive tokenizer's length criterion); unknown ones fail first
    assert main(["data", "pretokenize", str(photos), str(tmp_path / "x.npz"), "--tokenizer", str(tokenizer_dir),
                 "--criterion", "mse"]) == 2
    assert not (tmp_path / "x.npz").exists()


def test_small_recipe_overfits_and_generates(photos, tokenizer_dir, tmp_path):
    tokens = tmp_path / "photos.safetensors"
    assert main(["data", "pretokenize", str(photos), str(tokens), "--tokenizer", str(tokenizer_dir), "--flip"]) == 0
    cfg = load_run_config(CONFIGS / "maskgit_photos.yaml", [
        f"out={tmp_path / 'run'}", f"data.train={tokens}", "data.num_samples=4", "train.steps=24",
        "train.batch_size=8", "train.log_every=1", "train.ckpt_every=24", "train.sample_every=24",
        "train.tensorboard=false", "optim.warmup_steps=0", "optim.lr=2e-3", "model_overrides.width=64",
        "model_overrides.depth=2", "model_overrides.heads=4"])
    exported = run(cfg)
    values = losses(tmp_path / "run")
    assert sum(values[-3:]) / 3 < 0.8 * sum(values[:3]) / 3, values
    assert (tmp_path / "run" / "samples" / "step_0000024.png").exists()
    gen = adatok.load(exported)
    assert gen.config.num_classes == 0 and gen.config.tokenizer == str(tokenizer_dir)
    # the exported generator + its tokenizer through the CLI (the tokenizer named by the token file)
    out = tmp_path / "samples"
    assert main(["generate", "--generator", str(exported), "--n", "3", "--out", str(out), "--seed", "1"]) == 0
    assert len(list(out.glob("0*.png"))) == 3 and (out / "contact_sheet.png").exists()
    written = read_token_file(out / "tokens.safetensors").ids
    assert torch.equal(written, gen.generate(num_samples=3, seed=1).ids)  # same seed, same samples


def _two_length_file(path, n=64, short=8, long=16, short_share=0.75):
    """Rows of two lengths (3:1); short rows use codes 0..31, long rows codes 32..63, each row a
    shifted ramp, so the content depends on the length."""
    g = torch.Generator().manual_seed(0)
    is_short = torch.arange(n) < int(n * short_share)
    start = torch.randint(0, 24, (n,), generator=g)
    ids = (start.unsqueeze(1) + torch.arange(long)) % 32 + torch.where(is_short, 0, 32).unsqueeze(1)
    lengths = torch.where(is_short, short, long)
    ids = torch.where(torch.arange(long) < lengths.unsqueeze(1), ids, 0)
    write_token_file(path, ids, lengths, torch.full((n,), -1), torch.arange(n),
                     {"tokenizer": "", "codebook_size": 64, "num_tokens": long})
    return path


def test_length_aware_training_samples_lengths_as_trained(tmp_path):
    tokens = _two_length_file(tmp_path / "alit_like.safetensors")
    cfg = load_run_config(CONFIGS / "maskgit_alit_length.yaml", [
        f"out={tmp_path / 'run'}", f"data.train={tokens}", "data.num_samples=4", "train.steps=100",
        "train.batch_size=32", "train.log_every=10", "train.ckpt_every=100", "train.sample_every=100",
        "train.tensorboard=false", "train.ema_decay=0", "optim.warmup_steps=0", "optim.lr=2e-3",
        "optim.schedule=constant", "options.length_hide_prob=0.5", "model_overrides.width=64",
        "model_overrides.depth=2", "model_overrides.heads=4", "model_overrides.dropout=0",
        "model_overrides.attn_dropout=0"])
    gen = adatok.load(run(cfg))
    assert gen.config.lengths == (8, 16) and gen.config.num_tokens == 16
    assert all(math.isfinite(v) for v in losses(tmp_path / "run", "length_ce"))  # the length head trained
    out = gen.generate(num_samples=400, seed=0)
    short = out.lengths == 8
    assert set(out.lengths.tolist()) == {8, 16}
    assert 0.6 < short.float().mean().item() < 0.9  # trained on 75 % short rows
    valid = torch.arange(16) < out.lengths.unsqueeze(1)
    assert (out.ids[~valid] == PAD_ID).all()  # one padding value (adatok.interface.PAD_ID)
    # the content follows the sampled length: short samples use codes < 32, long ones >= 32
    assert (out.ids[short][:, :8] < 32).float().mean() > 0.9
    assert (out.ids[~short] >= 32).float().mean() > 0.9
    forced = gen.generate(num_samples=4, lengths=16, seed=0)
    assert (forced.lengths == 16).all()


def test_task_rejects_mismatched_data(tmp_path, photos):
    tokens = _two_length_file(tmp_path / "var.safetensors")
    base = {"task": "maskgit", "out": str(tmp_path / "r"), "model": "maskgit_tiny",
            "data": {"train": str(tokens), "workers": 0}, "train": {"steps": 1, "batch_size": 2}}
    with pytest.raises(ConfigError, match="different lengths.*length-aware"):
        run(base)
    write_token_file(tmp_path / "lab.safetensors", torch.zeros(4, 8, dtype=torch.long), torch.full((4,), 8),
                     torch.tensor([0, 1, 2, 12]), torch.arange(4), {"codebook_size": 64})
    with pytest.raises(ConfigError, match="labels reach 12.*10 classes"):
        run({**base, "data": {"train": str(tmp_path / "lab.safetensors"), "workers": 0}})
    with pytest.raises(ConfigError, match="trains on a token file"):
        run({**base, "data": {"train": str(photos), "workers": 0}})


def test_resume_continues_exactly(tmp_path):
    # masking, class dropout and the data order all come back from the checkpoint
    tokens = tmp_path / "t.safetensors"
    g = torch.Generator().manual_seed(0)
    write_token_file(tokens, torch.randint(0, 64, (16, 8), generator=g), torch.full((16,), 8),
                     torch.randint(0, 10, (16,), generator=g), torch.arange(16), {"codebook_size": 64})

    def recipe(out, steps):
        return {"task": "maskgit", "out": str(out), "model": "maskgit_tiny", "data": {"train": str(tokens), "workers": 0,
                                                                                      "num_samples": 0},
                "optim": {"lr": 1e-3, "warmup_steps": 0, "schedule": "constant"},
                "train": {"steps": steps, "batch_size": 4, "ckpt_every": 4, "sample_every": 0, "log_every": 1,
                          "ema_decay": 0.9, "tensorboard": False, "seed": 0}}

    full = adatok.load(run(recipe(tmp_path / "full", 8)))
    run(recipe(tmp_path / "part", 4))
    resumed = adatok.load(run(recipe(tmp_path / "part", 8), resume=True))
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_masked_token_loss_ignores_padding_ids():
    # ALIT token files pad ids with -1 beyond each row's length: those positions carry no weight
    from adatok.generators.training import masked_token_loss

    torch.manual_seed(0)
    logits = torch.randn(2, 4, 8)
    targets = torch.tensor([[1, 2, 3, 4], [5, 6, -1, -1]])
    valid = targets >= 0
    masked = torch.tensor([[True, False, True, False], [True, True, False, False]])
    loss, _ = masked_token_loss(logits, targets, masked, valid)
    same, _ = masked_token_loss(logits, targets.clamp(min=0), masked, valid)
    assert torch.isfinite(loss) and torch.equal(loss, same)
