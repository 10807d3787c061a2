"""Which ``pip install adatok[EXTRA]`` provides an optional dependency, for one-line errors.

The core install (``pip install adatok``) runs the models, ``tokenize``, ``reconstruct``,
``generate``, ``classify`` and ``convert``; training needs ``[train]``, evaluation ``[eval]``.
"""

from __future__ import annotations

# top-level module name -> (pip distribution, extra that installs it)
OPTIONAL = {
    "yaml": ("pyyaml", "train"),
    "tensorboard": ("tensorboard", "train"),
    "webdataset": ("webdataset", "train"),
    "torchmetrics": ("torchmetrics", "eval"),
    "scipy": ("scipy", "eval"),
    "onnx": ("onnx", "export"),
    "onnxruntime": ("onnxruntime", "export"),
    "onnxscript": ("onnxscript", "export"),
}


def missing_extra_message(error: ImportError) -> str | None:
    """The one-line fix for an ImportError of an optional dependency, or None if it is not one."""
    if "pip install 'adatok[" in str(error):  # raised by adatok with the fix already in it
        return str(error).splitlines()[0]
    name = (getattr(error, "name", None) or "").split(".")[0]
    if name not in OPTIONAL:
        return None
    dist, extra = OPTIONAL[name]
    return f"this needs {dist}, which is not installed: pip install 'adatok[{extra}]'"
