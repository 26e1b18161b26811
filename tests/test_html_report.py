"""report.html: one self-contained page, everything escaped, and tested in a real browser."""

import os
import re
import shutil
from pathlib import Path

import pytest
from fakes import record

from ltbench.reports.write import write_report

HOSTILE = "<script>alert(\"x\")</script> & 'q' $%_{}#~^"


@pytest.fixture
def no_figures(monkeypatch):
    """The report without its matplotlib figures (seconds each; the page is what is tested)."""
    from ltbench.reports import plot_calibration, plot_classes, plot_training

    for module, names in ((plot_training, ("plot_curves", "plot_heads")), (plot_calibration, ("plot_reliability",)),
                          (plot_classes, ("plot_groups", "plot_per_class"))):  # fmt: skip
        for name in names:
            monkeypatch.setattr(module, name, lambda *a, **k: [Path(os.devnull)])


def records():
    recs = [record("ce", 0, [8, 5, 1]), record("ce", 1, [9, 5, 3]), record("la", 0, [7, 6, 6])]
    for r in recs:
        r["history"] = [{"epoch": e, "val_top1": 0.2 * e} for e in (1, 2, 3)]
        r["provenance"] = {"git_commit": "abc123", "data_fingerprint": "f00d"}
        r["run_dir"] = f"/runs/{HOSTILE}/{r['run_id']}"
        r["config"] = {"method": {"title": HOSTILE}}
    return recs


def test_the_page_is_one_offline_file_with_real_headers(tmp_path):
    page = write_report(records(), tmp_path)["html"].read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    for attr in re.findall(r'(?:src|href)="([^"]*)"', page):
        assert attr.startswith(("data:", "#")), attr  # no file, CDN or network reference
    assert "<link" not in page and "@import" not in page and "<script src" not in page
    assert page.count('<th scope="col">') >= 12  # the main table's columns are header cells
    assert page.count('<img alt="') == 4 and "data:image/png;base64," in page  # the figures, inline (no DeiT heads)
    # readable without scripts: every value is in the HTML, details are native <details>
    assert "85.0 ± 7.1" in page and page.count("<details") == 2


def test_hostile_text_is_text_in_the_page_and_in_the_latex(tmp_path, no_figures):
    recs = records()
    for r in recs:
        r["overrides"] = [f"note={HOSTILE}"]
    paths = write_report(recs, tmp_path)
    page = paths["html"].read_text(encoding="utf-8")
    assert "<script>alert" not in page and page.count("<script>") == 1  # only the page's own script
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#x27;q&#x27;" in page
    tex = paths["latex"].read_text()
    assert "\\textless{}script\\textgreater{}" in tex and "\\&" in tex and "\\%" in tex and "\\_" in tex
    assert "<script>" not in tex
    if shutil.which("pdflatex"):
        from fakes import compile_latex

        compile_latex(tmp_path, "table")


def _browser():
    sync = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the test extra has it)")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no Chromium to drive (CI installs Debian's chromium)")
    return sync, chromium


def test_sorting_and_drill_down_in_a_real_browser(tmp_path):
    import numpy as np

    sync, chromium = _browser()
    recs = records()
    path = write_report(recs, tmp_path)["html"]
    with sync.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        requests = []
        page.on("request", lambda req: requests.append(req.url))
        page.goto(path.as_uri())
        col = [h.strip() for h in page.locator("#main thead th").all_inner_texts()].index("All")

        def all_column():
            return [float(v) for v in page.eval_on_selector_all(
                "#main tbody tr", f"rows => rows.map(r => r.cells[{col}].getAttribute('data-value'))")]  # fmt: skip

        assert sorted(all_column()) == [pytest.approx(51.6667, abs=1e-3), pytest.approx(63.3333, abs=1e-3)]
        button = page.locator("#main thead th").nth(col).locator("button")
        button.click()
        assert all_column() == sorted(all_column())
        button.press("Enter")  # the keyboard sorts too: descending now
        assert all_column() == sorted(all_column(), reverse=True)
        assert page.locator("#main thead th").nth(col).get_attribute("aria-sort") == "descending"
        # Open ce's drill-down from its row; its class-2 accuracy is the mean over its seeds.
        page.locator("#main tbody tr", has_text="ce").first.locator("a.open").click()
        details = page.locator("details[open]")
        assert details.count() == 1
        cell = details.locator("table").first.locator("tbody tr").nth(2).locator("td").nth(3)
        want = np.mean([r["results"]["last"]["correct"][2] / 10 for r in recs if r["method"] == "ce"])
        assert float(cell.get_attribute("data-value")) == pytest.approx(100 * want)
        assert HOSTILE in details.inner_text()  # the recipe title and run folder, shown as text
        page.screenshot(path=str(tmp_path / "report.png"), full_page=False)
        browser.close()
    assert all(url.startswith(("file:", "data:")) for url in requests), requests  # offline
    assert (tmp_path / "report.png").stat().st_size > 10_000
