"""The page for people, in a real headless Chromium (Debian's chromium and chromedriver)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as shown
from selenium.webdriver.support.ui import WebDriverWait

from spamd.ops.config import Secret
from spamd.ops.telemetry import Telemetry
from tests.conftest import SPAM
from tests.test_service import TOKEN, listener

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER), reason="chromium and chromium-driver missing (scripts/setup)"
)


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[webdriver.Chrome]:
    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must not download anything
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--disable-quic", f"--user-data-dir={tmp_path / 'profile'}",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


def classify_on_page(driver: webdriver.Chrome, text: str) -> None:
    driver.execute_script("document.getElementById('message').value = arguments[0];", text)
    driver.find_element(By.ID, "classify").click()


def test_the_page_scores_pasted_and_dropped_mail_and_shows_todays_counts(
    browser: webdriver.Chrome,
) -> None:
    telemetry = Telemetry()
    for action in ("move", "keep", "keep"):
        telemetry.message("a", action, "score")
    telemetry.correction("a", "ham")
    wait = WebDriverWait(browser, 10)
    with listener(telemetry) as web:
        browser.get(f"http://127.0.0.1:{web.port}/")
        wait.until(shown.text_to_be_present_in_element((By.ID, "stats"), "Today: 3 messages"))
        assert "1 junked, 1 corrections by users" in browser.find_element(By.ID, "stats").text

        classify_on_page(browser, SPAM[0].read_text())
        wait.until(shown.visibility_of_element_located((By.ID, "result")))
        assert browser.find_element(By.ID, "verdict").text == "spam"
        assert float(browser.find_element(By.ID, "score").text) >= float(
            browser.find_element(By.ID, "threshold").text
        )
        assert browser.find_elements(By.CSS_SELECTOR, "#up tr")  # the terms that pushed it

        classify_on_page(browser, "Are we still on for lunch on Thursday? Bring the slides.")
        wait.until(shown.text_to_be_present_in_element((By.ID, "verdict"), "not spam"))

        # Dropping an .eml file fills the box with its text.
        browser.execute_script(
            """const data = new DataTransfer();
            data.items.add(new File([arguments[0]], "m.eml", {type: "message/rfc822"}));
            document.getElementById("drop").dispatchEvent(
                new DragEvent("drop", {dataTransfer: data, bubbles: true}));""",
            SPAM[1].read_text(),
        )
        wait.until(lambda d: d.find_element(By.ID, "message").get_property("value"))
        assert browser.find_element(By.ID, "message").get_property("value") == SPAM[1].read_text()


def test_the_page_asks_for_the_token_when_one_is_set(browser: webdriver.Chrome) -> None:
    wait = WebDriverWait(browser, 10)
    with listener(token=Secret("value", TOKEN, "test")) as web:
        browser.get(f"http://127.0.0.1:{web.port}/")
        wait.until(shown.text_to_be_present_in_element((By.ID, "stats"), "need the token"))
        classify_on_page(browser, SPAM[0].read_text())
        wait.until(shown.text_to_be_present_in_element((By.ID, "error"), "bearer token"))
        browser.find_element(By.ID, "token").send_keys(TOKEN)
        browser.find_element(By.ID, "classify").click()
        wait.until(shown.text_to_be_present_in_element((By.ID, "verdict"), "spam"))
        assert browser.find_element(By.ID, "error").text == ""
