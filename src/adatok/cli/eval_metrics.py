"""The metric flags of ``adatok eval`` (rFID / IS / LPIPS from local weight files) and the pieces
``adatok eval`` and ``adatok eval-fid`` share: weight-file lookup that fails in one line before
any work, and ``torchrun`` support (each rank reads its share of the images; statistics are
summed across ranks). The protocol is described in docs/evaluation.md."""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

from ..errors import ConfigError
from ..losses.perceptual import WeightsNotFoundError

INCEPTION_HINT = ("put the file there (it is the FID Inception of pytorch-fid / torch-fidelity, "
                  "release 'fid_weights' of pytorch-fid) or pass --inception FILE")


# ----------------------------------------------------------------------------- flags


def add_metric_args(p) -> None:
    """``--rfid``, ``--inception``, ``--lpips``, ``--lpips-dir``, ``--quiet`` of ``adatok eval``."""
    g = p.add_argument_group("distribution metrics (weights from local files, never downloaded)")
    g.add_argument("--rfid", action="store_true",
                   help="also rFID (references: the center-cropped inputs at the model's size) and the "
                   "Inception Score of the reconstructions")
    add_inception_arg(g)
    g.add_argument("--lpips", action="store_true", help="also LPIPS (VGG16, v0.1 heads) of the reconstructions")
    g.add_argument("--lpips-dir", help="folder with vgg16-397923af.pth and vgg.pth (or lpips_vgg_v0.1.pth); "
                   "default: $ADATOK_WEIGHTS_DIR, the lpips package, torch hub's cache")
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def add_inception_arg(p) -> None:
    p.add_argument("--inception", metavar="FILE",
                   help="FID Inception weights pt_inception-2015-12-05-6726825d.pth (default: "
                   "$ADATOK_WEIGHTS_DIR, then ~/.cache/adatok/weights, then torch hub's cache)")


def inception_search_dirs() -> list[tuple[str, Path]]:
    dirs = []
    if os.environ.get("ADATOK_WEIGHTS_DIR"):
        dirs.append(("$ADATOK_WEIGHTS_DIR", Path(os.environ["ADATOK_WEIGHTS_DIR"])))
    dirs.append(("~/.cache/adatok/weights", Path.home() / ".cache" / "adatok" / "weights"))
    dirs.append(("torch hub cache", Path(torch.hub.get_dir()) / "checkpoints"))
    return dirs


def find_inception(path: Optional[str]) -> Path:
    """The FID Inception weight file: ``--inception FILE``, else the first of
    :func:`inception_search_dirs` holding it; ``WeightsNotFoundError`` (one line) otherwise."""
    from ..eval.inception import INCEPTION_FILE

    if path:
        if Path(path).is_file():
            return Path(path)
        raise WeightsNotFoundError(f"--inception {path}: no such file; give the path of {INCEPTION_FILE}")
    dirs = inception_search_dirs()
    for _, d in dirs:
        if (d / INCEPTION_FILE).is_file():
            return d / INCEPTION_FILE
    where = ", ".join(f"{label} {d}" for label, d in dirs)
    raise WeightsNotFoundError(f"FID Inception weights {INCEPTION_FILE} not found (looked in {where}); "
                               f"{INCEPTION_HINT}")


def load_inception_checked(path: Optional[str], device):
    from ..eval.inception import load_inception

    return load_inception(find_inception(path), device=device)


def load_lpips_checked(weights_dir: Optional[str], device):
    from ..eval.lpips import load_lpips

    if weights_dir and not Path(weights_dir).is_dir():
        raise ConfigError(f"--lpips-dir {weights_dir}: not a folder; give the folder holding "
                          "vgg16-397923af.pth and vgg.pth")
    try:
        return load_lpips(weights_dir=weights_dir, device=device)
    except WeightsNotFoundError as e:
        raise WeightsNotFoundError(f"{e}; put the files in --lpips-dir DIR or $ADATOK_WEIGHTS_DIR") from None


# ----------------------------------------------------------------------------- torchrun


