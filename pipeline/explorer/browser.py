"""Drive the explorer in a real browser: headless Chromium through Selenium.

The browser test (``tests/test_explore.py``) and the explorer's screenshot (docs/usage.md) use these helpers:

``python -m pipeline.explorer.browser --out docs/explorer.png``  (models/dcign, models/baseline, data/test)

Chromium and its driver are Debian's packages ``chromium`` and ``chromium-driver``
(``/usr/bin/chromium``, ``/usr/bin/chromedriver``); Selenium is pointed at them, so it never
downloads a browser or a driver (and ``SE_OFFLINE`` tells Selenium Manager so).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import socket
import time
from pathlib import Path

import click

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROME_ARGS = (
    "--headless=new",
    "--no-sandbox",  # root in a container has no user namespace for Chromium's sandbox
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",  # no update checks, no metrics: the machine may be offline
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--force-device-scale-factor=1",
)


def missing_browser() -> str | None:
    """Why the browser cannot run here, or None when it can."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not path.exists():
            return f"{path} is missing (apt-get install {package})"
    for module in ("selenium", "gradio"):
        if importlib.util.find_spec(module) is None:  # found, not imported: Gradio takes seconds to import
            return f"{module} is not installed (pip install -e '.[explore]')"
    return None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def chrome(width: int = 1400, height: int = 1300):
    """A headless Chromium driven by Debian's chromedriver."""
    os.environ.setdefault("SE_OFFLINE", "true")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (*CHROME_ARGS, f"--window-size={width},{height}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


class Page:
    """The explorer's page in a browser, found by the elem_ids that :func:`pipeline.explorer.page.layout` sets."""

    def __init__(self, driver, url: str, timeout: float = 60.0):
        self.driver, self.url, self.timeout = driver, url, timeout

    def wait(self, condition, what: str):
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(self.driver, self.timeout, poll_frequency=0.1).until(
            lambda d: condition(), message=f"waited {self.timeout:g} s for {what}"
        )

    def _find(self, css: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def _present(self, css: str):
        from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

        try:
            return self._find(css)
        except (NoSuchElementException, StaleElementReferenceException):
            return None

    def open(self) -> Page:
        """Load the page and wait for its first face (a render label or a message)."""
        self.driver.get(self.url)
        self.wait(lambda: self.text("render-label") or self.message(), "the first face")
        return self

    def text(self, elem_id: str) -> str:
        el = self._present(f"#{elem_id}")
        return el.text.strip() if el is not None else ""

    def value(self, elem_id: str) -> str:
        """A textbox's text."""
        el = self._present(f"#{elem_id} textarea")
        return (el.get_attribute("value") or "").strip() if el is not None else ""

    def message(self) -> str:
        return self.value("explore-error")

    def choose(self, elem_id: str, option: str) -> None:
        """Pick an option of a dropdown, as a mouse user does: open it, click the option."""
        self._find(f"#{elem_id} input").click()
        self.wait(lambda: self._present(f'li[role=option][aria-label="{option}"]'), f"option {option!r}")
        self._find(f'li[role=option][aria-label="{option}"]').click()

    def image_src(self, elem_id: str) -> str:
        el = self._present(f"#{elem_id} img")
        return (el.get_attribute("src") or "") if el is not None else ""

    def slider_value(self, name: str) -> float:
        return float(self._find(f"#{name}-slider input[type=number]").get_attribute("value"))

    def press(self, name: str, key: str, times: int = 1) -> None:
        """Keys on a slider's range input, as a keyboard user moves it (each press is an input event)."""
        slider = self._find(f"#{name}-slider input[type=range]")
        slider.send_keys(key * times)

    def wait_text(self, elem_id: str, fragment: str) -> str:
        self.wait(lambda: fragment in self.text(elem_id), f"{fragment!r} in #{elem_id}")
        return self.text(elem_id)

    def wait_image_change(self, elem_id: str, old: str) -> str:
        self.wait(lambda: self.image_src(elem_id) not in ("", old), f"a new image in #{elem_id}")
        return self.image_src(elem_id)

    def wait_image(self, elem_id: str) -> str:
        self.wait(lambda: self.image_src(elem_id), f"an image in #{elem_id}")
        return self.image_src(elem_id)

    def click(self, elem_id: str) -> None:
        self._find(f"#{elem_id}").click()

    def screenshot(self, path: str | Path) -> Path:
        """The whole page: the window grows to the page's height first."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        size = self.driver.get_window_size()
        for _ in range(3):  # a resize re-lays the page out, which may change its height
            page, inner = self.driver.execute_script(
                "return [document.documentElement.scrollHeight, window.innerHeight]"
            )
            if page <= inner:
                break
            self.driver.set_window_size(size["width"], self.driver.get_window_size()["height"] + page - inner)
            time.sleep(0.5)
        self.driver.execute_script("window.scrollTo(0, 0)")
        if not self.driver.save_screenshot(str(path)):
            raise OSError(f"{path}: the browser could not write the screenshot")
        return path


def image_bytes(src: str) -> bytes:
    """The bytes behind an image's src (the app's file URL) as the browser fetched them."""
    import urllib.request

    with urllib.request.urlopen(src, timeout=30) as r:  # noqa: S310 - the app's own local URL
        return r.read()


# --- the explorer's screenshot --------------------------------------------------------------------
@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--checkpoint", type=click.Path(path_type=Path), default=Path("models/dcign"), show_default=True)
@click.option("--baseline", type=click.Path(path_type=Path), default=Path("models/baseline"), show_default=True)
@click.option("--test-data", type=click.Path(file_okay=False, path_type=Path), default=Path("data/test"))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("docs/explorer.png"))
@click.option("--steps", type=click.IntRange(0, 400), default=170, show_default=True, help="Azimuth slider steps.")
def main(checkpoint, baseline, test_data, out, steps):
    """Start the explorer, move the azimuth slider in headless Chromium, traverse it, write a screenshot."""
    import logging

    from selenium.webdriver.common.keys import Keys

    from pipeline.explorer.explorer import log, opened
    from pipeline.explorer.page import build_app, launch

    reason = missing_browser()
    if reason:
        raise click.ClickException(reason)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("pipeline.explorer.browser: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    with opened(checkpoint, None, baseline, None, test_data) as explorer:
        demo = build_app(explorer)
        url = launch(demo, port=free_port())
        try:
            with chrome() as driver:
                page = Page(driver, url).open()
                old = page.image_src("decoded-image")
                page.press("azimuth", Keys.ARROW_RIGHT, steps)
                page.wait_text("render-label", f"azimuth {page.slider_value('azimuth'):.1f}°")
                page.wait_image_change("decoded-image", old)
                page.click("traverse")
                page.wait_image("traverse-image")
                time.sleep(1.0)  # let the GIF's first frames draw
                tmp = page.screenshot(out.with_suffix(".tmp.png"))
                shutil.move(tmp, out)
        finally:
            demo.close()
    click.echo(f"{out}: screenshot of {url}")


if __name__ == "__main__":
    main()
