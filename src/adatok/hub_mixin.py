"""``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` on every adatok model.

One thin mixin (as diffusers' ``ModelMixin`` gives every model its save/load/hub) over
``adatok.save`` / ``adatok.load``: a folder is ``config.json`` + ``model.safetensors`` (adatok's
format, which ``adatok.load`` and ``Model.from_pretrained`` read) plus a generated ``README.md``
model card, so a pushed repo shows on the Hugging Face Hub as an adatok model. ``huggingface_hub``
is imported only when a hub repo is read or written. Nothing here imports a model module: the
models import this file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Optional, TypeVar

T = TypeVar("T", bound="HubMixin")


def _hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


class HubMixin:
    """Hub methods of an adatok ``nn.Module`` (it must have a registered ``config``)."""

    def save_pretrained(self, save_directory: str | os.PathLike, *, model_card: bool = True,
                        push_to_hub: bool = False, repo_id: Optional[str] = None, **push_kwargs: Any) -> Path:
        """Write ``config.json`` + ``model.safetensors`` (``adatok.save``) and a ``README.md`` model
        card to ``save_directory``; with ``push_to_hub=True`` also upload it to ``repo_id``."""
        from .hub import save

        path = save(self, save_directory)  # type: ignore[arg-type]
        if model_card:
            from .atomic import atomic_write_bytes

            atomic_write_bytes(path / "README.md", model_card_text(self, repo_id or path.name).encode())
        if push_to_hub:
            if not repo_id:
                raise _config_error("save_pretrained(push_to_hub=True) needs repo_id='user/name'")
            self._upload(path, repo_id, **push_kwargs)
        return path

    @classmethod
    def from_pretrained(cls: type[T], name_or_path: str | os.PathLike, *, revision: Optional[str] = None,
                        cache_dir: Optional[str] = None, token: Optional[str] = None, device: Any = "cpu",
                        **overrides: Any) -> T:
        """A folder written by ``save_pretrained`` (or anything ``adatok.load`` reads: a preset
        name, an official file or folder), or a hub repo id at ``revision`` (branch, tag or commit).
        ``overrides`` replace config fields as in ``adatok.load``. The model is in eval mode."""
        from .errors import CheckpointError
        from .hub import load

        name = str(name_or_path)
        source: str | Path = name
        if not Path(name).exists() and _is_repo_id(name) and not _is_preset(name):
            source = _snapshot(name, revision=revision, cache_dir=cache_dir, token=token)
        elif revision is not None:
            raise _config_error(f"revision={revision!r} is for hub repo ids; {name!r} is a local path or preset name")
        model = load(source, device=device, **overrides)
        if cls is not HubMixin and not isinstance(model, cls):
            raise CheckpointError(f"{name}: holds a {type(model).__name__} model; {cls.__name__}.from_pretrained "
                                  f"reads {cls.__name__} models only (adatok.load reads any adatok model)")
        return model  # type: ignore[return-value]

    def push_to_hub(self, repo_id: str, *, revision: Optional[str] = None, private: Optional[bool] = None,
                    token: Optional[str] = None, commit_message: str = "Upload adatok model",
                    create_pr: bool = False) -> str:
        """Save to a temporary folder (``save_pretrained``) and upload it to ``repo_id`` (created if
        missing) on branch ``revision``; returns the commit URL."""
        with tempfile.TemporaryDirectory() as tmp:
            path = self.save_pretrained(tmp, repo_id=repo_id)
            return self._upload(path, repo_id, revision=revision, private=private, token=token,
                                commit_message=commit_message, create_pr=create_pr)

    def _upload(self, folder: Path, repo_id: str, revision: Optional[str] = None, private: Optional[bool] = None,
                token: Optional[str] = None, commit_message: str = "Upload adatok model", create_pr: bool = False) -> str:
        from .errors import CheckpointError

        if _hub_offline():
            raise CheckpointError(f"cannot push to {repo_id!r}: the hub is offline (HF_HUB_OFFLINE=1); "
                                  f"save_pretrained(DIR) and upload DIR where the network is reachable")
        try:
            from huggingface_hub import HfApi

            api = HfApi(token=token)
            api.create_repo(repo_id, private=private, exist_ok=True)
            if revision:
                api.create_branch(repo_id, branch=revision, exist_ok=True)
            info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), revision=revision,
                                     commit_message=commit_message, create_pr=create_pr)
        except Exception as e:
            raise CheckpointError(f"could not push to {repo_id!r} ({type(e).__name__}: {_first_line(e)}); "
                                  "check the network, HF_TOKEN and your access to the repo") from None
        return str(getattr(info, "commit_url", info))


def _is_repo_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "/", "~"))


def _is_preset(name: str) -> bool:
    from .registry import PRESETS  # filled by adatok/models.py, which `import adatok` runs first

    return name in PRESETS


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__


def _config_error(message: str) -> Exception:
    from .errors import ConfigError

    return ConfigError(message)


def _snapshot(repo_id: str, revision: Optional[str], cache_dir: Optional[str], token: Optional[str]) -> Path:
    """The repo's config.json + weights at ``revision``, from the hub or (offline) the local cache."""
    from .errors import CheckpointError

    try:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, token=token,
                                   allow_patterns=["config.json", "*.safetensors", "*.bin", "README.md"])
    except Exception as e:
        where = " (the hub is offline, HF_HUB_OFFLINE=1, and it is not in the local cache)" if _hub_offline() else ""
        raise CheckpointError(f"could not fetch {repo_id!r}{f' at revision {revision!r}' if revision else ''} "
                              f"from the hub{where} ({type(e).__name__}: {_first_line(e)}); download it where the "
                              "network is reachable and pass the folder instead") from None
    return Path(folder)


def model_card_text(model: Any, name: str = "DIR") -> str:
    """A Hub model card: front matter (library, tags, licence) and what the model is and reads."""
    from .registry import family_of_config

    family = family_of_config(model.config).name
    cls = type(model).__name__
    params = sum(p.numel() for p in model.parameters())
    cfg = model.config
    facts = [("family", family), ("class", f"`{type(model).__module__}.{cls}`"),
             ("parameters", f"{params / 1e6:.1f}M"),
             ("image size", getattr(cfg, "image_size", None)),
             ("tokens", getattr(cfg, "num_tokens", None) or getattr(cfg, "max_tokens", None)),
             ("codebook size", getattr(cfg, "codebook_size", None))]
    rows = "\n".join(f"| {k} | {v} |" for k, v in facts if v is not None)
    if family == "maskgit":  # a generator over token ids
        use = "ids = model.generate(labels=[1, 2], seed=0)   # token ids: decode them with their tokenizer"
    else:
        use = ("tokens = model.encode(images)   # images: B x 3 x H x W float in [0, 1]\n"
               "recon = model.decode(tokens)")
    return f"""---
library_name: adatok
license: apache-2.0
tags:
- adatok
- image-tokenization
- {family}
---

# {name.split('/')[-1]}

An adatok `{family}` model ({cls}), saved with `save_pretrained`: `config.json` (the architecture
config) and `model.safetensors` (the weights).

| | |
|---|---|
{rows}

```python
import adatok

model = adatok.load("{name}")   # or {cls}.from_pretrained("{name}", revision="main")
{use}
```

Generated by adatok; add the training data, recipe and evaluation of these weights here.
"""
