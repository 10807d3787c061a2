"""The rate–distortion report: CSV + JSON of every point, two PNG plots and one self-contained HTML
page (docs/rate_distortion.md).

Files written into the report folder:

* ``points.csv``: one row per point (``RDPoint.row``: method, label, kind, tokens, bits, bpp, psnr,
  ssim, lpips, rfid, inception_score, images; rFID / IS empty without an Inception);
* ``report.json``: the points with their per-image values, the complexity statistics, the
  allocation checks and the protocol;
* ``rd_psnr.png``: PSNR against bits per pixel (log axis), one line per method;
* ``length_complexity.png``: each selection's chosen length against the PNG and JPEG-90 size;
* ``report.html``: the tables, both plots (embedded as base64) and a grid of the first images at each
  swept length, the length chosen by the report's selection outlined in colour.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from PIL import Image

__all__ = ["write_csv", "write_json", "plot_rate_distortion", "plot_length_complexity", "write_html",
           "write_report"]

_ROW_KEYS = ("method", "label", "kind", "tokens", "bits", "bpp", "psnr", "ssim", "lpips", "rfid", "inception_score",
             "images")
_CHOSEN = "#e6194b"  # the border of the chosen length in the image grid


def _matplotlib():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    return plt


def write_csv(points: Sequence, path) -> Path:
    """One row per point (no per-image lists)."""
    path = Path(path)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=_ROW_KEYS)
        w.writeheader()
        for p in points:
            w.writerow({k: ("" if v is None else v) for k, v in p.row().items()})
    return path


def _clean(obj):
    """JSON-safe: NaN/inf -> None, numpy scalars -> Python numbers."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def write_json(points: Sequence, path, extra: Optional[dict] = None) -> Path:
    """The points with their per-image values, and ``extra`` (complexity, allocation, protocol)."""
    path = Path(path)
    data = {"points": [p.to_dict() for p in points], **(extra or {})}
    path.write_text(json.dumps(_clean(data), indent=1))
    return path


def _lines(points) -> dict:
    """Points grouped by method, each group sorted by bits."""
    groups: dict = {}
    for p in points:
        if p.bpp is not None and math.isfinite(p.psnr):
            groups.setdefault(p.method, []).append(p)
    return {m: sorted(ps, key=lambda p: p.bpp) for m, ps in groups.items()}


