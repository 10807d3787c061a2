"""Run logs on rank 0: a CSV file (always) and TensorBoard (when installed)."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

log = logging.getLogger("adatok.train")


class RunLogger:
    def __init__(self, out: Path, enabled: bool, tensorboard: bool = True):
        self.enabled = enabled
        self.path = out / "log.csv"
        if enabled:
            out.mkdir(parents=True, exist_ok=True)
        self.columns: list[str] | None = None
        self.tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out / "tensorboard"))
            except ImportError:
                log.warning("tensorboard is not installed: logging to %s only (pip install adatok[train])", self.path)

    def write(self, step: int, values: dict) -> None:
        if not self.enabled:
            return
        row = {"step": step, **{k: float(v) for k, v in values.items()}}
        if self.columns is None and self.path.exists() and self.path.stat().st_size > 0:
            with self.path.open(newline="") as f:  # resumed run: keep the header already there
                self.columns = next(csv.reader(f))
        new = [k for k in row if k not in (self.columns or [])]
        if new:  # a column appears (e.g. the GAN terms from gan_start): widen the header
            self._rewrite((self.columns or []) + new)
        with self.path.open("a", newline="") as f:
            csv.writer(f).writerow([row.get(c, "") for c in self.columns])
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(k, float(v), step)

    def _rewrite(self, columns: list[str]) -> None:
        rows = []
        if self.path.exists() and self.path.stat().st_size > 0:
            with self.path.open(newline="") as f:
                rows = list(csv.DictReader(f))
        with self.path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns, restval="")
            writer.writeheader()
            writer.writerows(rows)
        self.columns = columns

    def truncate_after(self, step: int) -> None:
        """On resume, drop rows logged after the checkpoint (they will be logged again)."""
        if not self.enabled or not self.path.exists():
            return
        with self.path.open(newline="") as f:
            rows = list(csv.reader(f))
        if not rows:
            return
        kept = [rows[0]] + [r for r in rows[1:] if r and int(float(r[0])) <= step]
        with self.path.open("w", newline="") as f:
            csv.writer(f).writerows(kept)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
