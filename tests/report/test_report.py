"""HTML report and curve plots: content parsed with html.parser, then the page run in headless Chromium.

Six synthetic images with known misses / false alarms; the expected per-image numbers are worked out
by hand in ``_images``. The browser tests skip when no Chromium is installed (``.ci/run`` tries to
install Debian's ``chromium``).
"""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from irfoundry.errors import ConfigError, DataError
from irfoundry.metrics import IRSTDMetrics, MetricSettings, MultiThresholdCurves
from irfoundry.report import PLOT_NAMES, ImageRecord, curve_svgs, save_curve_plots, write_report
from irfoundry.report.plots import curve_figures

H, W = 40, 48


def _sq(a, y, x, r, v=True):
    a[y - r : y + r + 1, x - r : x + r + 1] = v


def _images():
    """(records, expected) with expected[id] = (missed, fa_targets, fa_pixels, iou or None)."""
    rng = np.random.default_rng(0)
    recs, exp = [], {}

    def add(i, gt, prob, e):
        img = rng.normal(100.0, 5.0, (H, W)) + 60.0 * gt
        recs.append(ImageRecord(f"img_{i}", img, gt, prob.astype(np.float32)))
        exp[f"img_{i}"] = e

    # img_0: one target, exact prediction
    gt = np.zeros((H, W), bool); _sq(gt, 10, 10, 1)
    add(0, gt, gt * 0.9, (0, 0, 0, 1.0))
    # img_1: one target (9 px), nothing predicted
    gt = np.zeros((H, W), bool); _sq(gt, 20, 30, 1)
    add(1, gt, np.zeros((H, W)), (1, 0, 0, 0.0))
    # img_2: target found exactly + two false alarms (9 + 1 px)
    gt = np.zeros((H, W), bool); _sq(gt, 8, 8, 1)
    p = gt * 0.8; _sq(p, 30, 40, 1, 0.7); p[35, 5] = 0.6
    add(2, gt, p, (0, 2, 10, 9 / 19))
    # img_3: two targets, one found (exact), one missed, one false alarm (1 px)
    gt = np.zeros((H, W), bool); _sq(gt, 10, 10, 1); _sq(gt, 30, 30, 1)
    p = np.zeros((H, W)); _sq(p, 10, 10, 1, 0.9); p[2, 40] = 0.95
    add(3, gt, p, (1, 1, 1, 9 / 19))
    # img_4: empty GT, empty prediction (IoU undefined)
    add(4, np.zeros((H, W), bool), np.zeros((H, W)), (0, 0, 0, None))
    # img_5: target found with a dilated prediction (25 px over 9)
    gt = np.zeros((H, W), bool); _sq(gt, 20, 20, 1)
    p = np.zeros((H, W)); _sq(p, 20, 20, 2, 0.7)
    add(5, gt, p, (0, 0, 0, 9 / 25))
    # order: 2 errors (img_2 / img_3 tie on IoU -> input order), 1 error, then 0 errors by 1 - IoU
    order = ["img_2", "img_3", "img_1", "img_5", "img_0", "img_4"]
    return recs, exp, order


def _metrics(recs, settings=None):
    kw = (settings or MetricSettings()).as_dict()
    m, c = IRSTDMetrics(**kw), MultiThresholdCurves(**kw)
    for r in recs:
        p, g = torch.from_numpy(r.prob[None]), torch.from_numpy(r.gt[None])
        m.update(p, g)
        c.update(p, g)
    return m.compute(), c.compute()


