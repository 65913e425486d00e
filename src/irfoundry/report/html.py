"""One self-contained HTML evaluation report: metrics table, curves, per-image error gallery.

The page has no external reference at all: panels are PNG data URIs, curves inline SVG, CSS and JS
inline, and a Content-Security-Policy meta tag (``default-src 'none'``) makes the browser refuse any
network request. It opens from disk in any browser.

Gallery
    Every image gets the target matching of :func:`irfoundry.metrics.match_targets` at ``threshold``
    (same labelling, centroid rule, matching and false-alarm rule as the metrics) and a panel
    ``[image | overlay]``: the image contrast-stretched (0.5 / 99.9 percentiles), then the same image
    with the prediction ``p > threshold`` blended in cyan, a green ring just outside the GT, each missed GT
    target circled in red and each false-alarm component boxed in yellow.

    Error order: cards are sorted by the number of target errors ``missed + false-alarm components``
    (descending), then by ``1 - IoU`` of the image (descending; an image with empty GT and empty
    prediction has no IoU and counts 0), then by input order. ``max_gallery`` keeps only the first
    ``max_gallery`` cards of that order (a bounded heap: memory holds at most that many thumbnails).

    A text box filters cards by image-id substring (case-insensitive) and a check box hides images
    without target errors. Both can be preset in the URL: ``report.html#filter=Misc_1&errors=1``; the
    page writes its state back into the hash. After the script ran, ``#gallery`` carries
    ``data-ready="1"`` and ``data-visible`` (number of visible cards).

Memory: ``images`` is consumed once; per image only the encoded PNG panel (a few tens of kB) and a few
numbers are kept, never the arrays.
"""

from __future__ import annotations

import base64
import heapq
import html
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from irfoundry.errors import ConfigError, DataError
from irfoundry.metrics.functional import DEFINITION, MetricSettings, _as_thresholds
from irfoundry.metrics.targets import TargetMatch, match_targets
from irfoundry.report.panels import display_size, png_bytes, render_panel

__all__ = ["ImageRecord", "write_report", "render_panel"]


@dataclass
class ImageRecord:
    """One evaluated image. ``image``: ``H x W`` float, raw intensities (any range); ``gt``: ``H x W``
    bool mask; ``prob``: ``H x W`` float32 probabilities in [0, 1]."""

    id: str
    image: np.ndarray
    gt: np.ndarray
    prob: np.ndarray


@dataclass
class _Card:
    """Per-image numbers kept for the page (plus the encoded panel when the image is shown)."""

    index: int
    id: str
    height: int
    width: int
    iou: float | None
    n_gt: int
    n_pred: int
    hits: int
    missed: int
    fa_targets: int
    fa_pixels: int
    png: bytes = b""

    @property
    def errors(self) -> int:
        return self.missed + self.fa_targets

    def key(self) -> tuple[int, float, int]:
        """Larger = worse: (target errors, 1 - IoU, earlier input first)."""
        return (self.errors, 0.0 if self.iou is None else 1.0 - self.iou, -self.index)


def _card(index: int, rec: ImageRecord, threshold: float, settings: MetricSettings) -> tuple[_Card, TargetMatch]:
    rid = str(rec.id)
    img = np.asarray(rec.image)
    gt = np.asarray(rec.gt)
    prob = np.asarray(rec.prob)
    if img.ndim != 2 or gt.shape != img.shape or prob.shape != img.shape:
        raise DataError(
            f"report image {rid!r}: image {img.shape}, gt {gt.shape} and prob {prob.shape} must be the same "
            "H x W (squeeze channel axes, crop padding off the prediction)."
        )
    try:
        match = match_targets(prob, gt, threshold, settings=settings)
    except DataError as e:
        raise DataError(f"report image {rid!r}: {e}") from None
    g = gt > 0 if gt.dtype != bool else gt
    fg = prob.astype(np.float64) > match.threshold
    inter = int(np.count_nonzero(fg & g))
    union = int(np.count_nonzero(fg | g))
    card = _Card(
        index=index,
        id=rid,
        height=int(img.shape[0]),
        width=int(img.shape[1]),
        iou=inter / union if union else None,
        n_gt=len(match.gt),
        n_pred=len(match.pred),
        hits=match.hits,
        missed=match.missed,
        fa_targets=match.false_alarms,
        fa_pixels=match.fa_pixels,
    )
    return card, match


