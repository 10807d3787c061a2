"""Small parts of the training stack: CSV log, schedule, EMA, sampler, parameter groups."""

import collections
import csv
import itertools

import pytest
import torch

from adatok.data.sampler import ResumableBatchSampler
from adatok.errors import ConfigError
from adatok.train.config import OptimConfig, load_run_config
from adatok.train.ema import EMA
from adatok.train.logger import RunLogger
from adatok.train.schedule import adamw, warmup_cosine


def test_csv_log_widens_its_header_and_truncates_on_resume(tmp_path):
    log = RunLogger(tmp_path, enabled=True, tensorboard=False)
    log.write(1, {"a": 1})
    log.write(2, {"a": 2, "b": 3})
    resumed = RunLogger(tmp_path, enabled=True, tensorboard=False)
    resumed.truncate_after(1)
    resumed.write(2, {"a": 5, "c": 1})
    with (tmp_path / "log.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["step", "a", "b", "c"]
    assert [(r["step"], r["a"], r["c"]) for r in rows] == [("1", "1.0", ""), ("2", "5.0", "1.0")]


def test_warmup_cosine_schedule():
    lr = [warmup_cosine(s, 110, 10, 1e-3, 1e-5) for s in range(110)]
    assert lr[0] == pytest.approx(1e-4) and lr[9] == pytest.approx(1e-3)
    assert lr[10] == pytest.approx(1e-3) and warmup_cosine(110, 110, 10, 1e-3, 1e-5) == pytest.approx(1e-5)
    assert all(a >= b for a, b in zip(lr[10:], lr[11:]))
    assert warmup_cosine(50, 110, 10, 1e-3, 1e-5, "constant") == 1e-3


def test_ema_follows_the_official_warmup():
    model = torch.nn.Linear(1, 1, bias=False)
    model.weight.data.fill_(0.0)
    ema = EMA(model, decay=0.999)
    model.weight.data.fill_(1.0)
    ema.update(model)  # d = min(0.999, 1/10) = 0.1 -> 0.9
    assert ema.model.weight.item() == pytest.approx(0.9)
    ema.update(model)  # d = 2/11
    assert ema.model.weight.item() == pytest.approx(0.9 + (1 - 0.9) * (1 - 2 / 11))


def test_sampler_union_of_ranks_equals_one_process_and_resumes():
    one = iter(ResumableBatchSampler(20, 4, seed=3))
    r0 = iter(ResumableBatchSampler(20, 2, seed=3, rank=0, world_size=2))
    r1 = iter(ResumableBatchSampler(20, 2, seed=3, rank=1, world_size=2))
    for _ in range(12):  # crosses epochs (5 batches per epoch)
        assert sorted(next(one)) == sorted(next(r0) + next(r1))
    full = list(zip(range(9), ResumableBatchSampler(20, 4, seed=3)))
    resumed = list(zip(range(4), ResumableBatchSampler(20, 4, seed=3, start=5)))
    assert [b for _, b in full[5:9]] == [b for _, b in resumed]
    with pytest.raises(ConfigError, match="too few"):
        ResumableBatchSampler(3, 4)


def test_sampler_repeat_shows_each_image_that_many_times_per_epoch_with_distinct_seeds():
    sampler = ResumableBatchSampler(5, 4, seed=1, repeat=4)  # 20 views of 5 images: 5 batches per epoch
    assert sampler.batches_per_epoch == 5
    epoch = [item for _, batch in zip(range(5), sampler) for item in batch]
    indices = [i for i, _ in epoch]
    assert sorted(indices) == sorted(list(range(5)) * 4)
    assert len({s for _, s in epoch}) == 20  # every view its own augmentation seed
    with pytest.raises(ConfigError, match="too few"):
        ResumableBatchSampler(5, 8)
    assert ResumableBatchSampler(5, 8, repeat=2).batches_per_epoch == 1
    with pytest.raises(ConfigError, match="repeat"):
        ResumableBatchSampler(5, 4, repeat=0)


def test_repeated_aug_gives_each_drawn_image_3_views_on_3_ranks_in_one_step():
    """DeiT's repeated augmentation: 12 images, 3 ranks x batch 2 = 2 steps an epoch (12 slots):
    4 images drawn, each seen 3 times, by the 3 ranks in the same step, each view its own seed."""
    n, batch, world, k = 12, 2, 3, 3
    ranks = [ResumableBatchSampler(n, batch, seed=4, rank=r, world_size=world, repeated_aug=k) for r in range(world)]
    assert ranks[0].batches_per_epoch == 2                       # the epoch keeps its length
    for epoch in range(3):
        streams = [list(zip(range(2), itertools.islice(iter(s), 2 * epoch, None))) for s in ranks]
        seen = [item for stream in streams for _, b in stream for item in b]
        counts = collections.Counter(i for i, _ in seen)
        assert len(counts) == n // k and set(counts.values()) == {k}   # every index in the epoch: 3 times
        assert len({s for _, s in seen}) == n                            # 12 views, 12 augmentation seeds
        for step in range(2):
            for slot in range(batch):                                    # one image per slot across ranks
                assert len({streams[r][step][1][slot][0] for r in range(world)}) == 1
    other = ResumableBatchSampler(n, batch, seed=4, rank=0, world_size=world, repeated_aug=k, start=2)
    epoch1 = [b for _, b in zip(range(2), itertools.islice(iter(ranks[0]), 2, None))]
    assert [b for _, b in zip(range(2), other)] == epoch1           # resume is exact
    plain = ResumableBatchSampler(n, batch, seed=4, rank=0, world_size=world)
    assert len(set(plain.permutation(0).tolist())) == n                 # without it: every image once
    assert ranks[0].permutation(0).tolist()[:3] == [ranks[0].permutation(0).tolist()[0]] * 3
    with pytest.raises(ConfigError, match="repeated_aug"):
        ResumableBatchSampler(n, batch, repeated_aug=0)


def test_no_weight_decay_on_norms_tokens_and_biases():
    import adatok

    model = adatok.create_model("titok_pixels_tiny")
    opt = adamw(model, OptimConfig(weight_decay=0.05))
    decayed = {id(p) for p in opt.param_groups[0]["params"]}
    names = {n for n, p in model.named_parameters() if id(p) in decayed}
    assert "encoder.transformer.blocks.0.attn.qkv.weight" in names
    assert not any(w in n for n in names for w in ("latent_tokens", "norm", "bias", "pos_embed", "mask_token"))


def test_overrides_are_typed():
    cfg = load_run_config({"task": "titok_single"}, ["optim.lr=2e-4", "optim.betas=[0.9, 0.95]", "train.ema_decay=0",
                                                      "options.gan_weight=0.5", "data.flip=false"])
    assert cfg.optim.lr == 2e-4 and cfg.optim.betas == (0.9, 0.95) and cfg.train.ema_decay == 0
    assert cfg.options == {"gan_weight": 0.5} and cfg.data.flip is False
    from_yaml = load_run_config({"task": "titok_single", "optim": {"lr": "1e-4"}, "train": {"steps": "1e3"}})
    assert from_yaml.optim.lr == 1e-4 and from_yaml.train.steps == 1000
    with pytest.raises(ConfigError, match="OptimConfig.lr: expected a number"):
        load_run_config({"task": "titok_single", "optim": {"lr": "fast"}})


def test_yaml_reads_off_as_a_word_not_a_boolean(tmp_path):
    # YAML 1.1 reads off/on/yes/no as booleans: ALIT's halting rule "off" became False
    cfg = load_run_config({"task": "alit_stage1"}, ["model_overrides.halting=off", "data.flip=false"])
    assert cfg.model_overrides == {"halting": "off"} and cfg.data.flip is False
    recipe = tmp_path / "r.yaml"
    recipe.write_text("task: alit_stage1\nmodel_overrides: {halting: off, restart_dead_codes: true}\n"
                      "data: {flip: False}\n")
    cfg = load_run_config(recipe)
    assert cfg.model_overrides == {"halting": "off", "restart_dead_codes": True} and cfg.data.flip is False
