"""Image files <-> tensors in adatok's one image convention: float ``3 x H x W`` in [0, 1].

Loading (:func:`load_image`) follows the TiTok evaluation transform ("resize the shorter
side to 256, bicubic, then center-crop 256") and makes every file format land on the same
RGB tensor:

* Pillow opens the file; only the **first frame** of a multi-frame file (animated GIF,
  multi-page TIFF) is used. The whole frame is decoded up front, so truncated or corrupt
  files fail here with a clear message instead of producing half-grey images later.
* The EXIF orientation tag is applied (phone photos come out upright).
* Colour modes: 8-bit grayscale ``L``/``1`` is replicated to RGB; palette ``P`` is expanded;
  ``CMYK``, ``YCbCr``, ``LAB``, ``HSV`` use Pillow's conversion (no ICC colour management).
  Anything with transparency (``RGBA``, ``LA``, ``PA``, ``P``/``L``/``RGB`` with a
  transparent colour) is **composited onto a white background**.
* High bit depth: 16-bit grayscale (``I;16*``, and ``I``, which is how some Pillow versions
  decode 16-bit PNG/TIFF) maps 0..65535 to 0..1 — it is never clipped at 255. ``F``
  (32-bit float) images are taken to be in [0, 1] already.
* Resizing uses Pillow's bicubic filter, which is antialiased when shrinking — the same
  operation as ``torchvision.transforms.Resize(size, BICUBIC)`` on a PIL image, so 8-bit
  inputs match the reference evaluation pipeline. High-bit-depth images are resized in
  float (mode ``F``) so their extra precision survives. Bicubic overshoot is clamped to [0, 1].

Every failure raises :class:`~adatok.errors.ImageLoadError` with a one-line message:
the file, what was wrong, and what to do.
"""

from __future__ import annotations

import errno
import io
import os
import re
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

from adatok.errors import ImageLoadError, InputError

__all__ = [
    "IMAGE_EXTENSIONS", "MAX_PIXELS", "MIN_SIDE", "iter_image_batches", "list_image_files",
    "load_image", "load_images", "make_strip", "read_image", "save_image", "to_uint8",
]

#: Suffixes (lower case) that :func:`list_image_files` picks up inside directories.
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp",
     ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".ico"}
)
#: Shorter side below this is refused: such images carry no usable content at 256 px.
MIN_SIDE = 8
#: Pixel-count limit (Pillow's own hard limit by default). Checked from the header, before
#: decoding, so a decompression bomb never allocates memory. Read at call time.
MAX_PIXELS = 178_956_970

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_ON_ERROR = ("raise", "skip")
_REDO_HINT = "re-download or re-export the image"


# ----------------------------------------------------------------------------- loading


def load_image(path: str | Path, size: int) -> torch.Tensor:
    """Load one image file as a float32 ``3 x size x size`` tensor in [0, 1].

    Steps (see the module docstring for the colour-mode rules): first frame, EXIF
    orientation, conversion to RGB (transparency composited onto white, 16-bit scaled by
    1/65535), resize of the shorter side to ``size`` (bicubic, antialiased), center crop to
    ``size x size``, clamp to [0, 1].

    Raises:
        ImageLoadError: missing file, directory, empty file, not an image, truncated or
            corrupt data, shorter side < ``MIN_SIDE``, more than ``MAX_PIXELS`` pixels,
            or a colour mode that cannot be converted to RGB.
        InputError: ``size`` is not a positive int.
    """
    _check_size(size)
    path = Path(path)
    _check_file(path)
    img = _read_first_frame(path)
    img = _resize_shorter_side(img, size)
    img = _center_crop(img, size)
    return _to_tensor(img)


