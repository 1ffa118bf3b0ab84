"""The status page and the catalog in a real headless Chromium (Debian's chromium and
chromium-driver, driven by selenium): they load with every backend and no console errors,
and a search, a sort, the next page and a repository's detail work as a person uses them.

Screenshots of every step are kept in ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import base64
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait

from .catalog_fixtures import FILE_SIZES, populated  # noqa: F401 (a fixture)

SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# Without the background-networking flags Chromium reaches out to other hosts on start.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,900"]


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            raise RuntimeError(f"{path} is missing: apt-get install chromium chromium-driver")
    profile = tempfile.mkdtemp(prefix="vault-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def open_page(browser: WebDriver, url: str) -> None:
    browser.get(url)
    browser.get_log("browser")  # drop what earlier pages logged


def click_and_load(browser: WebDriver, by: str, value: str) -> None:
    """Click what leads to another page, and wait until that page has replaced this one:
    ``click`` returns as soon as the click is sent, before the navigation is done."""
    old = browser.find_element(By.TAG_NAME, "html")
    browser.find_element(by, value).click()
    # Asked about an element while its page is being replaced, chromedriver sometimes answers
    # "unhandled inspector error" instead of "stale element": ask again.
    wait = WebDriverWait(browser, 30, ignored_exceptions=(WebDriverException,))
    wait.until(expected_conditions.staleness_of(old))
    wait.until(lambda b: b.execute_script("return document.readyState") == "complete")


def screenshot(browser: WebDriver, name: str) -> None:
    """The whole page, not just the window: the screenshots are for people to look at."""
    size = browser.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = browser.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}})
    (SCREENSHOTS / f"{name}.png").write_bytes(base64.b64decode(shot["data"]))


def no_console_errors(browser: WebDriver, shot: str) -> None:
    screenshot(browser, shot)
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []


def names(browser: WebDriver) -> list[str]:
    return [a.text for a in browser.find_elements(By.CSS_SELECTOR, "#items a.item")]


def test_the_status_page_loads_with_every_backend_and_no_console_errors(browser, populated):
    open_page(browser, f"{populated.vault.url}/")
    sections = browser.find_elements(By.CSS_SELECTOR, "section.backend")
    assert [s.get_attribute("id") for s in sections] == ["backend-files", "backend-pypi",
                                                         "backend-hub"]
    assert "file03.bin" in browser.find_element(By.ID, "top").text
    no_console_errors(browser, "status-desktop")


def test_the_status_page_fits_a_phone_screen(browser, populated):
    # A mobile viewport 375 px wide (headless windows have a larger minimum width).
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": 375, "height": 800, "deviceScaleFactor": 1, "mobile": True})
    try:
        open_page(browser, f"{populated.vault.url}/")
        for details in browser.find_elements(By.TAG_NAME, "details"):
            browser.execute_script("arguments[0].open = true", details)
        # A mobile browser widens the viewport to fit content that overflows (and zooms out).
        width = browser.execute_script("return document.documentElement.scrollWidth")
        wide = browser.execute_script(  # what overflows, to say so if it does
            "return [...document.querySelectorAll('body *')].filter(e => e.tagName != 'PRE' "
            "&& e.scrollWidth > 375).map(e => e.outerHTML.slice(0, 100))")
        assert width == 375, wide
        no_console_errors(browser, "status-phone")
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_a_search_narrows_the_list(browser, populated):
    open_page(browser, f"{populated.vault.url}/-/catalog?backend=files&per_page=5")
    assert len(names(browser)) == 5
    browser.find_element(By.ID, "q").send_keys("file1")
    click_and_load(browser, By.ID, "go")
    assert names(browser) == ["file10.bin", "file11.bin"]
    no_console_errors(browser, "catalog-search")


def test_sorting_by_size_reorders_the_list(browser, populated):
    open_page(browser, f"{populated.vault.url}/-/catalog?backend=files&per_page=5")
    assert names(browser) == sorted(FILE_SIZES)[:5]
    Select(browser.find_element(By.ID, "sort")).select_by_value("size")
    click_and_load(browser, By.ID, "go")
    biggest = sorted(FILE_SIZES, key=lambda n: (-FILE_SIZES[n], n))[:5]
    assert names(browser) == biggest
    no_console_errors(browser, "catalog-sorted-by-size")


def test_next_page_shows_the_next_entries(browser, populated):
    open_page(browser, f"{populated.vault.url}/-/catalog?backend=files&per_page=5")
    click_and_load(browser, By.ID, "next")
    assert names(browser) == sorted(FILE_SIZES)[5:10]
    assert "page 2 of 3" in browser.find_element(By.ID, "position").text
    no_console_errors(browser, "catalog-page-2")


def test_opening_a_repository_shows_its_tags(browser, populated):
    open_page(browser, f"{populated.vault.url}/-/catalog?backend=hub")
    click_and_load(browser, By.LINK_TEXT, "team/app")
    rows = browser.find_elements(By.CSS_SELECTOR, "#tags tbody tr")
    tags = {row.find_element(By.TAG_NAME, "td").text: row.text for row in rows}
    assert set(tags) == {"v1", "v2"} and all("linux/amd64" in t for t in tags.values())
    no_console_errors(browser, "catalog-repository")
