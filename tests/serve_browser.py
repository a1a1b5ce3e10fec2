"""Headless Chromium for the `serve` page tests (tests/test_serve_*.py), via Selenium.

`chromium()` yields a WebDriver, or skips the test saying why: on backends other than
`BROWSER_BACKEND` (the page's JavaScript and HTML are the same on every backend, and
tests/test_serve_*.py check the JSON API the page calls on each; a browser start and
its page visits cost about 6 s a test), or when something is missing: the
`selenium` package (the dev extra) or Debian's `chromium` and `chromium-driver`
(`apt-get install -y chromium chromium-driver`; `.ci/run` installs them). The browser
gets a fresh profile and every flag that keeps it off the network (the tests only talk
to 127.0.0.1).

`KERAS_TRIPLET_SCREENSHOTS=DIR` makes `screenshot(driver, name)` save `DIR/<name>.png`
(how the READMEs' pictures are made); otherwise it does nothing.
"""

import contextlib
import io
import os
import shutil
import tempfile

import pytest

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = (
    "--headless",
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
    "--window-size=1000,760",
)
WAIT_SECONDS = 60
BROWSER_BACKEND = "tensorflow"


@contextlib.contextmanager
def chromium():
    import keras

    if keras.backend.backend() != BROWSER_BACKEND:
        pytest.skip(
            f"the browser test runs on the {BROWSER_BACKEND} backend only: the page does not "
            "depend on the backend, and its JSON API is tested on every backend"
        )
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install selenium; it is in the dev extra)")
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not (os.path.isfile(p) and os.access(p, os.X_OK))]
    if missing:
        pytest.skip(
            f"no headless browser: {', '.join(missing)} not found "
            "(apt-get install -y chromium chromium-driver; .ci/run installs them)"
        )
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(driver, css):
    """The element matching `css`, once the page shows it (or a timeout error)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_SECONDS).until(
        expected_conditions.visibility_of_element_located((By.CSS_SELECTOR, css))
    )


def find(driver, css):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, css)


def find_all(driver, css):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, css)


def screenshot(driver, name):
    """Saves the page as `$KERAS_TRIPLET_SCREENSHOTS/<name>.png` (a palette PNG, small
    enough for a README), when that variable is set."""
    folder = os.environ.get("KERAS_TRIPLET_SCREENSHOTS")
    if not folder:
        return None
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    image = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    path = os.path.join(folder, f"{name}.png")
    image.quantize(colors=64, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return path