# ----------------------------------------------------------------------------------------------- page
_FRACTIONS = {
    "iou": "IoU", "niou": "nIoU", "pd": "Pd", "target_precision": "target precision",
    "target_recall": "target recall", "target_f1": "target F1", "hiou": "hIoU", "seg_iou": "seg IoU",
    "loc_iou": "loc IoU", "pixel_precision": "pixel precision", "pixel_recall": "pixel recall",
    "pixel_f1": "pixel F1",
}


def _esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _fmt_plain(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.6g}"
    if isinstance(v, Mapping):
        return ", ".join(f"{k}={_fmt_plain(x)}" for k, x in v.items())
    if isinstance(v, np.ndarray):
        v = v.tolist()
    if isinstance(v, (list, tuple)):
        s = ", ".join(_fmt_plain(x) for x in v[:12])
        return f"[{s}{', ...' if len(v) > 12 else ''}] ({len(v)})"
    return str(v)


def _metric_row(key: str, v: Any) -> tuple[str, str, str]:
    """(label, displayed value, raw value) of one metrics entry."""
    number = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
    raw = repr(float(v)) if isinstance(v, (float, np.floating)) else _fmt_plain(v)
    if number and key in _FRACTIONS:
        return f"{_FRACTIONS[key]} (%)", f"{100.0 * float(v):.2f}", raw
    if number and key == "fa":
        return "Fa (x1e-6)", f"{1e6 * float(v):.2f}", raw
    return key, _fmt_plain(v), raw