def read_image(source: str | Path | bytes, name: str | Path | None = None) -> Image.Image:
    """Decode one image (a file, or its encoded bytes) to a PIL image, before any resizing.

    The same rules as :func:`load_image` up to the resize: first frame, fully decoded,
    EXIF orientation applied, then mode ``RGB`` (transparency composited onto white) or,
    for 16-bit and float images, mode ``F`` in [0, 1]. Training transforms start from this.
    ``name`` labels error messages when ``source`` is bytes (e.g. ``"shard.tar:00000012.jpg"``).

    Raises:
        ImageLoadError: as :func:`load_image` (missing, empty, not an image, corrupt, ...).
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        label = Path(str(name)) if name is not None else Path("<bytes>")
        if len(source) == 0:
            raise ImageLoadError(label, "image data is empty (0 bytes)", _REDO_HINT)
        return _read_first_frame(label, io.BytesIO(source))
    path = Path(source)
    _check_file(path)
    return _read_first_frame(path)


def load_images(
    paths: Iterable[str | Path], size: int, on_error: str = "raise"
) -> tuple[torch.Tensor, list[Path], list[ImageLoadError]]:
    """Load many files into one ``B x 3 x size x size`` batch.

    Returns ``(batch, ok_paths, errors)``: ``ok_paths[i]`` is the file of ``batch[i]``
    (input order kept). With ``on_error="raise"`` the first bad file raises; with
    ``"skip"`` it is reported in ``errors`` and the others still load. ``batch`` has
    ``B = 0`` when nothing loaded.
    """
    _check_size(size)
    _check_on_error(on_error)
    ok, tensors, errors = [], [], []
    for path in paths:
        _load_into(path, size, on_error, ok, tensors, errors)
    return _stack(tensors, size), ok, errors


def iter_image_batches(
    paths: Iterable[str | Path], size: int, batch_size: int, on_error: str = "skip"
) -> Iterator[tuple[list[Path], torch.Tensor, list[ImageLoadError]]]:
    """Stream ``(ok_paths, batch, errors)`` for long runs, ``batch_size`` images at a time.

    Bad files are skipped (``on_error="skip"``) and do not shrink batches: every batch but
    the last holds exactly ``batch_size`` images. ``errors`` lists the files that failed
    while that batch was being filled; errors after the last image are added to the last
    batch, so none is lost. Batches are never empty, except in one case: if no file at all
    could be loaded, a single item with a ``0 x 3 x size x size`` batch carries the errors.
    With ``on_error="raise"`` the first bad file raises.
    """
    _check_size(size)
    _check_on_error(on_error)
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise InputError(f"batch_size must be a positive int, got {batch_size!r}")
    # A plain function returning a generator, so bad arguments raise at the call, not later.
    return _iter_batches(paths, size, batch_size, on_error)


def _iter_batches(paths, size, batch_size, on_error):
    # A full batch is held back one step so that trailing errors can join it (see above).
    held: tuple[list[Path], list[torch.Tensor], list[ImageLoadError]] | None = None
    ok, tensors, errors = [], [], []
    for path in paths:
        _load_into(path, size, on_error, ok, tensors, errors)
        if len(tensors) == batch_size:
            if held is not None:
                yield _pack(held, size)
            held, (ok, tensors, errors) = (ok, tensors, errors), ([], [], [])
    if tensors:
        if held is not None:
            yield _pack(held, size)
        held = (ok, tensors, errors)
    elif held is not None:
        held[2].extend(errors)
    elif errors:
        held = ([], [], errors)  # nothing could be loaded at all: still report why
    if held is not None:
        yield _pack(held, size)


def list_image_files(inputs: str | Path | Iterable[str | Path],
                     errors: list | None = None) -> list[Path]:
    """Expand files and directories into a list of image files.

    Directories are searched recursively for files whose suffix is in
    ``IMAGE_EXTENSIONS`` (case-insensitive), sorted by path. Files named explicitly are
    kept as given, whatever their suffix: if they are not images, loading says so clearly.

    Raises:
        ImageLoadError: an input does not exist (or is a dangling symlink or a symlink loop), or
            a directory holds no image files. With ``errors`` (a list), such inputs are appended
            to it instead and the others are kept: one bad argument does not stop a run.
            Image-named entries inside a directory that are broken links or loops are reported
            the same way.
    """
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        try:
            found = _expand(path, errors)
        except ImageLoadError as err:
            if errors is None:
                raise
            errors.append(err)
            continue
        files.extend(found)
    return files


def _expand(path: Path, errors: list | None) -> list[Path]:
    problem = _unreachable(path)
    if problem:
        raise ImageLoadError(path, problem, "check the path")
    if not path.is_dir():
        return [path]
    found, broken = [], []
    for p in path.rglob("*"):
        if p.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        if p.is_file():
            found.append(p)
        elif p.is_symlink() and _unreachable(p):
            broken.append(p)
    if errors is not None:
        errors.extend(ImageLoadError(p, _unreachable(p), "fix or remove the link") for p in sorted(broken))
    if not found and not broken:
        exts = " ".join(sorted(IMAGE_EXTENSIONS))
        raise ImageLoadError(path, "directory contains no image files",
                             f"expected files ending in one of: {exts}")
    return sorted(found)


def _unreachable(path: Path) -> str:
    """"" when ``path`` can be stat'ed, else why not (missing, a dangling link, a link loop)."""
    try:
        path.stat()
        return ""
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "symbolic link loop (the link points back to itself)"
        if path.is_symlink():
            return f"broken symbolic link (it points to {os.readlink(path)}, which does not exist)"
        if err.errno == errno.ENOTDIR:
            return "no such file or directory (a part of the path is a file)"
        if err.errno in (errno.EACCES, errno.EPERM):
            return "permission denied"
        return "no such file or directory"