class _Page(HTMLParser):
    """Collects tags with attributes, metrics rows, gallery cards and the text."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.rows: dict[str, list[str]] = {}
        self.cards: list[dict] = []
        self.text: list[str] = []
        self._row: str | None = None
        self._cell: list[str] | None = None
        self.gallery: dict = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "tr" and "data-key" in a:
            self._row = a["data-key"]
            self.rows[self._row] = []
        elif tag in ("th", "td") and self._row is not None:
            self._cell = []
        elif tag == "figure" and "card" in a.get("class", "").split():
            self.cards.append(a)
        elif tag == "div" and a.get("id") == "gallery":
            self.gallery = a

    def handle_endtag(self, tag):
        if tag in ("th", "td") and self._cell is not None:
            self.rows[self._row].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr":
            self._row = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def _parse(text: str) -> _Page:
    p = _Page()
    p.raw = text
    p.feed(text)
    p.close()
    return p


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    recs, exp, order = _images()
    metrics, curves = _metrics(recs)
    path = tmp_path_factory.mktemp("report") / "sub" / "report.html"
    out = write_report(path, title="ACM <test> & \"quotes\"", metrics=metrics, curves=curves,
                       images=(r for r in recs))  # a generator: consumed once
    return out, metrics, exp, order


def test_report_tables_and_gallery(report):
    path, metrics, exp, order = report
    assert path.is_file() and not list(path.parent.glob(".*.tmp"))
    text = path.read_text(encoding="utf-8")
    page = _parse(text)

    # metrics table: fractions in percent, Fa as x1e-6, raw values beside
    assert page.rows["iou"] == ["IoU (%)", f"{100 * metrics['iou']:.2f}", repr(metrics["iou"])]
    assert page.rows["niou"][1] == f"{100 * metrics['niou']:.2f}"
    assert page.rows["pd"] == ["Pd (%)", f"{100 * metrics['pd']:.2f}", repr(metrics["pd"])]
    assert page.rows["fa"][:2] == ["Fa (x1e-6)", f"{1e6 * metrics['fa']:.2f}"]
    assert page.rows["hits"][1] == str(metrics["hits"]) == "4"
    assert metrics["pd"] == pytest.approx(4 / 6)
    assert metrics["fa_pixels"] == 11
    assert "irstd-metrics-v1" in "".join(page.text)
    assert "definition" not in page.rows  # shown in the header line instead

    # gallery: every image, worst first, marks counted in data attributes
    assert [c["data-id"] for c in page.cards] == order
    assert [c["data-rank"] for c in page.cards] == [str(i) for i in range(1, 7)]
    for c in page.cards:
        missed, fa_t, fa_px, iou = exp[c["data-id"]]
        assert (int(c["data-missed"]), int(c["data-fa-targets"]), int(c["data-fa-pixels"])) == (missed, fa_t, fa_px)
        assert int(c["data-errors"]) == missed + fa_t
        assert (c["data-iou"] == "") if iou is None else float(c["data-iou"]) == pytest.approx(iou)
    # the gallery's matching agrees with the metrics
    assert sum(int(c["data-hits"]) for c in page.cards) == metrics["hits"]
    assert sum(int(c["data-fa-pixels"]) for c in page.cards) == metrics["fa_pixels"]
    assert sum(int(c["data-n-gt"]) for c in page.cards) == metrics["n_gt"]
    assert page.gallery["data-total"] == "6" and page.gallery["data-ready"] == "0"

    # panels are PNG data URIs of the declared size
    imgs = [a for t, a in page.tags if t == "img"]
    assert len(imgs) == 6
    for a in imgs:
        assert a["src"].startswith("data:image/png;base64,")
        panel = Image.open(io.BytesIO(base64.b64decode(a["src"].split(",", 1)[1])))
        assert panel.format == "PNG" and panel.mode == "RGB"
        assert panel.width == int(a["width"]) == 2 * 5 * W + 4  # 48 px wide -> x5 nearest, two panels
    # curves: three inline SVGs
    assert [a["data-plot"] for t, a in page.tags if t == "figure" and "data-plot" in a] == list(PLOT_NAMES)
    assert text.count("<svg") == 3


def test_report_is_self_contained_and_escaped(report):
    path = report[0]
    text = path.read_text(encoding="utf-8")
    page = _parse(text)
    for tag, attrs in page.tags:
        for k, v in attrs.items():
            if k in ("src", "href", "xlink:href", "action", "poster", "data") and v:
                assert not re.match(r"\s*(https?:)?//", v), (tag, k, v[:80])
        assert not (tag == "script" and "src" in attrs)
        assert tag != "link"
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", text)
    csp = [a["content"] for t, a in page.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert csp and "default-src 'none'" in csp[0]
    assert "ACM &lt;test&gt; &amp; &quot;quotes&quot;" in text
    assert "ACM <test>" not in text


def test_escaping_of_ids_max_gallery_and_settings(tmp_path, monkeypatch):
    import irfoundry.report.html as report_html

    recs, exp, order = _images()
    recs[3] = ImageRecord('img_3"><script>x()</script>', recs[3].image, recs[3].gt, recs[3].prob)
    metrics, _ = _metrics(recs)
    encoded = []
    real_png = report_html.png_bytes
    monkeypatch.setattr(report_html, "png_bytes", lambda img: encoded.append(1) or real_png(img))
    out = write_report(tmp_path / "r.html", title="t", metrics=metrics, curves=None, images=recs, max_gallery=3)
    # bounded heap: img_0..2 fill it, img_3 replaces img_0, img_4 and img_5 are never encoded
    assert len(encoded) == 4
    monkeypatch.undo()
    text = out.read_text()
    page = _parse(text)
    assert "<script>x()" not in text
    assert [c["data-id"] for c in page.cards] == ["img_2", 'img_3"><script>x()</script>', "img_1"]
    assert "<svg" not in text  # no curves given
    assert "Showing the 3 worst image(s)." in "".join(page.text)
    assert "3 of 6 image(s) have target errors" in "".join(page.text)
    # legacy area rule: img_2's two false alarms (9 px and 1 px) differ from the matched area 9 -> only 1 px
    out2 = write_report(tmp_path / "legacy.html", title="t", metrics={}, curves=None, images=recs,
                        settings=MetricSettings(legacy_area_match=True))
    cards = {c["data-id"]: c for c in _parse(out2.read_text()).cards}
    assert (cards["img_2"]["data-fa-targets"], cards["img_2"]["data-fa-pixels"]) == ("1", "1")
    # empty image list still writes a page
    out3 = write_report(tmp_path / "empty.html", title="t", metrics={}, curves=None, images=[])
    assert _parse(out3.read_text()).cards == []


def test_bad_inputs_name_the_image_and_keep_the_old_report(tmp_path):
    recs, _, _ = _images()
    path = write_report(tmp_path / "r.html", title="t", metrics={}, curves=None, images=recs[:2])
    before = path.read_bytes()
    bad = ImageRecord("broken_7", recs[0].image, recs[0].gt, recs[0].prob[:, :-1])
    with pytest.raises(DataError, match="broken_7"):
        write_report(path, title="t", metrics={}, curves=None, images=[recs[0], bad])
    logits = ImageRecord("logits_1", recs[0].image, recs[0].gt, recs[0].prob * 5 - 1)
    with pytest.raises(DataError, match=r"logits_1.*\[0, 1\]"):
        write_report(path, title="t", metrics={}, curves=None, images=[logits])
    with pytest.raises(ConfigError, match="max_gallery"):
        write_report(path, title="t", metrics={}, curves=None, images=recs, max_gallery=-1)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]


def test_curve_plots(tmp_path):
    recs, _, _ = _images()
    _, curves = _metrics(recs)
    paths = save_curve_plots(curves, tmp_path / "plots")
    assert {k: p.name for k, p in paths.items()} == {n: f"{n}.png" for n in PLOT_NAMES}
    for p in paths.values():
        a = np.asarray(Image.open(p).convert("L"))
        assert a.shape[0] > 200 and a.std() > 10  # drawn, not blank
    figs = curve_figures(curves)
    ax = figs["pd_vs_fa"].axes[0]
    assert ax.get_xscale() == "log"
    x, y = ax.lines[0].get_data()
    ok = curves["fa"] > 0
    np.testing.assert_allclose(x, 1e6 * curves["fa"][ok])
    np.testing.assert_allclose(y, 100 * curves["pd"][ok])
    ax = figs["iou_niou_vs_threshold"].axes[0]
    np.testing.assert_allclose(ax.lines[0].get_data()[0], curves["thresholds"])
    np.testing.assert_allclose(ax.lines[0].get_data()[1], 100 * curves["iou"])
    roc = figs["roc"].axes[0].lines[0].get_data()
    ok = curves["fpr"] > 0
    np.testing.assert_allclose(roc[0], curves["fpr"][ok])
    svgs = curve_svgs(curves)
    assert list(svgs) == list(PLOT_NAMES) and all(s.startswith("<svg") for s in svgs.values())
    ids = [i for s in svgs.values() for i in re.findall(r'\bid="([^"]+)"', s)]
    assert ids and len(ids) == len(set(ids))  # several SVGs on one page: no id clash
    for s in svgs.values():  # every internal reference points at an id of the same SVG
        own = set(re.findall(r'\bid="([^"]+)"', s))
        assert set(re.findall(r'(?:href="|url\()#([^")]+)', s)) <= own
    with pytest.raises(ConfigError, match="fpr"):
        save_curve_plots({k: v for k, v in curves.items() if k != "fpr"}, tmp_path)


# ------------------------------------------------------------------------------------ headless Chromium
def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        exe = shutil.which(name)
        if exe:
            return exe
    pytest.skip("chromium not installed: apt-get install chromium")


def _run_chromium(exe: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
           f"--user-data-dir={profile}", *args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    assert res.returncode == 0, f"{' '.join(cmd)} failed:\n{res.stderr[-2000:]}"
    return res


def _visible(page: _Page) -> list[str]:
    return [c["data-id"] for c in page.cards if "hidden" not in c]


@pytest.mark.slow
def test_report_in_headless_chromium(report, tmp_path):
    exe = _chromium()
    path, _, exp, order = report
    url = path.resolve().as_uri()
    t0 = time.perf_counter()

    dom = _parse(_run_chromium(exe, tmp_path / "p1", "--dump-dom", url).stdout)
    assert dom.gallery.get("data-ready") == "1"  # the script ran
    assert dom.gallery.get("data-visible") == "6" and _visible(dom) == order

    dom = _parse(_run_chromium(exe, tmp_path / "p2", "--dump-dom", url + "#filter=IMG_3").stdout)
    assert dom.gallery.get("data-ready") == "1"
    assert _visible(dom) == ["img_3"] and dom.gallery.get("data-visible") == "1"
    assert re.search(r'<span id="visible-count">1</span>', dom.raw)

    dom = _parse(_run_chromium(exe, tmp_path / "p3", "--dump-dom", url + "#errors=1").stdout)
    with_errors = [i for i in order if exp[i][0] + exp[i][1] > 0]
    assert _visible(dom) == with_errors and dom.gallery.get("data-visible") == str(len(with_errors))

    shot = tmp_path / "shot.png"
    _run_chromium(exe, tmp_path / "p4", "--window-size=1200,1600", f"--screenshot={shot}", url)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    a = np.asarray(Image.open(shot).convert("RGB")).astype(np.float64)
    assert a.shape[:2] == (1600, 1200)
    assert a.std() > 20  # text, table and plots were drawn
    colours = {tuple(v) for v in a[::8, ::8].reshape(-1, 3).astype(int)}
    assert len(colours) > 50
    print(f"chromium: 4 runs in {time.perf_counter() - t0:.1f} s")
