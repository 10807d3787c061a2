"""Run the official implementations next to ours, from a checkout the user supplies.

Nothing official is vendored or required: each ``--official-* DIR`` option points at a local clone of
the official repository, whose module is imported from that folder (and checked to come from it).
The official model is the source of the weights: it is built with its own code (random init, or
whatever the caller loads into it), its state dict is converted with adatok's own official-checkpoint
converters (``adatok.tokenizers.*.convert``), and ours is loaded from that, so both compute with the
same weights. The benchmarks then check that the outputs agree before timing both with the shared
protocol (``common.interleave``).

    repository (clone it yourself)            option            module imported from DIR
    facebookresearch/ToMe                     --official-tome   tome            (tome.patch.timm)
    youweiliang/evit                          --official-evit   evit            (timm-registered EViT models)
    bytedance/1d-tokenizer                    --official-titok  modeling.titok  (TiTok, OmegaConf config)
    ShivamDuggal4/adaptive-length-tokenizer   --official-alit   adaptive_tokenizers (model builders)

A wrong or missing folder raises :class:`OfficialCodeError` with one line (the scripts print it and
exit with status 2).
"""

from __future__ import annotations

import copy
import importlib
import json
import sys
from pathlib import Path

import torch

REPOS = {
    "tome": ("facebookresearch/ToMe", "tome", "tome/patch/timm.py"),
    "evit": ("youweiliang/evit", "evit", "evit.py"),
    "titok": ("bytedance/1d-tokenizer", "modeling.titok", "modeling/titok.py"),
    "alit": ("ShivamDuggal4/adaptive-length-tokenizer", "adaptive_tokenizers", "adaptive_tokenizers/__init__.py"),
}


class OfficialCodeError(Exception):
    """The official checkout cannot be used (one line: what is wrong and what to pass)."""


def import_official(kind: str, folder) -> object:
    """Import the official module of ``kind`` from the checkout ``folder``."""
    repo, module, marker = REPOS[kind]
    option = f"--official-{kind}"
    if folder is None or str(folder) == "":
        raise OfficialCodeError(f"{option}: give the folder of a local clone of github.com/{repo}")
    root = Path(folder).expanduser().resolve()
    if not root.is_dir():
        raise OfficialCodeError(f"{option} {folder}: no such folder (expected a clone of github.com/{repo})")
    if not (root / marker).is_file():
        raise OfficialCodeError(f"{option} {folder}: {marker} not found there; is it a clone of github.com/{repo}?")
    top = module.split(".")[0]
    cached = sys.modules.get(top)
    if cached is not None and not _inside(getattr(cached, "__file__", None), root):
        raise OfficialCodeError(f"{option} {folder}: a different '{top}' module is already imported "
                                f"({getattr(cached, '__file__', '?')}); run without it")
    sys.path.insert(0, str(root))
    try:
        mod = importlib.import_module(module)
    except Exception as e:  # noqa: BLE001 - any import failure of foreign code is reported in one line
        raise OfficialCodeError(f"{option} {folder}: importing {module} failed: {type(e).__name__}: "
                                f"{str(e).splitlines()[0] if str(e) else ''}") from None
    if not _inside(getattr(mod, "__file__", None), root):
        raise OfficialCodeError(f"{option} {folder}: {module} was imported from {mod.__file__}, not from the checkout")
    return mod


def _inside(path, root: Path) -> bool:
    if not path:
        return False
    try:
        Path(path).resolve().relative_to(root)
        return True
    except ValueError:
        return False


# --------------------------------------------------------------------------- ToMe / EViT (timm classifiers)
def tome_model(folder, base: torch.nn.Module, r: int) -> torch.nn.Module:
    """A copy of the timm ``base`` patched by the official ``tome.patch.timm`` with ``r``."""
    tome = import_official("tome", folder)
    patch = getattr(getattr(tome, "patch", None), "timm", None)
    if patch is None:
        raise OfficialCodeError(f"--official-tome {folder}: tome.patch.timm not found")
    model = copy.deepcopy(base)
    patch(model)
    model.r = r
    return model.eval()


