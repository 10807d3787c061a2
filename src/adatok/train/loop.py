"""The training loop shared by every task.

Same command on 1 or N processes (``torchrun``): DDP with gloo on CPU / nccl on GPU, bf16
autocast on GPU, gradient accumulation and clipping, EMA, warm-up + cosine schedule, NaN guard,
CSV/TensorBoard logs, sample grids, held-out PSNR every ``eval_every`` steps (``keep_best``: the best
model in OUT/best), atomic checkpoints every ``ckpt_every`` steps and at the end,
and ``resume=True`` continuing exactly (model, EMA, optimizers, schedulers, scaler, RNG states of
every rank, and the data position).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from ..errors import AdatokError, ConfigError
from . import distributed as D
from ..atomic import atomic_write_bytes
from .checkpoint import atomic_save, load_checkpoint, rng_state, set_rng_state
from .config import RunConfig, load_run_config
from .data import build_eval_images, build_loader, one_line_worker_errors
from .ema import EMA
from .logger import RunLogger
from .schedule import make_scheduler
from .tasks import get_task

log = logging.getLogger("adatok.train")


class TrainingError(AdatokError):
    """Training cannot go on (non-finite losses, ...)."""


def precision_dtype(precision: str, device: torch.device):
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def run(config, overrides=(), resume: bool = False, device: str | None = None,
        allow_changes: bool = False) -> Path:
    """Train as the recipe says; returns the folder of the exported model (``OUT/model``).

    ``resume=True`` refuses a recipe that differs from the checkpoint's in anything but the
    fields in ``RESUME_FREE`` (the number of steps, logging, ...), naming what differs, unless
    ``allow_changes=True``."""
    cfg: RunConfig = config if isinstance(config, RunConfig) else load_run_config(config, overrides)
    info = D.setup(device)
    try:
        return Trainer(cfg, info).fit(resume, allow_changes=allow_changes)
    finally:
        D.teardown()


class Trainer:
    def __init__(self, cfg: RunConfig, info: D.DistInfo):
        self.cfg, self.info = cfg, info
        self.out = Path(cfg.out)
        self.ckpt_path = self.out / "checkpoints" / "latest.pt"
        torch.manual_seed(cfg.train.seed)  # same initial weights on every rank
        self.task = get_task(cfg.task)(cfg, info.device)
        if cfg.train.eval_every and not self.task.reconstructs:
            raise ConfigError(f"train.eval_every: task {cfg.task} does not reconstruct images (the held-out PSNR is "
                              "for tokenizer tasks); set train.eval_every=0")
        self.raw = self.task.trainable()
        self.modules = {k: self._wrap(m) for k, m in self.raw.items()}
        self.optimizers = self.task.optimizers()
        self.schedulers = {
            k: make_scheduler(o, cfg.optim if k == "model" else cfg.disc_optim, cfg.train.steps)
            for k, o in self.optimizers.items()
        }
        self.dtype = precision_dtype(cfg.train.precision, info.device)
        self.scaler = torch.amp.GradScaler(info.device.type, enabled=self.dtype == torch.float16)
        self.ema = EMA(self.raw["model"], cfg.train.ema_decay) if cfg.train.ema_decay > 0 else None
        self.step, self.position, self.nan_skips = 0, 0, 0
        self.best = None  # {"step", "heldout_psnr"} of the best held-out evaluation so far (keep_best)

    def _wrap(self, module: nn.Module) -> nn.Module:
        module.to(self.info.device)
        if not self.info.enabled or not any(p.requires_grad for p in module.parameters()):
            return module
        ids = [self.info.device.index] if self.info.device.type == "cuda" else None
        return DDP(module, device_ids=ids)

    # ------------------------------------------------------------------ state
    def state(self) -> dict:
        return {
            "step": self.step,
            "position": self.position,
            "nan_skips": self.nan_skips,
            "modules": {k: m.state_dict() for k, m in self.task.state_modules().items()},
            "ema": self.ema.state_dict() if self.ema else None,
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "scaler": self.scaler.state_dict(),
            "world_size": self.info.world_size,
            "config": self.cfg.to_dict(),
            "best": self.best,
        }

    def save_checkpoint(self) -> None:
        rngs = D.all_gather_objects(rng_state(), self.info)  # collective: every rank calls it
        if self.info.is_main:
            atomic_save({**self.state(), "rng": rngs}, self.ckpt_path)
        D.barrier(self.info)

    def load_checkpoint(self, allow_changes: bool = False) -> None:
        state = load_checkpoint(self.ckpt_path)
        if state["world_size"] != self.info.world_size:
            raise TrainingError(
                f"{self.ckpt_path}: saved by {state['world_size']} process(es), resumed on {self.info.world_size}; "
                "resume with the same number of processes"
            )
        changed = recipe_changes(state.get("config") or {}, self.cfg.to_dict())
        if changed and not allow_changes:
            raise TrainingError(
                f"{self.ckpt_path}: the recipe differs from the one this run was started with: {'; '.join(changed)} "
                f"— resume with the run's own settings ({self.out / 'run.yaml'}), or pass --allow-changes to "
                "continue with the new ones (the run is then no longer an exact continuation)")
        try:
            for k, m in self.task.state_modules().items():
                m.load_state_dict(state["modules"][k])
            if self.ema:
                self.ema.load_state_dict(state["ema"])
        except (RuntimeError, KeyError, TypeError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise TrainingError(f"{self.ckpt_path}: its weights do not fit this run's model ({first[:300]}); "
                                "resume with the model= the run was started with") from None
        for k, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        for k, s in self.schedulers.items():
            s.load_state_dict(state["schedulers"][k])
        self.scaler.load_state_dict(state["scaler"])
        self.step, self.position, self.nan_skips = state["step"], state["position"], state["nan_skips"]
        self.best = state.get("best")
        set_rng_state(state["rng"][self.info.rank])

    # ------------------------------------------------------------------ loop
    def fit(self, resume: bool, allow_changes: bool = False) -> Path:
        cfg, info = self.cfg, self.info
        if resume:
            self.load_checkpoint(allow_changes)
        elif info.is_main and self.ckpt_path.exists():
            raise TrainingError(f"{self.out} already holds a run: pass --resume to continue it, or another out=")
        elif info.is_main and _non_empty(self.out / "log.csv"):
            # A fresh run never appends to another run's log (that run left no checkpoint to resume).
            raise TrainingError(f"{self.out / 'log.csv'}: {self.out} holds the log of an earlier run that left no "
                                "checkpoint; delete that folder (or move it away) or use another out=")
        logger = RunLogger(self.out, info.is_main, cfg.train.tensorboard)
        if info.is_main:
            self.write_run_config()
        if resume:
            logger.truncate_after(self.step)
        loader = build_loader(cfg, self.task.labelled, info, start=self.position, transform=self.task.transform)
        eval_images = build_eval_images(cfg, self.task.labelled) if info.is_main else None
        heldout = self.heldout_images() if info.is_main and cfg.train.eval_every else None
        # Starting a DataLoader iterator draws its base seed from the global RNG: keep that draw
        # out of the training stream, or a resumed run would consume one more number than an
        # uninterrupted one (tasks that sample in the step, e.g. ALIT's halting, would diverge).
        rng = torch.get_rng_state()
        batches = one_line_worker_errors(iter(loader))
        torch.set_rng_state(rng)
        bar = _progress(cfg.train.steps, self.step, info.is_main)
        window_start, window_images = time.perf_counter(), 0
        try:
            while self.step < cfg.train.steps:
                logs = self.train_step(batches)
                self.step += 1
                window_images += cfg.train.batch_size * cfg.train.grad_accum * info.world_size
                bar.update(1)
                evaluated = {}
                if heldout is not None and (self.step % cfg.train.eval_every == 0 or self.step == cfg.train.steps):
                    t0 = time.perf_counter()
                    evaluated = self.evaluate_heldout(heldout)
                    window_start += time.perf_counter() - t0  # not training time (images_per_s)
                if self.step % cfg.train.log_every == 0 or self.step == cfg.train.steps:
                    elapsed = time.perf_counter() - window_start
                    logs["images_per_s"] = window_images / max(elapsed, 1e-9)
                    logs["lr"] = self.schedulers["model"].get_last_lr()[0]
                    logger.write(self.step, {**logs, **evaluated})
                    bar.set_postfix({k: f"{v:.4g}" for k, v in {**logs, **evaluated}.items()
                                     if k.startswith(("loss", "heldout"))})
                    window_start, window_images = time.perf_counter(), 0
                elif evaluated:
                    logger.write(self.step, evaluated)
                if info.is_main and cfg.train.sample_every and self.step % cfg.train.sample_every == 0:
                    self.write_samples(eval_images)
                if self.step % cfg.train.ckpt_every == 0 or self.step == cfg.train.steps:
                    self.save_checkpoint()
        finally:
            bar.close()
            logger.close()
        return self.export()

    def write_run_config(self) -> None:
        """``OUT/run.yaml``: the resolved recipe of this run (overrides applied, every default
        spelled out); ``adatok train OUT/run.yaml`` runs it again. A resumed run rewrites it."""
        import yaml

        text = yaml.safe_dump(self.cfg.to_dict(), sort_keys=False, default_flow_style=None, width=110)
        atomic_write_bytes(self.out / "run.yaml", text.encode())

    def train_step(self, batches) -> dict:
        cfg, accum = self.cfg, self.cfg.train.grad_accum
        totals: dict[str, torch.Tensor] = {}
        finite = torch.ones((), dtype=torch.bool, device=self.info.device)
        for micro in range(accum):
            batch = {k: v.to(self.info.device, non_blocking=True) for k, v in next(batches).items()}
            self.position += 1
            sync = micro == accum - 1
            with self._no_sync(not sync), torch.autocast(self.info.device.type, dtype=self.dtype or torch.float32,
                                                          enabled=self.dtype is not None):
                for phase in self.task.phases(batch, self.step, self.modules):
                    finite &= torch.isfinite(phase.loss.detach())
                    self.scaler.scale(phase.loss / accum).backward()
                    for k, v in {f"loss_{phase.optimizer}": phase.loss, **phase.logs}.items():
                        totals[k] = totals.get(k, 0.0) + v.detach().float() / accum
        if D.any_flag(not bool(finite), self.info):
            return self._skip_step(totals)
        self.nan_skips = 0
        for name, opt in self.optimizers.items():
            self.scaler.unscale_(opt)
            if cfg.train.clip_grad > 0:
                totals[f"grad_norm_{name}"] = torch.nn.utils.clip_grad_norm_(self.raw[name].parameters(), cfg.train.clip_grad)
            self.scaler.step(opt)
            opt.zero_grad(set_to_none=True)
        self.scaler.update()
        for s in self.schedulers.values():
            s.step()
        if self.ema:
            self.ema.update(self.raw["model"])
        return {k: float(v) for k, v in totals.items()}

    def _skip_step(self, totals: dict) -> dict:
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        self.nan_skips += 1
        values = {k: float(v) for k, v in totals.items()}
        message = (f"non-finite loss at step {self.step + 1} ({', '.join(f'{k}={v:.4g}' for k, v in values.items())}); "
                   f"last checkpoint: {self.ckpt_path}. Lower optim.lr, check the data, or use train.precision=fp32")
        if self.cfg.train.nan_policy == "stop" or self.nan_skips > self.cfg.train.max_nan_skips:
            raise TrainingError(message + (f" — {self.nan_skips} steps in a row" if self.nan_skips > 1 else ""))
        if self.info.is_main:
            log.warning("skipped the step: %s", message)
        return {**values, "skipped": 1.0}

    def _no_sync(self, skip_sync: bool):
        stack = contextlib.ExitStack()
        if skip_sync:
            for m in self.modules.values():
                if isinstance(m, DDP):
                    stack.enter_context(m.no_sync())
        return stack

    def write_samples(self, images: torch.Tensor | None) -> None:
        if images is None:
            return
        from torchvision.utils import make_grid, save_image

        model = self.ema.model if self.ema else self.raw["model"]
        was_training = model.training
        model.eval()
        with torch.no_grad(), torch.autocast(self.info.device.type, dtype=self.dtype or torch.float32,
                                             enabled=self.dtype is not None):
            rows = self.task.samples(images.to(self.info.device), model)
        model.train(was_training)
        grid = make_grid(torch.cat([r.float().clamp(0, 1).cpu() for r in rows]), nrow=images.shape[0], padding=2)
        path = self.out / "samples" / f"step_{self.step:07d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(grid, path)

    def heldout_images(self) -> torch.Tensor:
        """The held-out evaluation set: the multi-scale crops of ``data.heldout`` (adatok.eval.crops, the
        protocol of the model cards) at the training size, the first ``train.eval_images`` of them."""
        from ..eval.crops import heldout_crops

        images, _ = heldout_crops(self.cfg.data.heldout, self.cfg.data.image_size)
        return images[: self.cfg.train.eval_images or None]

    def evaluate_heldout(self, images: torch.Tensor, batch_size: int = 64) -> dict:
        """Mean PSNR (dB) of the (EMA) model's reconstructions of ``images``, rounded to 8 bits as saved
        images are; for adaptive tokenizers at their longest length (the last row of the task's sample
        grid). Leaves every RNG and the model's mode as they were (an evaluated run resumes exactly);
        with ``train.keep_best`` a new best is exported to OUT/best."""
        from ..eval.metrics import psnr
        from ..eval.rate_distortion import round8

        model = self.ema.model if self.ema else self.raw["model"]
        was_training = model.training
        model.eval()
        devices = [self.info.device] if self.info.device.type == "cuda" else []
        values = []
        with torch.random.fork_rng(devices=devices), torch.no_grad(), torch.autocast(
                self.info.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None):
            for chunk in images.split(batch_size):
                chunk = chunk.to(self.info.device)
                values.append(psnr(round8(self.task.samples(chunk, model)[-1]), chunk.float()).cpu())
        model.train(was_training)
        value = float(torch.cat(values).mean())
        if self.cfg.train.keep_best and math.isfinite(value) and (self.best is None or value > self.best["heldout_psnr"]):
            self.best = {"step": self.step, "heldout_psnr": value, "heldout_images": len(images)}
            self.task.save_export(model, self.out / "best")
            atomic_write_bytes(self.out / "best" / "best.json", (json.dumps(self.best, indent=2) + "\n").encode())
        return {"heldout_psnr": value}

    def export(self) -> Path:
        """Save the final (EMA) model in our format: ``OUT/model``."""
        path = self.out / "model"
        if self.info.is_main:
            model = self.ema.model if self.ema else self.raw["model"]
            self.task.save_export(model, path)
        D.barrier(self.info)
        return path


#: Recipe fields a resumed run may change without --allow-changes: they do not change what is
#: trained (more steps extend the schedule; the rest is logging and I/O).
RESUME_FREE = frozenset({
    "out", "train.steps", "train.log_every", "train.ckpt_every", "train.sample_every", "train.tensorboard",
    "train.eval_every", "train.eval_images", "train.keep_best",
    "train.max_nan_skips", "train.nan_policy", "data.workers", "data.cache", "data.heldout", "data.num_samples",
})


def recipe_changes(saved: dict, now: dict) -> list[str]:
    """``"key: saved -> now"`` for each recipe field that differs, outside ``RESUME_FREE``. Fields
    the saved recipe does not have (added to adatok later) are not compared."""
    old, new = _flatten(saved), _flatten(now)
    keys = sorted(k for k in set(old) | set(new) if k not in RESUME_FREE and k in old)
    return [f"{k}={_show(old[k])} -> {_show(new.get(k, '(unset)'))}" for k in keys if old[k] != new.get(k, object())]


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = list(v) if isinstance(v, tuple) else v
    return out


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _non_empty(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


def _progress(total: int, start: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=start, disable=not enabled, desc="train", unit="step", dynamic_ncols=True)