def _load_into(path, size, on_error, ok, tensors, errors) -> None:
    """Load one file, appending to ``ok``/``tensors`` or, when skipping, to ``errors``."""
    try:
        tensors.append(load_image(path, size))
    except ImageLoadError as err:
        if on_error == "raise":
            raise
        errors.append(err)
        return
    ok.append(Path(path))


def _pack(part, size: int):
    ok, tensors, errors = part
    return ok, _stack(tensors, size), errors


def _stack(tensors: list[torch.Tensor], size: int) -> torch.Tensor:
    if not tensors:
        return torch.empty(0, 3, size, size)
    return torch.stack(tensors)


def _check_size(size) -> None:
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise InputError(f"size must be a positive int (pixels), got {size!r}")


def _check_on_error(on_error) -> None:
    if on_error not in _ON_ERROR:
        raise InputError(f"on_error must be 'raise' or 'skip', got {on_error!r}")


def _check_file(path: Path) -> None:
    """Cheap file-system checks, so the common mistakes get specific messages."""
    if path.is_dir():
        raise ImageLoadError(path, "is a directory, not an image file",
                             "pass the files inside it, or expand it with list_image_files()")
    if not path.exists():
        raise ImageLoadError(path, "no such file", "check the path")
    if path.stat().st_size == 0:
        raise ImageLoadError(path, "file is empty (0 bytes)", _REDO_HINT)


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _read_first_frame(path: Path, fileobj=None) -> Image.Image:
    """Open, check dimensions, fully decode frame 0, orient, and convert to RGB or F.

    ``fileobj`` (encoded bytes in a file-like object) is read instead of ``path`` when
    given; ``path`` then only names the image in error messages.
    """
    with _open(path, fileobj) as img:
        _check_dimensions(img, path)
        _decode(img, path)
        img = _apply_exif_orientation(img)
        return _to_rgb_or_float(img, path)


def _open(path: Path, fileobj=None) -> Image.Image:
    try:
        # Pillow warns above half its limit; we enforce MAX_PIXELS ourselves right after
        # opening, so its warning would only be noise. No global PIL setting is changed.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(path if fileobj is None else fileobj)
    except Image.DecompressionBombError as err:
        # Pillow's own hard limit (possibly lowered by the application) fired first.
        found = re.search(r"\((\d+) pixels\)", str(err))
        pixels = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
        raise ImageLoadError(path, f"image has {pixels}, more than Pillow's safety limit",
                             "downscale it first (it may be a decompression bomb)") from None
    except UnidentifiedImageError:
        raise ImageLoadError(path, "not a recognised image format",
                             "use a PNG, JPEG, WebP, BMP, GIF or TIFF file") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise ImageLoadError(path, f"cannot read image header ({_one_line(err)})",
                             _REDO_HINT) from None


def _check_dimensions(img: Image.Image, path: Path) -> None:
    width, height = img.size
    if width * height > MAX_PIXELS:
        raise ImageLoadError(
            path, f"image has {width * height:,} pixels ({width}x{height}), more than the "
            f"limit of {MAX_PIXELS:,}", "downscale it first (it may be a decompression bomb)")
    if min(width, height) < MIN_SIDE:
        raise ImageLoadError(
            path, f"image is only {width}x{height} pixels; the shorter side must be at "
            f"least {MIN_SIDE}", "use a larger image")