def evit_model(folder, base: torch.nn.Module, keep_rate: float, fuse_token: bool = True,
               builder: str = "deit_small_patch16_shrink_base") -> torch.nn.Module:
    """The official EViT model ``builder`` (a DeiT with keep rate at blocks 4/7/10) with the weights of
    the timm ``base`` (same key names: a timm DeiT state dict loads strictly)."""
    evit = import_official("evit", folder)
    fn = getattr(evit, builder, None)
    if fn is None:
        raise OfficialCodeError(f"--official-evit {folder}: evit.{builder} not found (pass --official-evit-builder)")
    try:
        model = fn(pretrained=False, base_keep_rate=keep_rate, fuse_token=fuse_token)
    except TypeError as e:
        raise OfficialCodeError(f"--official-evit {folder}: evit.{builder}(base_keep_rate=..., fuse_token=...) "
                                f"failed: {e}") from None
    result = model.load_state_dict(base.state_dict(), strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise OfficialCodeError(f"--official-evit: the timm weights do not fit evit.{builder} (missing "
                                f"{result.missing_keys[:3]}, unexpected {result.unexpected_keys[:3]})")
    return model.eval()


def logits_of(out) -> torch.Tensor:
    """The logits of an official forward (EViT returns a tuple when asked for indices)."""
    return out[0] if isinstance(out, (tuple, list)) else out


# --------------------------------------------------------------------------- TiTok
def titok_official_config(cfg) -> dict:
    """The official infer-yaml layout of an adatok ``TiTokConfig`` (spec titok.md §1.2)."""
    def size_name(vit) -> str:
        from adatok.tokenizers.titok.config import VIT_SIZES

        for name, v in VIT_SIZES.items():
            if v == vit:
                return name
        raise OfficialCodeError(f"--official-titok: ViT {vit} is not an official size (small/base/large)")

    vq = {
        "codebook_size": cfg.codebook_size, "token_size": cfg.token_dim, "use_l2_norm": cfg.l2_norm,
        "commitment_cost": cfg.commitment_cost, "vit_enc_model_size": size_name(cfg.encoder),
        "vit_dec_model_size": size_name(cfg.decoder), "vit_enc_patch_size": cfg.patch_size,
        "vit_dec_patch_size": cfg.decoder_patch_size, "num_latent_tokens": cfg.num_tokens,
        "finetune_decoder": cfg.decoder_head == "proxy", "is_legacy": cfg.legacy_reshape,
        "quantize_mode": cfg.quantizer,
    }
    return {"model": {"vq_model": vq}, "dataset": {"preprocessing": {"crop_size": cfg.image_size}}}


def titok_pair(folder, preset: str, seed: int = 0):
    """(official TiTok, our TiTok) with the same weights: the official model is built from ``preset``'s
    official config with its own random init, ours is loaded from its converted state dict."""
    import adatok
    from adatok.tokenizers.titok.convert import config_from_official, convert_official_state_dict

    mod = import_official("titok", folder)
    try:
        from omegaconf import OmegaConf
    except ImportError:
        raise OfficialCodeError("--official-titok: the official code needs omegaconf (pip install omegaconf)") from None
    ours_cfg = adatok.create_model(preset).config
    official_cfg = titok_official_config(ours_cfg)
    torch.manual_seed(seed)
    official = mod.TiTok(OmegaConf.create(official_cfg)).eval()
    sd = convert_official_state_dict(official.state_dict(), f"official {preset}")
    cfg = config_from_official(official_cfg, official.state_dict())
    from adatok.tokenizers.titok.model import TiTok

    ours = TiTok(cfg).eval()
    ours.load_state_dict(sd, strict=True)
    return official, ours


def titok_official_fns(official, images, codes_ids):
    """The official calls timed against ours: encode, and decode of the same ids (spec titok.md §6)."""
    return {"encode": lambda: official.encode(images), "decode": lambda: official.decode_tokens(codes_ids)}


# --------------------------------------------------------------------------- ALIT
def alit_pair(folder, builder: str = "alit_small", kwargs: str | None = None, seed: int = 0):
    """(official ALIT, our ALIT) with the same weights: ``adaptive_tokenizers.<builder>(**kwargs)`` (JSON
    ``kwargs`` as the official builder wants them), then our converter on its state dict."""
    from adatok.tokenizers.alit.convert import config_from_official, convert_official_state_dict
    from adatok.tokenizers.alit.model import ALIT

    mod = import_official("alit", folder)
    fn = getattr(mod, builder, None)
    if fn is None:
        raise OfficialCodeError(f"--official-alit {folder}: adaptive_tokenizers.{builder} not found "
                                "(pass --official-alit-builder)")
    try:
        extra = json.loads(kwargs) if kwargs else {}
    except json.JSONDecodeError as e:
        raise OfficialCodeError(f"--official-alit-kwargs: not JSON ({e})") from None
    torch.manual_seed(seed)
    try:
        official = fn(**extra).eval()
    except Exception as e:  # noqa: BLE001
        raise OfficialCodeError(f"--official-alit: adaptive_tokenizers.{builder}(**{extra}) failed: "
                                f"{type(e).__name__}: {e}") from None
    state = official.state_dict()
    ours = ALIT(config_from_official(None, state)).eval()
    ours.load_state_dict(convert_official_state_dict(state, f"official {builder}"), strict=False)
    return official, ours


def alit_official_encode(official, images, threshold: float):
    """The official length selection: every iteration decoded, one length per batch (spec alit.md §8)."""
    return official.encode(images, return_min_length_embedding=True, token_selection_criteria="reconstruction_loss",
                           threshold=threshold, return_embedding_type="latent_tokens")


def check_or_exit(kind: str, folder) -> object:
    """:func:`import_official`, or print its one-line error and exit with status 2 (for the scripts,
    before any model is built or any time is spent)."""
    try:
        return import_official(kind, folder)
    except OfficialCodeError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
