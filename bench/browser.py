"""The live page's frames per second in headless Chromium, against the stream benchmark's client, in one run.

One service on 127.0.0.1 (the published models when ../shared/reference exists, else untrained ones of the same
shape); the same picture (scikit-image's astronaut on a 640x480 frame):
- the page (`GET /`) in Debian's headless Chromium, its fake camera playing that picture at --camera-fps; the
  page sends at the camera's pace with at most 2 frames in flight; frames/s = answers counted by the page over
  --seconds, after a warm-up; its own mean latency as it shows it;
- baseline: bench/serve.py's stream client (Python, one WebSocket, the next frame sent when the last is answered).
The page cannot beat the camera; the ratio to the camera's rate says whether it keeps up.

    python bench/browser.py [--camera-fps 30] [--seconds 10]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != REPOSITORY / "bench"]
sys.path.insert(0, str(REPOSITORY))
from bench.common import machine, print_report  # noqa: E402


def page_rate(url: str, camera: Path, seconds: float) -> tuple[float, str]:
    from tests.serve.test_service import browser, wait_for

    driver = browser(camera, allow_camera=True)
    try:
        driver.get(url + "/")
        wait_for(driver, "return window.faceray.framesAnswered >= 20")
        first, started = driver.execute_script("return window.faceray.framesAnswered"), time.monotonic()
        time.sleep(seconds)
        answered = driver.execute_script("return window.faceray.framesAnswered") - first
        rate = answered / (time.monotonic() - started)
        return rate, driver.execute_script("return document.getElementById('latency').textContent")
    finally:
        driver.quit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--camera-fps", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--frames", type=int, default=300, help="frames the stream client sends")
    arguments = parser.parse_args()
    from faceray.runtime import use_loopback_environment

    use_loopback_environment()
    from skimage import data

    from bench.serve import measure_streams, model_dirs
    from faceray.config import resolve_config
    from faceray.runtime import free_loopback_port, init_ray, shutdown_ray
    from faceray.serve.config import ServeConfig
    from faceray.serve.service import start_service, stop_service
    from tests.serve.test_service import CHROMEDRIVER, CHROMIUM, write_y4m

    if not (CHROMIUM and CHROMEDRIVER):
        sys.exit(
            "bench/browser.py needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
        )
    work = Path(tempfile.mkdtemp(prefix="faceray-bench-browser-"))
    frame = np.full((480, 640, 3), 100, np.uint8)
    frame[:, 64:576] = cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), (512, 480))
    camera = write_y4m(work / "camera.y4m", frame, frames=2 * arguments.camera_fps, fps=arguments.camera_fps)
    body = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()
    dirs = model_dirs(work)
    init_ray()
    url = start_service(
        resolve_config(
            ServeConfig,
            dict(emotion_model=str(dirs["emotion"]), gender_model=str(dirs["gender"]), port=free_loopback_port()),
        ),
        log=None,
    )
    try:
        stream, _ = measure_streams(url, [body] * arguments.frames, 1)
        page, page_latency = page_rate(url, camera, arguments.seconds)
        stream_again, _ = measure_streams(url, [body] * arguments.frames, 1)
    finally:
        stop_service()
        shutdown_ray()
    stream_fps = (stream["fps"] + stream_again["fps"]) / 2
    payload = {
        "benchmark": "browser",
        "machine": machine(),
        "camera_fps": arguments.camera_fps,
        "page_fps": round(page, 1),
        "page_latency": page_latency,
        "stream_client_fps": [stream["fps"], stream_again["fps"]],
        "stream_client_p50_ms": [stream["p50"], stream_again["p50"]],
        "ratio_page_to_camera": round(page / arguments.camera_fps, 3),
        "ratio_page_to_stream_client": round(page / stream_fps, 3),
    }
    rows = [
        ("picture", "astronaut on 640x480, JPEG 85"),
        (
            "page in headless Chromium",
            f"{page:6.1f} frames/s (camera {arguments.camera_fps}/s: ratio {page / arguments.camera_fps:.2f}); "
            f"latency shown {page_latency}",
        ),
        (
            "stream client (baseline)",
            f"{stream_fps:6.1f} frames/s (runs {stream['fps']}, {stream_again['fps']}); "
            f"ratio page/stream {page / stream_fps:.2f}",
        ),
    ]
    print_report("bench/browser", rows, payload)


if __name__ == "__main__":
    main()
