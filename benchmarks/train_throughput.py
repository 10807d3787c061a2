"""Training-step throughput per recipe: images/s and peak memory, ours vs an eager baseline.

"ours" is the step as the loop runs it: SDPA attention, channels_last convolutions, bf16 autocast
on GPU. "eager" is the same step with explicit-softmax attention, NCHW convolutions and fp32,
measured in the same run on the same weights. A step = forward + backward of every phase +
optimizer steps (the loop's ``Trainer.train_step`` on an in-memory batch).

    python benchmarks/train_throughput.py                  # tiny presets on CPU (about a minute)
    python benchmarks/train_throughput.py --size real      # the paper sizes (GPU)
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import resource
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import best_of, default_device, environment, format_table  # noqa: E402

import adatok  # noqa: E402
from adatok import reduction  # noqa: E402
from adatok.layers import Attention  # noqa: E402
from adatok.reduction import timm_patch  # noqa: E402
from adatok.train.config import load_run_config  # noqa: E402
from adatok.train.distributed import DistInfo  # noqa: E402
from adatok.train.loop import Trainer  # noqa: E402

NO_PERCEPTUAL = {"perceptual": "none", "gan_start": 0, "gan_weight": 0.01}
RECIPES = {
    # name: (task, model, image size (tiny), image size (real), extra options, teacher preset)
    "vqgan": ("vqgan", {"tiny": "maskgit_vqgan_tiny", "real": "maskgit_vqgan_f16_256"}, NO_PERCEPTUAL, None),
    "titok_stage1": ("titok_stage1", {"tiny": "titok_tiny", "real": "titok_s128"}, {}, "maskgit_vqgan"),
    "titok_stage2": ("titok_stage2", {"tiny": "titok_tiny", "real": "titok_s128"}, NO_PERCEPTUAL, None),
    "titok_single": ("titok_single", {"tiny": "titok_pixels_tiny", "real": "titok_bl64_vq8k"}, NO_PERCEPTUAL, None),
    "alit_stage1": ("alit_stage1", {"tiny": "alit_test_tiny", "real": "alit_small"}, {}, "maskgit_vqgan"),
    "alit_stage2": ("alit_stage2", {"tiny": "alit_test_tiny", "real": "alit_small"}, NO_PERCEPTUAL, None),
    # ImagePiece's setting: DeiT with re-tokenization + pruning at blocks 4/7/10 and the LCB stem
    "classify_imagepiece": ("classify", {"tiny": "deit_tiny_patch16_224", "real": "deit_small_patch16_224"},
                            {"reduction": "imagepiece", "num_classes": 1000,
                             "reduction_settings": {"lcb": True, "keep_rate": 0.7}}, None),
}
TIMM_IMAGE_SIZE = 224


@contextlib.contextmanager
def eager_mode(model: torch.nn.Module, on: bool):
    """Explicit-softmax attention (ours, timm's, the token-reduction patch's) and NCHW convolutions while ``on``."""
    if not on:
        yield
        return
    Attention.use_sdpa = False
    fused = [m for m in model.modules() if getattr(m, "fused_attn", None) is True]  # timm's attention switch
    for m in fused:
        m.fused_attn = False
    patch = timm_patch.get_patch(model) if reduction.is_patched(model) else None  # a token-reduced timm model
    if patch is not None:
        patch.attention = "eager"
    model.to(memory_format=torch.contiguous_format)
    try:
        yield
    finally:
        Attention.use_sdpa = True
        for m in fused:
            m.fused_attn = True
        if patch is not None:
            patch.attention = "sdpa"


def make_trainer(name: str, size: str, device: torch.device, batch: int, precision: str, tmp: Path) -> Trainer:
    task, models, options, teacher = RECIPES[name]
    model = models[size]
    data = str(tmp)
    if task == "classify":  # a timm model; the task reads class folders from the data
        image, data = TIMM_IMAGE_SIZE, str(_one_class_folder(tmp))
    else:
        image = adatok.get_config(model).image_size
    cfg = {"task": task, "model": model, "out": str(tmp / name), "options": options,
           "data": {"train": data, "image_size": image, "num_samples": 0},
           "train": {"steps": 10, "batch_size": batch, "precision": precision, "ema_decay": 0.999,
                     "tensorboard": False, "sample_every": 0}}
    if teacher:
        config = adatok.get_config(model)
        pixel = config.base if task.startswith("alit") else config.pixel
        path = tmp / f"teacher_{size}"
        if not path.exists():
            adatok.save(adatok.create_model(pixel), path)
        cfg["teacher"] = str(path)
    if task in ("titok_stage2", "alit_stage2"):  # fine-tuning starts from a saved model
        cfg["model"] = str(tmp / f"{task}_{size}")
        if not Path(cfg["model"]).exists():
            adatok.save(adatok.create_model(model), cfg["model"])
    return Trainer(load_run_config(cfg), DistInfo(0, 1, 0, device)), image


def _one_class_folder(tmp: Path) -> Path:
    from PIL import Image

    folder = tmp / "classes" / "a"
    if not folder.exists():
        folder.mkdir(parents=True)
        Image.new("RGB", (TIMM_IMAGE_SIZE, TIMM_IMAGE_SIZE)).save(folder / "0.png")
    return folder.parent


def measure(name, size, device, batch, repeats, tmp):
    rows = []
    for label, eager in (("ours", False), ("eager", True)):
        precision = "fp32" if eager or device.type == "cpu" else "bf16"
        trainer, image = make_trainer(name, size, device, batch, precision, tmp)
        data = {"image": torch.rand(batch, 3, image, image, device=device),
                "label": torch.zeros(batch, dtype=torch.long, device=device),
                "index": torch.arange(batch, device=device)}
        stream = iter(lambda: data, None)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        with eager_mode(trainer.raw["model"], eager):
            seconds, _ = best_of(lambda: trainer.train_step(stream), device, repeats)
        if device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(device) / 2**20
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process-wide, MiB
        rows.append((label, precision, batch / seconds, peak))
    return rows


def measure_fitting(name, size, device, batch, repeats, tmp):
    """``measure`` at ``batch``, halved until both paths fit in GPU memory (the eager fp32 path
    needs the most): ``(rows, batch used)``."""
    while True:
        try:
            return measure(name, size, device, batch, repeats, tmp), batch
        except torch.OutOfMemoryError:
            if batch == 1:
                raise
            gc.collect()
            torch.cuda.empty_cache()
            batch //= 2
            print(f"  {name}: out of GPU memory, retrying at batch {batch}", flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipes", default=",".join(RECIPES))
    p.add_argument("--size", choices=["tiny", "real"], default="tiny")
    p.add_argument("--device", default=default_device())
    p.add_argument("--batch-size", type=int, default=None, help="default: 8 (tiny), 32 (real)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    batch = args.batch_size or (8 if args.size == "tiny" else 32)
    print(" | ".join(f"{k} {v}" for k, v in environment(device).items()))
    table = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.recipes.split(","):
            (ours, eager), used = measure_fitting(name, args.size, device, batch, args.repeats, Path(tmp))
            table.append((name, used, f"{ours[2]:.2f} ({ours[1]})", f"{eager[2]:.2f} ({eager[1]})",
                          f"{ours[2] / eager[2]:.2f}x", f"{ours[3]:.0f}", f"{eager[3]:.0f}"))
            print(f"  {name}: ours {ours[2]:.2f} img/s, eager {eager[2]:.2f} img/s ({ours[2] / eager[2]:.2f}x)", flush=True)
    mem = "peak MiB (CUDA)" if device.type == "cuda" else "peak RSS MiB (process, cumulative)"
    print(format_table(["recipe", "batch", "ours img/s", "eager img/s", "ours/eager", f"ours {mem}", f"eager {mem}"],
                       table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