def _definitions(metrics: Mapping[str, Any], curves: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    out: dict[str, str] = {}
    for src, d in (("metrics", metrics), ("curves", curves or {})):
        for k, v in d.items():
            if "definition" in k and isinstance(v, str):
                out[k if src == "metrics" else f"curves {k}"] = v
    out.setdefault("gallery matching", DEFINITION)
    return list(out.items())


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.5em;margin:0 0 .2em}h2{font-size:1.15em;margin:1.4em 0 .5em}
.sub{color:#555;margin:0 0 1em}
table.metrics{border-collapse:collapse;background:#fff}
table.metrics th,table.metrics td{border:1px solid #ddd;padding:.25em .6em;text-align:left}
table.metrics td.value{text-align:right;font-variant-numeric:tabular-nums}
table.metrics td.raw{color:#777;font-size:.85em}
.curves{display:flex;flex-wrap:wrap;gap:1em}.curves figure{margin:0;background:#fff;border:1px solid #ddd}
.curves svg{width:420px;height:auto;display:block}
#controls{position:sticky;top:0;background:#fafafa;padding:.5em 0;display:flex;gap:1.5em;align-items:center;
 flex-wrap:wrap;border-bottom:1px solid #ddd;z-index:1}
#filter{width:16em}
#gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:.8em;margin-top:.8em}
.card{margin:0;background:#fff;border:1px solid #ddd;padding:.4em}
.card.err{border-left:4px solid #d33}
.card img{width:100%;height:auto;image-rendering:pixelated;display:block}
.card figcaption{font-size:.85em;margin-top:.3em}
.card .id{font-weight:600;word-break:break-all}
.legend span{margin-right:1em}.sw{display:inline-block;width:.9em;height:.9em;vertical-align:-.1em;margin-right:.3em}
[hidden]{display:none!important}
"""

_JS = """
(function () {
  var gallery = document.getElementById('gallery');
  var cards = Array.prototype.slice.call(gallery.querySelectorAll('.card'));
  var box = document.getElementById('filter');
  var onlyErr = document.getElementById('only-errors');
  var shown = document.getElementById('visible-count');
  function readHash() {
    var p = new URLSearchParams(location.hash.replace(/^#/, ''));
    if (p.has('filter')) box.value = p.get('filter');
    if (p.has('errors')) onlyErr.checked = p.get('errors') === '1';
  }
  function writeHash() {
    var p = new URLSearchParams();
    if (box.value) p.set('filter', box.value);
    if (onlyErr.checked) p.set('errors', '1');
    var s = p.toString();
    try { history.replaceState(null, '', s ? '#' + s : location.pathname + location.search); } catch (e) {}
  }
  function apply() {
    var q = box.value.trim().toLowerCase();
    var n = 0;
    cards.forEach(function (c) {
      var ok = (!q || c.getAttribute('data-id').toLowerCase().indexOf(q) >= 0) &&
               (!onlyErr.checked || c.getAttribute('data-errors') !== '0');
      c.hidden = !ok;
      if (ok) n += 1;
    });
    shown.textContent = String(n);
    gallery.setAttribute('data-visible', String(n));
  }
  box.addEventListener('input', function () { apply(); writeHash(); });
  onlyErr.addEventListener('change', function () { apply(); writeHash(); });
  window.addEventListener('hashchange', function () { readHash(); apply(); });
  readHash();
  apply();
  gallery.setAttribute('data-ready', '1');
})();
"""


def _write_page(
    f,
    *,
    title: str,
    metrics: Mapping[str, Any],
    curves: Mapping[str, Any] | None,
    cards: list[_Card],
    n_images: int,
    n_err_images: int,
    totals: dict[str, int],
    threshold: float,
    settings: MetricSettings,
) -> None:
    from irfoundry import __version__

    w = f.write
    w("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n")
    w("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
      "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\n")
    w('<meta name="viewport" content="width=device-width, initial-scale=1">\n')
    w(f"<title>{_esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n")
    w(f"<h1>{_esc(title)}</h1>\n")
    defs = "; ".join(f"{_esc(k)} <code>{_esc(v)}</code>" for k, v in _definitions(metrics, curves))
    w(f'<p class="sub">irfoundry {_esc(__version__)} &middot; {n_images} image(s) &middot; '
      f"definition versions: {defs}</p>\n")

    w('<h2>Metrics</h2>\n<table class="metrics" id="metrics">\n'
      "<thead><tr><th>metric</th><th>value</th><th>raw</th></tr></thead>\n<tbody>\n")
    for key, v in metrics.items():
        if "definition" in key and isinstance(v, str):
            continue  # listed in the header line
        label, shown, raw = _metric_row(str(key), v)
        w(f'<tr data-key="{_esc(key)}"><th>{_esc(label)}</th><td class="value">{_esc(shown)}</td>'
          f'<td class="raw">{_esc(raw)}</td></tr>\n')
    w("</tbody>\n</table>\n")

    if curves is not None:
        from irfoundry.report.plots import curve_svgs

        w('<h2>Curves</h2>\n<div class="curves" id="curves">\n')
        for name, svg in curve_svgs(curves).items():
            w(f'<figure data-plot="{_esc(name)}">{svg}</figure>\n')
        w("</div>\n")

    s = settings
    w("<h2>Images, worst first</h2>\n")
    w(f'<p class="sub" id="gallery-summary">Threshold p &gt; {_esc(f"{threshold:g}")}; matching '
      f"{_esc(s.matching)}, {s.connectivity}-connectivity, centroid distance &lt; {_esc(f'{s.distance:g}')} px, "
      f"{'legacy area' if s.legacy_area_match else 'correct'} false-alarm rule. "
      f"{n_err_images} of {n_images} image(s) have target errors "
      f"({totals['missed']} missed target(s), {totals['fa_targets']} false-alarm component(s), "
      f"{totals['fa_pixels']} false-alarm pixel(s)). Order: missed + false alarms, then 1 - IoU. ")
    if len(cards) < n_images:
        w(f"Showing the {len(cards)} worst image(s).")
    w("</p>\n")
    w('<p class="legend"><span><i class="sw" style="background:#00dcff"></i>prediction</span>'
      '<span><i class="sw" style="background:#00ff00"></i>GT outline</span>'
      '<span><i class="sw" style="border:2px solid #ff2828;border-radius:50%"></i>missed target</span>'
      '<span><i class="sw" style="border:2px solid #ffe600"></i>false alarm</span></p>\n')
    w('<div id="controls"><label>Filter by image id <input id="filter" type="search" '
      'placeholder="id substring" autocomplete="off"></label>'
      '<label><input id="only-errors" type="checkbox"> only images with errors</label>'
      f'<span><span id="visible-count">{len(cards)}</span> of {len(cards)} shown</span></div>\n')
    w(f'<div id="gallery" data-ready="0" data-total="{len(cards)}" data-visible="{len(cards)}">\n')
    for rank, c in enumerate(cards, start=1):
        iou = "n/a" if c.iou is None else f"{100 * c.iou:.1f}%"
        iou_attr = "" if c.iou is None else repr(c.iou)
        uri = "data:image/png;base64," + base64.b64encode(c.png).decode("ascii")
        w(f'<figure class="card{" err" if c.errors else ""}" data-id="{_esc(c.id)}" data-rank="{rank}" '
          f'data-errors="{c.errors}" data-missed="{c.missed}" data-fa-targets="{c.fa_targets}" '
          f'data-fa-pixels="{c.fa_pixels}" data-hits="{c.hits}" data-n-gt="{c.n_gt}" data-n-pred="{c.n_pred}" '
          f'data-iou="{iou_attr}">'
          f'<img alt="{_esc(c.id)}: image and overlay" width="{_esc(_png_width(c))}" src="{uri}">'
          f'<figcaption><span class="id">{_esc(c.id)}</span> ({c.height}x{c.width}) &middot; IoU {iou} '
          f"&middot; targets {c.hits}/{c.n_gt} found &middot; missed {c.missed} &middot; "
          f"false alarms {c.fa_targets} ({c.fa_pixels} px)</figcaption></figure>\n")
    if not cards:
        w("<p>No images.</p>\n")
    w("</div>\n")
    w(f"<script>{_JS}</script>\n</body>\n</html>\n")


def _png_width(c: _Card) -> int:
    _, ow, _ = display_size(c.height, c.width)
    return 2 * ow + 4


def _temp_path(path: Path) -> Path:
    """A fresh name beside ``path`` (same file system, so ``os.replace`` is atomic; normal permissions)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def write_report(
    path: str | Path,
    *,
    title: str,
    metrics: Mapping[str, Any],
    curves: Mapping[str, Any] | None,
    images: Iterable[ImageRecord],
    threshold: float = 0.5,
    settings: MetricSettings | None = None,
    max_gallery: int | None = None,
) -> Path:
    """Write the report page to ``path`` (atomically: temporary file in the same folder, then rename).

    Args:
        path: the ``.html`` file to write; its folder is created.
        title: page title (escaped).
        metrics: flat dict shown as the metrics table (for example ``IRSTDMetrics.compute()`` or
            ``metrics.json``); fraction metrics (``iou``, ``niou``, ``pd``, ...) are shown in percent,
            ``fa`` as x1e-6, with the raw value beside; ``*definition*`` strings go to the header line.
        curves: ``MultiThresholdCurves.compute()`` dict, drawn as inline SVG; ``None`` for no curves.
        images: :class:`ImageRecord` items, consumed once (a generator is fine).
        threshold: binarisation threshold of the gallery (``p > threshold``).
        settings: matching settings for the gallery (default :class:`MetricSettings`); pass the ones
            used for ``metrics`` so that the marks agree with the numbers.
        max_gallery: show only this many cards (the worst); ``None`` shows every image.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        DataError: an image whose arrays disagree in shape or whose ``prob`` leaves [0, 1] (named by id);
        ConfigError: bad ``threshold``, ``settings`` or ``max_gallery``.
    """
    s = settings or MetricSettings()
    if np.ndim(threshold) != 0:
        raise ConfigError(f"report threshold must be one number, got {threshold!r}.")
    threshold = float(_as_thresholds(threshold)[0])
    if max_gallery is not None and (isinstance(max_gallery, bool) or int(max_gallery) != max_gallery
                                    or max_gallery < 0):
        raise ConfigError(f"max_gallery must be a non-negative integer or None, got {max_gallery!r}.")
    path = Path(path)
    heap: list[tuple[tuple[int, float, int], _Card]] = []
    kept: list[_Card] = []
    n_images = n_err = 0
    totals = {"missed": 0, "fa_targets": 0, "fa_pixels": 0}
    for i, rec in enumerate(images):
        card, match = _card(i, rec, threshold, s)
        n_images += 1
        n_err += card.errors > 0
        totals["missed"] += card.missed
        totals["fa_targets"] += card.fa_targets
        totals["fa_pixels"] += card.fa_pixels
        key = card.key()
        if max_gallery is not None and len(heap) >= max_gallery and (not heap or key <= heap[0][0]):
            continue  # would not be shown: skip the encoding
        card.png = png_bytes(render_panel(np.asarray(rec.image), np.asarray(rec.gt) > 0, np.asarray(rec.prob), match))
        if max_gallery is None:
            kept.append(card)
        elif len(heap) < max_gallery:
            heapq.heappush(heap, (key, card))
        else:
            heapq.heapreplace(heap, (key, card))
    cards = sorted(kept if max_gallery is None else [c for _, c in heap], key=_Card.key, reverse=True)

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_path(path)
    try:
        with open(tmp, "x", encoding="utf-8") as f:
            _write_page(f, title=title, metrics=metrics, curves=curves, cards=cards, n_images=n_images,
                        n_err_images=n_err, totals=totals, threshold=float(threshold), settings=s)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path

