"""The report page and optuna-dashboard, opened in a real headless browser (Debian's chromium).

Checks that every image has loaded at its expected size and that the browser logged no
error, and, on a database of several samplers at several budgets, what the front chart draws;
screenshots are saved under $SKIPTUNE_TEST_ARTIFACTS (default: a temporary folder,
printed). Skipped with the reason where chromium or chromedriver is missing, unless
SKIPTUNE_REQUIRE_BROWSER=1 (CI), where that is a failure.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from skiptune.tuner.results._report import write_report
from skiptune.tuner.study import grid_artifacts
from tests.tuner.helpers import REPO, cli_env
from tests.tuner.report_helpers import searched_database

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync",
          "--window-size=1366,900")


def _missing() -> str | None:
    for tool in (CHROMIUM, CHROMEDRIVER):
        if not tool.is_file():
            return f"{tool} is not installed (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install '.[dev]' in a clone)"
    return None


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    reason = _missing()
    if reason is not None:
        if os.environ.get("SKIPTUNE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"SKIPTUNE_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in _FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def screenshots() -> Path:
    folder = Path(os.environ.get("SKIPTUNE_TEST_ARTIFACTS") or tempfile.mkdtemp(
        prefix="skiptune-browser-"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"browser screenshots in {folder}")
    return folder


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return searched_database(tmp_path_factory.mktemp("searched"))


def _check_images_and_console(driver: Any, *, expect: int) -> list[dict[str, Any]]:
    """Every <img> complete at its natural size; no SEVERE browser log entry."""
    images = driver.execute_script(
        "return Array.from(document.images).map(i => ({complete: i.complete, "
        "width: i.naturalWidth, height: i.naturalHeight, "
        "expected: [i.getAttribute('width'), i.getAttribute('height')]}));")
    assert len(images) >= expect, f"only {len(images)} images on the page"
    for image in images:
        assert image["complete"] and image["width"] > 0, f"image did not load: {image}"
    severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, f"console errors: {severe}"
    return list(images)


def test_the_report_shows_every_grid_at_its_size_without_console_errors(
    browser: Any, searched: Path, tmp_path: Path, screenshots: Path
) -> None:
    page = write_report(searched, tmp_path / "report.html")
    browser.get(page.as_uri())
    images = _check_images_and_console(browser, expect=2)
    for image in images:
        assert [str(image["width"]), str(image["height"])] == image["expected"]
    browser.save_screenshot(str(screenshots / "report.png"))
    assert (screenshots / "report.png").stat().st_size > 0


# What the page draws, as the browser laid it out: the front chart's plot area, its lines'
# computed fill, its series and the centre of every point, and each grid's width on screen.
_DRAWN = """
const svg = document.querySelector('svg.chart');
const box = e => { const r = e.getBoundingClientRect();
                   return [r.left, r.top, r.right, r.bottom]; };
return {
  area: box(svg.querySelector('.plot-area')),
  fills: Array.from(svg.querySelectorAll('polyline')).map(p => getComputedStyle(p).fill),
  series: Array.from(svg.querySelectorAll('g.series')).map(
    g => [g.dataset.sampler, g.dataset.kind, g.querySelectorAll('polyline').length]),
  points: Array.from(svg.querySelectorAll('g.series .point')).map(p => {
    const [l, t, r, b] = box(p);
    return [p.closest('g').dataset.sampler, p.closest('g').dataset.kind, (l + r) / 2,
            (t + b) / 2]; }),
  grids: Array.from(document.querySelectorAll('figure img')).map(
    i => i.getBoundingClientRect().width),
  page: document.documentElement.clientWidth,
};
"""


def test_several_samplers_draw_one_unfilled_series_each_inside_the_plot(
    browser: Any, several_samplers_db: Path, tmp_path: Path, screenshots: Path
) -> None:
    page = write_report(several_samplers_db, tmp_path / "several.html")
    browser.get(page.as_uri())
    _check_images_and_console(browser, expect=8)
    drawn = browser.execute_script(_DRAWN)
    browser.save_screenshot(str(screenshots / "report_several_samplers.png"))
    print(f"screenshot: {screenshots / 'report_several_samplers.png'}")
    # One series per sampler and kind, each one line through its two budgets, never filled.
    assert sorted(drawn["series"]) == [["heun", "baseline", 1], ["heun", "tuned", 1],
                                       ["ipndm", "baseline", 1], ["ipndm", "tuned", 1]]
    assert drawn["fills"] == ["none"] * 4
    left, top, right, bottom = drawn["area"]
    tuned = [p for p in drawn["points"] if p[1] == "tuned"]
    assert sorted(p[0] for p in tuned) == ["heun", "heun", "ipndm", "ipndm"]
    for sampler, kind, x, y in drawn["points"]:
        assert left <= x <= right and top <= y <= bottom, (sampler, kind, x, y, drawn["area"])
    # The grids take a good part of the page, not 160 px of 1,366.
    assert min(drawn["grids"]) >= drawn["page"] / 3, drawn["grids"]
    assert (screenshots / "report_several_samplers.png").stat().st_size > 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(url: str, server: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"skiptune dashboard exited with {server.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"skiptune dashboard did not answer at {url} in {seconds} s")


def test_a_dashboard_trial_page_shows_its_grid(
    browser: Any, searched: Path, screenshots: Path
) -> None:
    import optuna

    from skiptune.storage import open_storage

    with open_storage(searched, read_only=True) as storage:
        (study,) = [optuna.load_study(study_name=s.study_name, storage=storage.optuna_storage())
                    for s in optuna.get_all_study_summaries(storage.optuna_storage())]
        trial = next(t for t in study.trials if grid_artifacts(t))
        study_id = study._study_id
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", "from skiptune import cli; cli.main()", "dashboard", "--db",
         str(searched), "--host", "127.0.0.1", "--port", str(port)],
        env=cli_env(), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_for(f"{base}/api/studies", server)
        browser.get(f"{base}/dashboard/studies/{study_id}/trials?numbers={trial.number}")
        deadline = time.monotonic() + 30
        loaded: list[Any] = []
        while time.monotonic() < deadline and not loaded:
            loaded = browser.execute_script(
                "return Array.from(document.images).filter(i => i.complete && i.naturalWidth"
                " > 0 && i.src.includes('/artifacts/')).map(i => [i.naturalWidth, "
                "i.naturalHeight]);")
            time.sleep(0.5)
        browser.save_screenshot(str(screenshots / "dashboard_trial.png"))
        assert loaded, "the trial's grid did not load on its dashboard page"
        assert all(w == h == 610 for w, h in loaded)
        _check_images_and_console(browser, expect=1)
    finally:
        server.terminate()
        server.wait(timeout=30)
