"""The live viewer of `ns-train wys`, as a person sees it: headless Debian Chromium on the viewer page.

A wys run resumes the demo's edited run (conftest.demo_runs: its relevance field is trained and its relevance
targets are restored, so edits start at once) with the colorkey demonstration editor, the viewer on a free
localhost port. The browser must show the WYS controls, offer the relevance output (screenshot
checked in code: the relevance view spans low and high values), and the controls must act on the run: a prompt
typed in the page and applied ("Apply prompt") is the one the next edits use, "Pause edits" stops edits while
training goes on. The edits are observed through the run's saved views (edits/images/<view>.png) and its training
progress through its checkpoints (one every 10 steps).

Pace: every wait counts events (edits, checkpoints, page elements), with only a hang guard, so a slow machine
(the trainer and Chromium share two cores) only makes the tests slower; a control's update is flushed to the server
by the page's own timers before the test counts from it.
"""

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import browser
import numpy as np
import pytest
from conftest import SCENE
from PIL import Image
from wys_runs import HOLD_OUT, PROMPT, QUIET, cli

from nerf_edit.eval.synthetic import load_object_masks
from nerf_edit_methods.configs import LIGHT_CPU_ARGS

pytestmark = pytest.mark.slow  # live training runs in a headless browser

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"  # gitignored
NEW_PROMPT = "turn the red ball green"


@dataclass
class Live:
    """A live `ns-train wys` with its viewer page open in Chromium."""

    driver: object  # selenium WebDriver
    run: Path  # the run folder
    process: subprocess.Popen
    log: Path  # the process's output

    def wait(self, condition, what: str, interval: float = 0.25):
        """browser.wait_until, failing at once (with the log's end) if the run exits."""
        return browser.wait_until(condition, what, interval, process=self.process, log=self.log)