@dataclass
class Ranks:
    """This process's place in a ``torchrun`` group (``rank 0 of 1`` without one)."""

    rank: int = 0
    world: int = 1
    owns_group: bool = field(default=False, repr=False)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def share(self, items: list) -> list:
        """Items ``i`` with ``i % world == rank`` (DistributedSampler's split, without padding)."""
        return list(items)[self.rank::self.world]

    def sum(self, value: float) -> float:
        if self.world == 1:
            return value
        import torch.distributed as dist

        t = torch.tensor([float(value)], dtype=torch.float64, device=_comm_device())
        dist.all_reduce(t)
        return t.item()

    def cat(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every rank's ``tensor`` (CPU) concatenated in rank order."""
        if self.world == 1:
            return tensor
        import torch.distributed as dist

        parts = [None] * self.world
        dist.all_gather_object(parts, tensor.cpu())
        return torch.cat(parts)


def _comm_device() -> torch.device:
    import torch.distributed as dist

    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


@contextmanager
def distributed(args):
    """Under ``torchrun`` (``WORLD_SIZE`` > 1): join the group (NCCL on CUDA, else gloo), give
    each rank its GPU (``--device cuda`` -> ``cuda:LOCAL_RANK``), and leave the group at the end."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        yield Ranks()
        return
    import torch.distributed as dist

    from .common import checked_device

    cuda = checked_device(args).type == "cuda"
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if torch.device(args.device).index is None:
            args.device = f"cuda:{local}"
        torch.cuda.set_device(torch.device(args.device))
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group("nccl" if cuda else "gloo")
    try:
        yield Ranks(dist.get_rank(), dist.get_world_size(), owns)
    finally:
        if owns:
            dist.destroy_process_group()


# ----------------------------------------------------------------------------- adatok eval


class ReconMetrics:
    """rFID / IS / LPIPS of reconstructions, updated per batch (nothing but running sums kept).

    ``update(inputs, recon)``: both ``B x 3 x H x W`` in [0, 1], ``recon`` already rounded to 8
    bits. The references of rFID are the inputs (center-cropped at the model's size)."""

    def __init__(self, inception=None, lpips=None):
        from ..eval.fid import InceptionMetrics

        self.inception = InceptionMetrics(inception) if inception is not None else None
        self.lpips = lpips
        self.lpips_sum = 0.0
        self.lpips_count = 0

    def update(self, inputs: torch.Tensor, recon: torch.Tensor) -> None:
        from ..data.images import to_uint8
        from ..eval.lpips import lpips_distance

        if self.inception is not None:
            self.inception.update(to_uint8(inputs), to_uint8(recon))
        if self.lpips is not None:
            d = lpips_distance(self.lpips, recon.float(), inputs.float(), batch_size=None)
            self.lpips_sum += d.sum().item()
            self.lpips_count += d.numel()

    def result(self, ranks: Ranks) -> dict:
        """The metrics over every rank's images (call on every rank)."""
        out = {}
        if self.inception is not None:
            self.inception.reduce()
            if ranks.main:
                r = self.inception.result()
                out.update(rfid=r["rfid"], inception_score=r["is"], inception_score_inputs=r["is_real"])
        if self.lpips is not None:
            total, count = ranks.sum(self.lpips_sum), ranks.sum(self.lpips_count)
            out["lpips"] = total / count if count else float("nan")
        return out


def build_recon_metrics(args, device) -> Optional[ReconMetrics]:
    """The networks the flags ask for, or None. Call before any other work: a missing weight
    file is a one-line error (exit 2) before the tokenizer is loaded or an image read."""
    if not (args.rfid or args.lpips or args.inception):
        return None
    inception = load_inception_checked(args.inception, device) if (args.rfid or args.inception) else None
    lpips = load_lpips_checked(args.lpips_dir, device) if args.lpips else None
    return ReconMetrics(inception, lpips)


def format_metrics(result: dict, images: int) -> str:
    parts = []
    if "rfid" in result:
        parts.append(f"rFID {result['rfid']:.4f}, IS {result['inception_score']:.4f} "
                     f"(inputs {result['inception_score_inputs']:.4f})")
    if "lpips" in result:
        parts.append(f"LPIPS {result['lpips']:.4f}")
    line = ", ".join(parts) + f" over {images} image(s)"
    if "rfid" in result and images < 50000:
        line += " (rFID is biased upward below 50k images; see docs/evaluation.md)"
    return line
