"""Is this call being traced (``torch.compile``, ``torch.export``, ONNX export, TorchScript tracing)?

Eager input checks that read tensor values (finite, in range) need a host sync and data-dependent
control flow, which a traced graph cannot hold (``torch.export`` fails with
``GuardOnDataDependentSymNode``; ``torch.compile`` breaks the graph). Under tracing those value
checks are skipped; shape and dtype checks stay, since they are static.
"""

from __future__ import annotations

import torch


def is_tracing() -> bool:
    """True inside ``torch.compile`` / ``torch.export`` / ONNX export / ``torch.jit.trace``."""
    return bool(torch.compiler.is_compiling() or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export())
