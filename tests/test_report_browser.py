"""The Snakemake HTML report in real headless Chromium: loads cleanly, every result renders.

The report under test is ``$ROBUSTMAP_REPORT`` when set (e.g. ``results/report.html`` of the
default run); otherwise the report of the real workflow run that conftest.py makes. The
test clicks through every report category, opens every result, and checks that images decode
(``naturalWidth > 0``) and HTML tables show rows, with no SEVERE console message. Screenshots go to
``$ROBUSTMAP_SCREENSHOTS`` (default: the test's temporary folder).
"""

import os
import shutil
import time
from pathlib import Path

import pytest

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.common.exceptions import ElementClickInterceptedException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
)
WAIT_S = 20


@pytest.fixture(scope="module")
def report_html(request) -> Path:
    """The report to test: $ROBUSTMAP_REPORT, or the one of the real workflow run (conftest)."""
    given = os.environ.get("ROBUSTMAP_REPORT")
    if given:
        return Path(given).resolve()
    return request.getfixturevalue("workflow_run") / "results" / "report.html"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tmp_path_factory.mktemp("chromium-profile")
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--window-size=1400,1000",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def screenshots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("ROBUSTMAP_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def severe(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def open_report(driver, report: Path) -> None:
    driver.get(report.as_uri())
    WebDriverWait(driver, WAIT_S).until(
        lambda d: (
            d.execute_script("return typeof results === 'object'")
            and d.find_elements(By.LINK_TEXT, "Workflow")
        )
    )


def test_report_loads_and_every_result_renders(report_html, browser, tmp_path):
    shots = screenshots(tmp_path)
    open_report(browser, report_html)
    categories = browser.execute_script("return categories")
    expected = browser.execute_script("return Object.keys(results)")
    assert categories and expected, "the report lists no result"
    home = shots / "report_home.png"
    browser.save_screenshot(str(home))
    problems = severe(browser)
    seen = []
    figure_shot = shots / "report_figure.png"
    figure_shot.unlink(missing_ok=True)
    for category, subcategories in sorted(categories.items()):
        for subcategory, paths in sorted(subcategories.items()):
            open_report(browser, report_html)
            click_when_settled(browser, lambda d, c=category: d.find_element(By.LINK_TEXT, c))
            if not eye_buttons(browser):
                click_when_settled(
                    browser, lambda d, s=subcategory: d.find_element(By.LINK_TEXT, s)
                )
            count = len(paths)
            WebDriverWait(browser, WAIT_S).until(lambda d, n=count: len(eye_buttons(d)) == n)
            for index in range(len(paths)):
                click_when_settled(browser, lambda d, i=index: eye_buttons(d)[i])
                seen.append(shown_result(browser, [p for p in paths if p not in seen]))
                if seen[-1].endswith(".png") and not figure_shot.exists():
                    browser.save_screenshot(str(figure_shot))
            problems += severe(browser)
    shot = shots / "report_result.png"
    browser.save_screenshot(str(shot))
    print(f"report {report_html}: {len(seen)} results rendered; screenshots in {shots}")
    assert not problems, f"SEVERE console messages: {problems}"
    assert sorted(seen) == sorted(expected)
    assert home.stat().st_size > 0 and shot.stat().st_size > 0


def test_the_first_page_opens_on_the_findings_and_the_leaderboard(report_html, browser, tmp_path):
    """Findings at the top of the landing page (no empty band above them: the page's style
    top-aligns Snakemake's vertically centred box), then the leaderboard with a row per model."""
    open_report(browser, report_html)
    browser.save_screenshot(str(screenshots(tmp_path) / "report_first_page.png"))
    headings = browser.execute_script(
        "return Array.from(document.querySelectorAll('#app .prose h1, #app .prose h2'))"
        ".map(h => [h.textContent.trim(), h.getBoundingClientRect().top])"
    )
    titles = [title for title, _ in headings]
    assert titles[:2] == ["Findings", "Leaderboard"], titles
    assert "Provenance" in titles
    top = headings[0][1]
    assert 0 <= top < 100, f"the findings start {top} px from the top (a band, or cut off)"
    items = browser.find_elements(By.CSS_SELECTOR, "#app .prose ul li")
    assert any(item.text.startswith("Models.") for item in items)
    models = browser.execute_script(
        "return Array.from(document.querySelectorAll('table.robustmap-leaderboard tbody tr'))"
        ".map(r => r.cells[1].textContent)"
    )
    expected = browser.execute_script(
        "return Object.keys(results).filter(p => p.endsWith('panels.png'))"
        ".map(p => p.split('/').slice(-2)[0])"
    )
    assert sorted(models) == sorted(expected)
    assert not severe(browser)


def click_when_settled(driver, find) -> None:
    """Click the element ``find(driver)`` returns, as a user would, once nothing covers it.

    The report's menu slides in with a CSS transition; while it moves, a neighbouring link can
    sit over the target and take the click. Retrying a real click (not a script click) until the
    menu has settled keeps the test honest about what a user can reach.
    """

    def clicked(d) -> bool:
        try:
            find(d).click()
        except ElementClickInterceptedException:
            return False
        return True

    WebDriverWait(driver, WAIT_S, poll_frequency=0.2).until(clicked)


def eye_buttons(driver):
    return driver.find_elements(By.CSS_SELECTOR, "tr a[iconname=eye]")


def shown_result(driver, candidates: list[str]) -> str:
    """Wait until one of ``candidates`` is displayed and rendered; return its path.

    Images must decode (``naturalWidth > 0``); HTML results must show text in their frame.
    Results are matched by their embedded data URI, so equal file names cannot be confused.
    """
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        for path in candidates:
            sizes = driver.execute_script(
                "const uri = results[arguments[0]].data_uri;"
                "return Array.from(document.images).filter(i => i.src === uri)"
                ".map(i => i.complete ? i.naturalWidth : -1)",
                path,
            )
            assert 0 not in sizes, f"{path}: the image does not decode"
            if sizes and all(size > 0 for size in sizes):
                return path
            frames = driver.execute_script(
                "const uri = results[arguments[0]].data_uri;"
                "return Array.from(document.querySelectorAll('iframe'))"
                ".filter(f => f.src === uri)",
                path,
            )
            if frames:
                driver.switch_to.frame(frames[0])
                text = driver.find_element(By.TAG_NAME, "body").text
                driver.switch_to.default_content()
                if text.strip():
                    return path
        time.sleep(0.2)
    raise AssertionError(f"none of {candidates} was displayed within {WAIT_S} s")
