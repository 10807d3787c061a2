"""Training tasks: what a step computes. The loop (``adatok.train.loop``) does the rest."""

from .base import TASKS, Phase, Task, get_task

__all__ = ["TASKS", "Phase", "Task", "get_task"]