def plot_rate_distortion(points: Sequence, path, title: str = "Rate–distortion") -> Path:
    """PSNR (dB) against bits per pixel, log x axis, one line per method; tokenizer lengths and
    baseline settings annotated next to their markers (selection rules only when a method has <= 3)."""
    plt = _matplotlib()
    fig, ax = plt.subplots(figsize=(10, 6.5), dpi=110)
    markers = "osD^vP*Xh<>"
    for i, (method, ps) in enumerate(_lines(points).items()):
        x, y = [p.bpp for p in ps], [p.psnr for p in ps]
        ax.plot(x, y, marker=markers[i % len(markers)], linestyle="-" if len(ps) > 1 else "none", label=method,
                markersize=6)
        # selection rules crowd beside the length curve: label them only when there are few (the CSV /
        # HTML tables name every point)
        labelled = [p for p in ps if p.kind != "selection" or len(ps) <= 3]
        for p in labelled:
            short = p.label.replace(" tokens", "").replace(" dB/token", "").replace("lambda=", "λ=")
            short = short.replace("psnr>=", "≥").replace(" dB", "")
            below = p.kind == "selection"  # under the marker: clear of the length curve's labels above
            ax.annotate(short, (p.bpp, p.psnr), textcoords="offset points", xytext=(4, -13 if below else 5),
                        fontsize=8, alpha=0.85)
    ax.set_xscale("log")
    ax.set_xlabel("bits per pixel (log scale)", fontsize=11)
    ax.set_ylabel("mean PSNR (dB, 8-bit reconstructions)", fontsize=11)
    ax.set_title(title, fontsize=12)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def plot_length_complexity(selections: Sequence, complexity: dict, stats: dict, path) -> Path:
    """For each selection point, the chosen length of each image against its PNG size (left) and
    JPEG-90 size (right); Spearman's rho and p in the legend. ``stats[label][measure]`` as from
    ``complexity.length_complexity``. Lengths are jittered a little per selection to show overlaps."""
    plt = _matplotlib()
    measures = [("png_bytes", "PNG size (bytes)"), ("jpeg90_bytes", "JPEG q=90 size (bytes)")]
    n = max(len(selections), 1)
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.0 + 0.3 * math.ceil(n / 2)), dpi=110, sharey=True)
    for ax, (key, xlabel) in zip(axes, measures):
        for i, p in enumerate(selections):
            s = stats.get(p.label, {}).get(key, {})
            rho, pv = s.get("rho", float("nan")), s.get("p", float("nan"))
            lengths = np.asarray(p.lengths, dtype=np.float64)
            step = (np.ptp(p.lengths) or 1) * 0.02 if len(p.lengths) else 0
            jitter = (i - (n - 1) / 2) * step
            tag = f"rho={rho:.2f}, p={pv:.2g}" if math.isfinite(rho) else "rho undefined"
            ax.scatter(complexity[key], lengths + jitter, s=28, alpha=0.75, label=f"{p.method}: {p.label}")
            ax.annotate(tag, (0.02, 0.97 - 0.06 * i), xycoords="axes fraction", fontsize=9, va="top",
                        color=f"C{i % 10}", bbox=dict(facecolor="white", alpha=0.8, edgecolor="none", pad=1))
        ax.set_xlabel(xlabel, fontsize=11)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("chosen tokens per image", fontsize=11)
    handles, labels = axes[0].get_legend_handles_labels()
    rows = math.ceil(n / 2)
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=2 if n > 1 else 1, fontsize=9, frameon=False)
    fig.suptitle("Per-image length against image complexity (Spearman rho, two-sided p, in each panel)",
                 fontsize=12)
    fig.tight_layout(rect=(0, 0.02 + 0.045 * rows, 1, 1))
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def _png_b64(array: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _file_b64(path) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _fmt(v, digits=2) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return html.escape(str(v))


def _table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#222;max-width:1150px}
h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right;white-space:nowrap}
th{background:#f2f2f2}td:first-child,td:nth-child(2),th:first-child{text-align:left}
img.plot{max-width:100%;border:1px solid #eee}
.grid td{padding:4px;text-align:center;vertical-align:top;font-size:12px}
.grid img{width:96px;height:96px;image-rendering:pixelated;border:4px solid transparent;display:block}
.grid img.chosen{border-color:CHOSEN}
p.note{font-size:13px;color:#444;max-width:1000px}
""".replace("CHOSEN", _CHOSEN)


def _grid(sweep, selection) -> str:
    """Originals and their reconstructions at each swept length; ``selection``'s length outlined."""
    header = "<tr><th>image</th><th>original</th>" + "".join(f"<th>{n} tokens</th>" for n in sweep.lengths) + "</tr>"
    rows = []
    for i in range(len(sweep.preview)):
        chosen = selection.lengths[i] if selection is not None else None
        cells = [f"<td>#{i}</td>", f'<td><img src="data:image/png;base64,{_png_b64(sweep.preview[i])}" '
                                   f'alt="original {i}"></td>']
        for t, n in enumerate(sweep.lengths):
            cls = ' class="chosen"' if chosen == n else ""
            psnr = sweep.curves[t, i]
            cells.append(f'<td><img{cls} src="data:image/png;base64,{_png_b64(sweep.preview_recon[t, i])}" '
                         f'alt="{n} tokens, image {i}">{_fmt(float(psnr))} dB</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="grid">{header}{"".join(rows)}</table>'


def write_html(path, *, title: str, sweep, points: Sequence, rd_png, complexity_png=None,
               complexity: Optional[dict] = None, correlations: Optional[dict] = None,
               allocation: Optional[dict] = None, grid_selection=None, protocol: Sequence[str] = ()) -> Path:
    """One self-contained page: protocol notes, the point table, both plots (base64), the complexity
    and allocation tables and the image grid."""
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
    if protocol:
        parts.append("<ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in protocol) + "</ul>")
    parts.append("<h2>Rate–distortion points</h2>")
    rows = [[html.escape(p.method), html.escape(p.label), html.escape(p.kind), _fmt(p.tokens, 1), _fmt(p.bits, 1),
             _fmt(p.bpp, 4), _fmt(p.psnr), _fmt(p.ssim, 3), _fmt(p.lpips, 3), _fmt(p.rfid), _fmt(p.inception_score),
             str(len(p.psnr_per_image))] for p in points]
    parts.append(_table(["method", "label", "kind", "tokens/image", "bits/image", "bits/pixel", "PSNR (dB)",
                         "SSIM", "LPIPS", "rFID", "IS", "images"], rows))
    if any(p.rfid is not None for p in points):
        parts.append("<p class='note'>rFID / IS: each point's 8-bit reconstructions against the input images "
                     f"({len(points[0].psnr_per_image)} here). On a few images rFID is biased high: compare points "
                     "of this set only, not with published rFID (50,000 ImageNet validation images, "
                     "docs/evaluation.md).</p>")
    parts.append(f'<img class="plot" alt="PSNR against bits per pixel" src="data:image/png;base64,{_file_b64(rd_png)}">')
    if correlations:
        parts.append("<h2>Chosen length against image complexity (Spearman)</h2>")
        rows = []
        for label, measures in correlations.items():
            for key, s in measures.items():
                rows.append([html.escape(label), html.escape(key), _fmt(s.get("rho"), 3), _fmt(s.get("p"), 4),
                             str(s.get("n", "")), html.escape(s.get("note", ""))])
        parts.append(_table(["selection", "complexity", "rho", "p-value", "images", "note"], rows))
        if complexity_png is not None:
            parts.append(f'<img class="plot" alt="chosen length against complexity" '
                         f'src="data:image/png;base64,{_file_b64(complexity_png)}">')
    if allocation:
        parts.append("<h2>Allocation check (mean PSNR, dB)</h2>")
        rows = [[html.escape(label), _fmt(a["mean_tokens"], 1), _fmt(a["chosen_psnr"]), _fmt(a["fixed_psnr"]),
                 _fmt(a["shuffled_psnr"]) + f" ± {_fmt(a['shuffled_std'])}", _fmt(a["vs_fixed_db"]),
                 _fmt(a["vs_shuffled_db"])] for label, a in allocation.items()]
        parts.append(_table(["selection", "mean tokens", "chosen lengths", "fixed length (interpolated)",
                             "shuffled lengths", "gain vs fixed", "gain vs shuffled"], rows))
        parts.append("<p class='note'>Fixed: the mean PSNR of every image at one length, linearly interpolated "
                     "at the selection's mean token count. Shuffled: the same lengths permuted across images "
                     "(fixed seed, mean ± std over the permutations).</p>")
    if sweep is not None and len(sweep.preview):
        parts.append("<h2>Reconstructions</h2>")
        if grid_selection is not None:
            parts.append(f"<p class='note'>Outlined in <b style='color:{_CHOSEN}'>colour</b>: the length chosen by "
                         f"{html.escape(grid_selection.method)} {html.escape(grid_selection.label)}. Under each "
                         "image: its PSNR (8-bit).</p>")
        parts.append(_grid(sweep, grid_selection))
    parts.append("</body></html>")
    path = Path(path)
    path.write_text("".join(parts), encoding="utf-8")
    return path


def write_report(folder, sweep, baselines: Sequence = (), *, complexity: Optional[dict] = None,
                 correlations: Optional[dict] = None, allocation: Optional[dict] = None,
                 protocol: Sequence[str] = (), grid_selection=None) -> dict:
    """Every report file of one sweep (and its baselines) into ``folder``; returns ``{name: path}``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    points = list(sweep.points) + list(baselines)
    out = {"csv": write_csv(points, folder / "points.csv"),
           "json": write_json(points, folder / "report.json", {
               "method": sweep.method, "image_size": sweep.image_size, "codebook_size": sweep.codebook_size,
               "allowed_lengths": list(sweep.allowed_lengths), "swept_lengths": list(sweep.lengths),
               "psnr_curves": sweep.curves.tolist(), "complexity": complexity, "correlations": correlations,
               "allocation": allocation, "protocol": list(protocol),
               "inception_score_inputs": sweep.reference.inception_score if sweep.reference is not None else None}),
           "rd_plot": plot_rate_distortion(points, folder / "rd_psnr.png",
                                           f"{sweep.method}: PSNR against rate ({len(sweep.curves[0])} images, "
                                           f"{sweep.image_size} px)")}
    if correlations and sweep.selections:
        out["complexity_plot"] = plot_length_complexity(sweep.selections, complexity, correlations,
                                                        folder / "length_complexity.png")
    out["html"] = write_html(folder / "report.html", title=f"Rate–distortion report: {sweep.method}", sweep=sweep,
                             points=points, rd_png=out["rd_plot"], complexity_png=out.get("complexity_plot"),
                             complexity=complexity, correlations=correlations, allocation=allocation,
                             grid_selection=grid_selection, protocol=protocol)
    return out
