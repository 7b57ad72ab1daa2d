"""The report page opened in a real headless browser (chromium): it renders with its charts
(a screenshot far from blank, in many colours) and logs nothing to the console. The
detectors are checked first on pages known to be bad, so this test can fail."""

from __future__ import annotations

from pathlib import Path

from core.report.html import render_report
from tests.browser import render
from tests.core.report.test_html import _input


def test_the_detectors_see_a_blank_page_and_a_console_error(tmp_path: Path) -> None:
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>")
    noisy = tmp_path / "noisy.html"
    noisy.write_text("<!DOCTYPE html><html><body><p>x</p><script>console.error('boom');"
                     "</script></body></html>")
    assert render(blank, tmp_path).ink() < 0.001
    assert any("boom" in m for m in render(noisy, tmp_path).console)


def test_the_report_renders_its_charts_without_console_messages(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(render_report(_input()), encoding="utf-8")
    shown = render(page, tmp_path)
    assert shown.console == []
    assert shown.ink() > 0.05, shown.ink()  # header, cards, 8 charts on the page background
    assert shown.colours() > 100, shown.colours()  # anti-aliased lines and bars in colour
