"""nerfstudio's own tools on a wys run (the demo's edited run, conftest.demo_runs): ns-eval completes (a hang
fails on the timeout), ns-export pointcloud writes a PLY, ns-viewer serves the edited scene and its relevance."""

import json
import os
import signal
import subprocess

import browser
import numpy as np
import pytest
from waiting import HANG_GUARD
from wys_runs import cli

pytestmark = pytest.mark.slow  # on the demo's trained runs


def test_ns_eval_completes_and_writes_psnr_and_ssim(demo_runs, tmp_path):
    output = tmp_path / "eval.json"
    result = subprocess.run([cli("ns-eval"), "--load-config", str(demo_runs.edited / "config.yml"),
                             "--output-path", str(output)], env=demo_runs.env, capture_output=True, text=True,
                            timeout=HANG_GUARD)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads(output.read_text())["results"]
    print("ns-eval:", {k: round(v, 3) for k, v in metrics.items() if isinstance(v, float)})
    assert metrics["psnr"] > 18 and 0 < metrics["ssim"] <= 1
    assert "lpips" not in metrics  # offline: AlexNet can't be had, the metric is dropped rather than NaN


def test_ns_export_pointcloud_writes_a_ply(demo_runs, tmp_path):
    # nerfacto predicts no normals, so nerfstudio's default --normal-method model_output stops with its own
    # message; open3d estimates them from the points (README).
    result = subprocess.run([cli("ns-export"), "pointcloud", "--load-config", str(demo_runs.edited / "config.yml"),
                             "--output-dir", str(tmp_path), "--num-points", "5000", "--num-rays-per-batch", "4096",
                             "--normal-method", "open3d"],
                            env=demo_runs.env, capture_output=True, text=True, timeout=HANG_GUARD)
    assert result.returncode == 0, result.stderr[-3000:]
    import open3d

    cloud = open3d.io.read_point_cloud(str(tmp_path / "point_cloud.ply"))
    points, colours = np.asarray(cloud.points), np.asarray(cloud.colors)
    print(f"ns-export: {len(points)} points")
    assert len(points) > 1000 and cloud.has_normals() and colours.shape == points.shape
    # the edit is in the export: the ball's points are blue now, no point is the ball's red
    red = (colours[:, 0] > 0.5) & (colours[:, 0] > 2 * colours[:, 1]) & (colours[:, 0] > 2 * colours[:, 2])
    assert red.mean() < 0.005


def test_ns_viewer_serves_the_run_with_its_relevance(demo_runs, tmp_path):
    driver = browser.chromium()
    port = browser.free_port()
    log = tmp_path / "ns-viewer.log"
    with open(log, "w") as stream:
        process = subprocess.Popen([cli("ns-viewer"), "--load-config", str(demo_runs.edited / "config.yml"),
                                    "--viewer.websocket-port", str(port), "--viewer.websocket-host", "127.0.0.1"],
                                   env=demo_runs.env, stdout=stream, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        browser.wait_for_page(port, process, log)
        driver.get(f"http://127.0.0.1:{port}/")
        browser.wait_until(lambda: "Output type" in browser.labels(driver), "the control panel")
        options = browser.output_types(driver)
        assert "relevance" in options, options
        browser.choose(driver, "relevance")
        # the relevance colormap controls follow (methods/model.py: RelevanceViewerColormap)
        browser.wait_until(lambda: not browser.labelled(driver, "Normalize").is_selected(),
                           "Normalize to switch off for relevance")
        pixels = browser.viewport(driver, tmp_path / "ns-viewer.png")
        assert len(pixels) > 1000 and pixels.astype(float).std() > 5, (len(pixels), pixels.std())  # not blank
    finally:
        driver.quit()
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
