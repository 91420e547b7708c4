"""Selenium helpers for the dashboard tests: waiting with a screenshot and the page text on timeout, full-page
screenshots into ``build/screenshots/``, file drag-and-drop, the confirm dialog, signing in, and the browser
console's script errors.

Importing this module skips the importing test module when Debian's chromium and chromium-driver or selenium
are missing; so the test modules import it before anything from selenium, and take By, EC and Select from here.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.dashboard.stack import TOKEN
from tests.e2e.harness import REPO

__all__ = [
    "CHROMEDRIVER", "CHROMIUM", "EC", "SCREENSHOTS", "By", "Select", "Service", "WebDriverWait", "assert_no_script_errors",
    "confirm", "drop_file", "shot", "sign_in", "text_of", "wait", "webdriver",
]

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    pytest.skip("the browser tests need Debian's chromium and chromium-driver (make system-deps)", allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver", reason="the browser tests need selenium (pip install -e '.[dev]')")
from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

SCREENSHOTS = REPO / "build" / "screenshots"


def wait(driver: Any, condition: Any, timeout: float = 15, message: str = "") -> Any:
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)
    except TimeoutException:
        shot(driver, "failure")
        raise AssertionError(f"timed out: {message}; page text:\n{driver.find_element(By.TAG_NAME, 'body').text[:2000]}") from None


def text_of(driver: Any, css: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, css).text


def shot(driver: Any, name: str) -> Path:
    """A full-page screenshot: the window grows to the document's height first."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    chrome = driver.get_window_size()["height"] - driver.execute_script("return window.innerHeight")
    height = driver.execute_script("return Math.min(3200, document.documentElement.scrollHeight)")
    driver.set_window_size(1360, max(900, height + chrome))
    time.sleep(0.25)
    path = SCREENSHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    driver.set_window_size(1360, 900)
    return path


def drop_file(driver: Any, zone_css: str, path: Path) -> None:
    """Drag-and-drop of a local file onto ``zone_css``: a DataTransfer holding the file, then the real events."""
    holder = driver.execute_script(
        "const i = document.createElement('input'); i.type = 'file'; i.id = '__e2e_drop'; i.hidden = true;"
        "document.body.append(i); return i;"
    )
    holder.send_keys(str(path))
    driver.execute_script(
        "const i = document.getElementById('__e2e_drop'), zone = document.querySelector(arguments[0]);"
        "const dt = new DataTransfer(); dt.items.add(i.files[0]);"
        "for (const t of ['dragenter', 'dragover', 'drop'])"
        "  zone.dispatchEvent(new DragEvent(t, {bubbles: true, cancelable: true, dataTransfer: dt}));"
        "i.remove();",
        zone_css,
    )


def confirm(driver: Any, accept: bool = True) -> None:
    wait(driver, lambda d: d.find_element(By.ID, "confirm-dialog").get_attribute("open") is not None, 5, "confirm dialog")
    driver.find_element(By.ID, "confirm-ok" if accept else "confirm-cancel").click()
    wait(driver, lambda d: d.find_element(By.ID, "confirm-dialog").get_attribute("open") is None, 5, "dialog closed")


def sign_in(driver: Any, base: str) -> None:
    driver.get(f"{base}/ui/login")
    field = wait(driver, EC.element_to_be_clickable((By.ID, "token")))
    field.clear()
    field.send_keys(TOKEN)
    driver.find_element(By.ID, "login-submit").click()
    wait(driver, EC.url_contains("/ui/models"), 10, "redirect after sign-in")


def assert_no_script_errors(driver: Any) -> None:
    bad = [e["message"] for e in driver.get_log("browser")
           if e["level"] == "SEVERE" and ("Uncaught" in e["message"] or "Content Security Policy" in e["message"])]
    assert not bad, bad