@pytest.fixture(scope="module")
def live(demo_runs, tmp_path_factory):
    """ns-train wys with the viewer, and the page open in Chromium."""
    base, env = demo_runs.edited, demo_runs.env
    driver = browser.chromium()  # before the run: a missing browser fails at once
    outputs = tmp_path_factory.mktemp("live")
    port = browser.free_port()
    log = outputs / "ns-train.log"
    command = [cli("ns-train"), "wys", "--data", str(SCENE), "--output-dir", str(outputs), "--timestamp", "live",
               *LIGHT_CPU_ARGS, *QUIET, "--vis", "viewer", "--viewer.websocket-port", str(port),
               "--viewer.websocket-host", "127.0.0.1", "--load-dir", str(base / "nerfstudio_models"),
               "--pipeline.editor", "colorkey", "--pipeline.prompt", PROMPT, "--pipeline.edit-rate", "2",
               # a typed prompt retargets every view, then edits wait this warm-up for the field to learn them
               "--pipeline.relevance-warmup-steps", "10",
               "--max-num-iterations", "100000", "--steps-per-save", "10",
               *HOLD_OUT]  # the demo's split: its checkpoint has one appearance embedding per training view
    with open(log, "w") as stream:
        process = subprocess.Popen(command, env=env, stdout=stream, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        browser.wait_for_page(port, process, log)
        driver.get(f"http://127.0.0.1:{port}/")
        live = Live(driver, outputs / "synthetic" / "wys" / "live", process, log)
        smallest_viewport_renders(live)
        yield live
    finally:
        driver.quit()
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def smallest_viewport_renders(live: Live) -> None:
    """What a CPU user does first: "Max res" (Render Options) to its least, 64 pixels. At nerfstudio's default
    of 512 every viewer render of a still camera is ~175 000 rays (~40 views of the 96² scene) on the trainer's
    cores, and the viewer renders again as training goes on."""
    from selenium.webdriver.common.keys import Keys

    live.wait(lambda: browser.slider_value(live.driver, "Max res") > 0, "the Max res slider")
    browser.slider_thumb(live.driver, "Max res").send_keys(Keys.HOME)
    flush_sends(live.driver)
    assert browser.slider_value(live.driver, "Max res") == 64


def flush_sends(driver) -> None:
    """Returns once the page's pending control updates are sent: viser throttles them with a 50 ms timer, and a
    later timer of the page's fires only after it (an order of events, not a wait of ours)."""
    driver.execute_async_script("setTimeout(arguments[arguments.length - 1], 200)")


def edit_times(run: Path) -> dict:
    return {p.stem: p.stat().st_mtime_ns for p in (run / "edits" / "images").glob("*.png")}


def saved_step(run: Path) -> int:
    """The step of the run's latest checkpoint (-1 before the first)."""
    steps = [int(re.search(r"step-(\d+)", p.name).group(1)) for p in (run / "nerfstudio_models").glob("step-*.ckpt")]
    return max(steps, default=-1)


def test_page_connects_and_shows_the_wys_controls(live):
    driver = live.driver
    live.wait(lambda: "Edit prompt" in browser.labels(driver), "the control panel (websocket connection)")
    shown = browser.labels(driver)
    for label in ("Edit prompt", "Text guidance", "Image guidance", "Relevance threshold τ", "Pause edits", "Output type"):
        assert label in shown, f"{label!r} not on the page; labels: {shown}"
    assert {"Reset edits", "Apply prompt"} <= set(browser.buttons(driver))
    assert browser.text_input(driver, "Edit prompt").get_attribute("value") == PROMPT
    assert browser.slider_value(driver, "Text guidance") == pytest.approx(7.5)
    assert browser.slider_value(driver, "Relevance threshold τ") == pytest.approx(0.5)
    assert not browser.labelled(driver, "Pause edits").is_selected()


def test_relevance_output_is_offered_and_shows_low_and_high_values(live):
    driver = live.driver
    options = browser.output_types(driver)
    assert "relevance" in options, options
    browser.choose(driver, "relevance")
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "viewer_relevance.png"

    def relevance_picture():
        values, distances = browser.colormap_values(browser.viewport(driver, screenshot), "viridis")
        # the viridis view (not rgb): most pixels are viridis colours; the ball high, much of the rest low
        # (the blur between them and the compositing of the 3D view give mid values and off-colours)
        shares = (distances < 40).mean(), (values > 0.7).mean(), (values < 0.3).mean()
        return shares if shares[0] > 0.5 and shares[1] > 0.005 and shares[2] > 0.3 else None

    shares = live.wait(relevance_picture, f"a relevance render in the viewport ({screenshot})", 2)
    print(f"screenshot: {screenshot} (viridis {shares[0]:.3f}, high {shares[1]:.3f}, low {shares[2]:.3f})")
    pixels = np.asarray(Image.open(screenshot).convert("RGB")).astype(float)
    assert pixels.std() > 20  # not blank


def test_prompt_typed_and_applied_in_the_page_is_used_at_the_next_edits(live):
    from selenium.webdriver.common.keys import Keys

    driver, run = live.driver, live.run
    box = browser.text_input(driver, "Edit prompt")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(NEW_PROMPT)
    flush_sends(driver)  # the typed text reaches the server before the button press
    browser.button(driver, "Apply prompt").click()
    flush_sends(driver)
    typed = time.time_ns()
    masks = load_object_masks(SCENE)

    def ball_colour(name: str) -> np.ndarray:
        image = np.asarray(Image.open(run / "edits" / "images" / f"{name}.png"), dtype=float) / 255
        return image[masks[f"images/{name}.png"] == 1].mean(0)

    before = [ball_colour(name) for name, written in edit_times(run).items() if written < typed]
    blue = [c[2] > c[0] + 0.15 and c[2] > c[1] + 0.15 for c in before]
    assert len(before) >= 10 and np.mean(blue) >= 0.8  # the start prompt's edits are blue

    def green_edit():  # an edit written after typing (the one in flight then may still be blue)
        colours = [ball_colour(name) for name, written in edit_times(run).items() if written > typed]
        return next((tuple(c) for c in colours if c[1] > c[0] + 0.15 and c[1] > c[2] + 0.15), None)

    live.wait(green_edit, "an edit with the prompt applied in the page (green ball)", 1)


def test_pause_edits_stops_edits_while_training_goes_on(live):
    driver, run = live.driver, live.run
    browser.labelled(driver, "Pause edits").click()
    flush_sends(driver)
    paused = time.time_ns()
    step = live.wait(lambda: saved_step(run) + 1, "a checkpoint", 1) - 1
    # 10 more steps are 5 edit periods (an edit every 2 steps); only the edit in flight at the click may land
    live.wait(lambda: saved_step(run) >= step + 10, "training to go on while edits are paused", 1)
    late = [name for name, written in edit_times(run).items() if written > paused]
    assert len(late) <= 1, f"{len(late)} views were edited while edits were paused"
    browser.labelled(driver, "Pause edits").click()  # and unpausing brings edits back
    flush_sends(driver)
    resumed, resumed_step = time.time_ns(), saved_step(run)

    def edited_since_resumed() -> bool:
        return any(t > resumed for t in edit_times(run).values())

    # Counted in training steps, not seconds (a loaded 2-core machine took > 30 s a step): checkpoints come every 10
    # steps, so two more mean at least 11 steps after the click, 5 edit periods, and an edit must have landed.
    live.wait(lambda: edited_since_resumed() or saved_step(run) >= resumed_step + 20,
                       "edits to resume (or 11+ more training steps) after unpausing", 1)
    assert edited_since_resumed(), f"no edit in the 11+ training steps after unpausing (from step {resumed_step})"
