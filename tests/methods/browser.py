"""Drive the nerfstudio (viser) viewer page in headless Debian Chromium, for the viewer tests.

Selectors come from viser's client (viser/client/src/components): every labelled control renders
`<label for=ID>Label</label>` beside its input; checkboxes, dropdowns (Mantine Select) and sliders carry that id;
buttons are <button> with their label as text; dropdown options are role="option"; sliders role="slider".
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Callable, List, Optional

import numpy as np
import pytest
from waiting import HANG_GUARD, wait_for

CHROMEDRIVER = "/usr/bin/chromedriver"
INSTALL_HINT = "run 'apt-get install -y chromium chromium-driver' (as scripts/setup.sh does) and pip install selenium"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_page(port: int, process: subprocess.Popen, log: Path) -> None:
    """Until the viewer answers HTTP on `port`; fails with the process's log if it dies (or hangs)."""
    began = time.monotonic()
    while time.monotonic() - began < HANG_GUARD:
        if process.poll() is not None:
            pytest.fail(f"the viewer process exited ({process.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"hang: the viewer did not serve http://127.0.0.1:{port}/ in {HANG_GUARD:.0f} s:\n{log.read_text()[-3000:]}")


def chromium():
    """A headless Chromium driven through Debian's chromedriver; fails (never skips) when it can't be had."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail(f"selenium is not installed: {INSTALL_HINT}", pytrace=False)
    browser = shutil.which("chromium")
    if browser is None or not Path(CHROMEDRIVER).exists():
        pytest.fail(f"Chromium is not installed: {INSTALL_HINT}", pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1200,800", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_script_timeout(HANG_GUARD)  # page scripts wait for the page's own events; only a hang stops them
    driver.set_page_load_timeout(HANG_GUARD)
    return driver


def wait_until(condition: Callable[[], object], what: str, interval: float = 0.25, process=None,
               log: Optional[Path] = None):
    """`waiting.wait_for` for the page: an element not there yet (the page is still being built) is "not yet"; the
    server `process` exiting fails at once, with the end of its `log`."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    return wait_for(condition, what, process, interval, ignore=(NoSuchElementException, StaleElementReferenceException),
                    log=log)


def labelled(driver, label: str):
    """The control whose label reads `label` (through the label's `for` id)."""
    from selenium.webdriver.common.by import By

    element = driver.find_element(By.XPATH, f"//label[normalize-space()='{label}']")
    return driver.find_element(By.ID, element.get_attribute("for"))


def button(driver, label: str):
    """The button whose text reads `label`."""
    from selenium.webdriver.common.by import By

    return driver.find_element(By.XPATH, f"//button[normalize-space()='{label}']")


def texts(driver, selector: str) -> List[str]:
    """The text of every element matching a CSS selector, read in one go (React re-renders make handles stale)."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.textContent.trim())", selector)


def labels(driver) -> List[str]:
    return texts(driver, "label")


def buttons(driver) -> List[str]:
    return texts(driver, "button")


def text_input(driver, label: str):
    """A text box (viser's TextInput has no id: the input in the row of its label)."""
    from selenium.webdriver.common.by import By

    return driver.find_element(By.XPATH, f"//label[normalize-space()='{label}']/ancestor::*[.//input][1]//input")


def slider_thumb(driver, label: str):
    """The thumb of the slider labelled `label` (it takes the keyboard: arrows step, Home/End go to the ends)."""
    from selenium.webdriver.common.by import By

    return driver.find_element(
        By.XPATH, f"//label[normalize-space()='{label}']/ancestor::*[.//*[@role='slider']][1]//*[@role='slider']")


def slider_value(driver, label: str) -> float:
    return float(slider_thumb(driver, label).get_attribute("aria-valuenow"))


def open_dropdown(driver, label: str) -> List[str]:
    """Click the dropdown labelled `label`; -> the options it offers."""
    from selenium.webdriver.common.by import By

    labelled(driver, label).click()
    wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, "[role='option']"), f"the {label!r} options")
    return texts(driver, "[role='option']")


def output_types(driver) -> List[str]:
    """Open the "Output type" dropdown once the viewer has filled it (after its first render); -> its options."""
    from selenium.webdriver.common.keys import Keys

    def filled():
        options = open_dropdown(driver, "Output type")
        if "rgb" in options:
            return options
        driver.find_element("tag name", "body").send_keys(Keys.ESCAPE)  # close it, look again later
        return None

    return wait_until(filled, "the output types (the viewer fills them after its first render)", 2)


def choose(driver, option: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.XPATH, f"//*[@role='option'][normalize-space()='{option}']").click()


# Points of a grid over the largest canvas (the 3D view) where a canvas is what the page shows (the 3D view or
# viser's transparent 2D drawing canvas above it), not the control panel or another overlay: [[x, y], ...].
_VISIBLE_CANVAS_POINTS = """
const canvas = Array.from(document.querySelectorAll('canvas')).sort((a, b) =>
    b.clientWidth * b.clientHeight - a.clientWidth * a.clientHeight)[0];
const box = canvas.getBoundingClientRect(), step = arguments[0], points = [];
for (let y = box.top + step / 2; y < box.bottom; y += step)
  for (let x = box.left + step / 2; x < box.right; x += step)
    if (document.elementFromPoint(x, y) instanceof HTMLCanvasElement) points.push([x, y]);  // 3D or its 2D overlay
return points;
"""


def viewport(driver, screenshot: Path, step: int = 4) -> np.ndarray:
    """Saves a screenshot of the page to `screenshot`; -> the 3D view's visible pixels [N, 3] uint8 (sampled every
    `step` CSS pixels, overlays such as the control panel left out)."""
    from PIL import Image

    points = np.array(driver.execute_script(_VISIBLE_CANVAS_POINTS, step), dtype=float).reshape(-1, 2)
    driver.save_screenshot(str(screenshot))
    page = np.asarray(Image.open(screenshot).convert("RGB"))
    scale = driver.execute_script("return window.devicePixelRatio") or 1
    columns = np.clip((points[:, 0] * scale).astype(int), 0, page.shape[1] - 1)
    rows = np.clip((points[:, 1] * scale).astype(int), 0, page.shape[0] - 1)
    return page[rows, columns]


def colormap_values(pixels: np.ndarray, colormap: str) -> tuple[np.ndarray, np.ndarray]:
    """Invert a matplotlib colormap: for each pixel [N, 3] uint8, the value in [0, 1] of its nearest colormap
    colour and the RGB distance to it (large for pixels that are not colormap colours)."""
    from matplotlib import colormaps

    table = (colormaps[colormap](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.float32)  # [256, 3]
    distances = np.linalg.norm(pixels[:, None, :].astype(np.float32) - table[None], axis=-1)  # [N, 256]
    return distances.argmin(1) / 255.0, distances.min(1)