def _decode(img: Image.Image, path: Path) -> None:
    """Decode all pixel data now: Pillow is lazy, and truncation only shows up here."""
    try:
        img.load()
    except MemoryError:
        raise
    except Exception as err:  # Pillow's decoders raise OSError, SyntaxError, struct.error, ...
        raise ImageLoadError(path, f"image data is truncated or corrupt ({_one_line(err)})",
                             _REDO_HINT) from None


def _apply_exif_orientation(img: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(img)
    except Exception:
        # A malformed EXIF block should not make a decodable image unusable: keep the
        # pixels as stored, which is what most viewers do too.
        return img


def _to_rgb_or_float(img: Image.Image, path: Path) -> Image.Image:
    """8-bit content -> ``RGB``; 16-bit/float grayscale -> ``F`` in [0, 1] (precision kept)."""
    mode = img.mode
    if mode in _SIXTEEN_BIT_MODES:
        return Image.fromarray(np.asarray(img, dtype=np.float32) / 65535.0)
    if mode == "F":
        return img.copy()
    try:
        if mode in _ALPHA_MODES or "transparency" in img.info:
            return _composite_on_white(img.convert("RGBA"))
        return img.convert("RGB")
    except ValueError:
        raise ImageLoadError(path, f"unsupported colour mode {mode!r}",
                             "convert the image to RGB (e.g. save it as PNG)") from None


def _composite_on_white(rgba: Image.Image) -> Image.Image:
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def _resize_shorter_side(img: Image.Image, size: int) -> Image.Image:
    """Shorter side -> ``size``, longer side as torchvision computes it (truncated)."""
    new_size = _shorter_side_size(*img.size, size)
    if new_size == img.size:
        return img
    return img.resize(new_size, Image.Resampling.BICUBIC)


def _shorter_side_size(width: int, height: int, size: int) -> tuple[int, int]:
    """``(width, height)`` after :func:`_resize_shorter_side` (unchanged if short == size)."""
    short, long = min(width, height), max(width, height)
    if short == size:
        return width, height
    new_long = int(size * long / short)
    return (size, new_long) if width <= height else (new_long, size)


def _center_crop(img: Image.Image, size: int) -> Image.Image:
    """``size x size`` from the middle; offsets rounded as torchvision's center_crop does."""
    width, height = img.size
    left = int(round((width - size) / 2.0))
    top = int(round((height - size) / 2.0))
    return img.crop((left, top, left + size, top + size))


def _to_tensor(img: Image.Image) -> torch.Tensor:
    if img.mode == "F":
        gray = torch.from_numpy(np.array(img, dtype=np.float32))
        x = gray.unsqueeze(0).expand(3, -1, -1)
    else:
        x = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).float() / 255.0
    return x.clamp(0.0, 1.0).contiguous()


# ----------------------------------------------------------------------------- saving


def to_uint8(tensor: torch.Tensor) -> torch.Tensor:
    """Float [0, 1] -> uint8 0..255 (same shape and device): NaN -> 0, clamp, round(x*255)."""
    if not torch.is_tensor(tensor) or not tensor.is_floating_point():
        raise InputError(f"to_uint8 expects a float tensor in [0, 1], got {_describe(tensor)}")
    x = torch.nan_to_num(tensor.detach().float(), nan=0.0).clamp(0.0, 1.0)
    return (x * 255.0).round().to(torch.uint8)


def save_image(tensor: torch.Tensor, path: str | Path) -> Path:
    """Write a ``3 x H x W`` (or ``1 x 3 x H x W``) float [0, 1] tensor as an image file.

    Pixels are ``round(clamp(x, 0, 1) * 255)``. The format follows the suffix; PNG (lossless)
    when there is none or it is ``.png``. Parent directories are created. Returns the path.
    """
    image = _as_single_image(tensor, "save_image")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    array = to_uint8(image).permute(1, 2, 0).cpu().numpy()
    fmt = "PNG" if path.suffix.lower() in ("", ".png") else None
    try:
        Image.fromarray(array, mode="RGB").save(path, format=fmt)
    except (ValueError, KeyError):
        raise InputError(f"{path}: unknown image file extension {path.suffix!r} — "
                         "use .png (lossless) or another format Pillow can write") from None
    return path


