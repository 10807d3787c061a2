"""Training on streamed shards (pipe:cat, webdataset) resumes exactly: 3 steps, then --resume to 6,
gives the weights of 6 uninterrupted steps (an epoch boundary is crossed after step 4)."""

import yaml
from safetensors.torch import load_file

from adatok.data import write_shards
from adatok.train import run

from .conftest import tiny_run


def test_stream_shards_resume_gives_the_uninterrupted_weights(photos, tmp_path):
    paths, _ = write_shards(photos, tmp_path / "shards", samples_per_shard=3)
    source = f"pipe:cat {tmp_path}/shards/shard-{{000000..{len(paths) - 1:06d}}}.tar"

    def recipe(name, steps):
        cfg = tiny_run("titok_single", tmp_path / name, photos, model="titok_pixels_tiny",
                       **{"train.steps": steps, "train.ckpt_every": 3, "train.sample_every": 0, "train.batch_size": 2,
                          "train.ema_decay": 0.0, "data.num_samples": 0, "data.shuffle_buffer": 3,
                          "options.perceptual": "none", "options.gan_weight": 0.0})
        cfg["data"]["train"] = source
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return path

    run(recipe("full", 6))
    run(recipe("part", 3))
    run(recipe("part", 6), resume=True)
    a = load_file(str(tmp_path / "full" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "part" / "model" / "model.safetensors"))
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