def _as_single_image(tensor, who: str) -> torch.Tensor:
    if torch.is_tensor(tensor) and tensor.dim() == 4 and tensor.shape[0] == 1:
        tensor = tensor[0]
    if not (torch.is_tensor(tensor) and tensor.dim() == 3 and tensor.shape[0] == 3
            and tensor.is_floating_point()):
        raise InputError(f"{who} expects a float 3 x H x W (or 1 x 3 x H x W) tensor in "
                         f"[0, 1], got {_describe(tensor)}")
    return tensor


def _describe(obj) -> str:
    if torch.is_tensor(obj):
        return f"{obj.dtype} tensor of shape {tuple(obj.shape)}"
    return type(obj).__name__


# ----------------------------------------------------------------------------- strips


def make_strip(
    images: Sequence[torch.Tensor], labels: Sequence[str] | None = None, gap: int = 4
) -> torch.Tensor:
    """Place images side by side on white: ``3 x H' x (sum W + gap * (n - 1))``.

    Images may differ in width and height; shorter ones are padded with white at the
    bottom, so ``H' = max H``. With ``labels`` (one per image), a white band is added under
    the images and each label is drawn in black with Pillow's default font, wrapped onto as
    many lines as it needs to fit its image's width (at word boundaries, a long word split
    between characters): nothing is cut off. ``H' = max H + band height``, the band as tall
    as the longest label needs. Image pixels are copied unchanged (no 8-bit rounding); the
    result is float32 on the first image's device.
    """
    if not images:
        raise InputError("make_strip needs at least one image")
    images = [_as_single_image(img, "make_strip") for img in images]
    if labels is not None and len(labels) != len(images):
        raise InputError(f"make_strip got {len(labels)} labels for {len(images)} images; "
                         "pass one label per image or labels=None")
    if gap < 0:
        raise InputError(f"gap must be >= 0, got {gap}")
    height = max(img.shape[1] for img in images)
    lines = [wrap_label(str(t), img.shape[2]) for t, img in zip(labels, images)] if labels is not None else None
    band = _label_band_height(max(len(x) for x in lines)) if lines is not None else 0
    width = sum(img.shape[2] for img in images) + gap * (len(images) - 1)
    device = images[0].device
    strip = torch.ones(3, height + band, width, device=device)
    left = 0
    for i, img in enumerate(images):
        h, w = img.shape[1:]
        strip[:, :h, left:left + w] = img.detach().float().clamp(0.0, 1.0)
        if lines is not None:
            strip[:, height:, left:left + w] = _label_tile(lines[i], w, band).to(device)
        left += w + gap
    return strip


_LABEL_MARGIN = 3  # pixels of white left of the text, and above the first line


def _line_height() -> int:
    box = ImageFont.load_default().getbbox("Ag|")
    return box[3] + 2


def _label_band_height(n_lines: int = 1) -> int:
    return n_lines * _line_height() + 2 * _LABEL_MARGIN


def wrap_label(text: str, width: int) -> list[str]:
    """``text`` broken into lines that fit ``width`` pixels in Pillow's default font (after the
    left margin): at spaces where possible, inside a word only when the word alone is too wide."""
    font = ImageFont.load_default()
    room = max(1, width - 2 * _LABEL_MARGIN)

    def fits(s: str) -> bool:
        return font.getlength(s) <= room

    lines: list[str] = []
    for word in text.split(" "):
        if lines and fits(lines[-1] + " " + word):
            lines[-1] += " " + word
            continue
        while word and not fits(word):  # split a word wider than the tile
            cut = max(1, max(k for k in range(1, len(word) + 1) if fits(word[:k]) or k == 1))
            lines.append(word[:cut])
            word = word[cut:]
        if word:
            lines.append(word)
    return lines or [""]


def _label_tile(lines: list[str], width: int, height: int) -> torch.Tensor:
    """A white ``3 x height x width`` tile with ``lines`` of text in black, one under the other."""
    tile = Image.new("L", (width, height), 255)
    draw, font = ImageDraw.Draw(tile), ImageFont.load_default()
    for k, line in enumerate(lines):
        draw.text((_LABEL_MARGIN, _LABEL_MARGIN + k * _line_height()), line, fill=0, font=font)
    gray = torch.from_numpy(np.array(tile, dtype=np.float32)) / 255.0
    return gray.unsqueeze(0).expand(3, -1, -1)
