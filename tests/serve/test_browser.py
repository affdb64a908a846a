"""The live page in a real headless Chromium (Debian's chromium + chromium-driver, driven by Selenium): a fake camera
plays a real photo, the page streams it to /v1/stream and draws the faces; a refused camera gets its message."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
ARTEFACTS = Path(os.environ.get("FACERAY_TEST_ARTEFACTS", "test-artefacts"))

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="Debian's chromium and chromium-driver are not installed "
                       "(.ci/run installs them: apt-get install chromium chromium-driver)"),
]


def write_y4m(path: Path, frame_bgr: np.ndarray, frames: int = 10, fps: int = 10) -> Path:
    """A Y4M video (the format Chromium's fake camera reads) repeating one BGR picture; 4:2:0, even sides."""
    height, width = (side - side % 2 for side in frame_bgr.shape[:2])
    planar = cv2.cvtColor(np.ascontiguousarray(frame_bgr[:height, :width]), cv2.COLOR_BGR2YUV_I420)
    with open(path, "wb") as handle:
        handle.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            handle.write(b"FRAME\n" + planar.tobytes())
    return path


def browser(camera_file: Path | None, allow_camera: bool):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,800",
                     "--use-fake-device-for-media-stream", "--disable-gpu"):
        options.add_argument(argument)
    if allow_camera:
        options.add_argument("--use-fake-ui-for-media-stream")
    if camera_file is not None:
        options.add_argument(f"--use-file-for-fake-video-capture={camera_file}")
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def wait_for(driver, script: str, timeout_s: float = 60.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for: {script}; state: {driver.execute_script('return window.faceray')}")


def test_the_page_labels_a_real_face_from_the_camera(service, astronaut_bgr, tmp_path):
    # The astronaut photo centred on a 640x480 grey frame, as a camera would deliver it.
    frame = np.full((480, 640, 3), 100, np.uint8)
    frame[:, 64:576] = cv2.resize(astronaut_bgr, (512, 480))
    camera = write_y4m(tmp_path / "camera.y4m", frame)
    driver = browser(camera, allow_camera=True)
    try:
        driver.get(service + "/")
        result = wait_for(driver, "const s = window.faceray; return s.lastResult && s.lastResult.faces.length "
                                  "&& s.framesAnswered >= 5 && s.lastResult")
        state = driver.execute_script("return window.faceray")
        assert state["status"] == "streaming" and state["source"] == "camera" and state["framesSent"] >= state["framesAnswered"]
        face = result["faces"][0]
        x, y, w, h = face["box"]
        assert 150 < x + w / 2 < 400 and 40 < y + h / 2 < 250, face["box"]  # the astronaut's face
        assert {"emotion", "gender"} <= set(face)
        # The drawn box: canvas pixels on its left edge differ from the camera frame's pixels there.
        differing = driver.execute_script("""
            const [x, y, w, h] = arguments[0];
            const view = document.getElementById('view');
            const drawn = view.getContext('2d').getImageData(x, y + Math.floor(h / 2), 1, 1).data;
            const plain = document.createElement('canvas');
            [plain.width, plain.height] = [view.width, view.height];
            plain.getContext('2d').drawImage(document.getElementById('video'), 0, 0, view.width, view.height);
            const frame = plain.getContext('2d').getImageData(x, y + Math.floor(h / 2), 1, 1).data;
            return Math.abs(drawn[0] - frame[0]) + Math.abs(drawn[1] - frame[1]) + Math.abs(drawn[2] - frame[2]);
        """, face["box"])
        assert differing > 60, differing
        labels = driver.execute_script("return document.querySelectorAll('#bars .bar').length")
        assert labels == 9  # 7 emotions + 2 genders for the largest face
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(ARTEFACTS / "browser_page.png"))
        # Frames per second as the page measures them (reported, not asserted: speed lives in bench/).
        started_answers, started = state["framesAnswered"], time.monotonic()
        time.sleep(3)
        rate = (driver.execute_script("return window.faceray.framesAnswered") - started_answers) / (time.monotonic() - started)
        (ARTEFACTS / "browser_page_fps.txt").write_text(f"{rate:.1f}\n")
        assert rate > 0
    finally:
        driver.quit()


def test_a_refused_camera_is_said_clearly(service):
    driver = browser(None, allow_camera=False)  # headless Chromium denies the camera prompt
    try:
        driver.get(service + "/")
        status = wait_for(driver, "const s = window.faceray; return ['camera-denied', 'no-camera'].includes(s.status) && s.status", 30)
        message = driver.execute_script("return document.getElementById('message').textContent")
        assert status == "camera-denied" and "camera was refused" in message and "image or a video file" in message
    finally:
        driver.quit()


def test_a_page_of_another_origin_may_not_use_the_stream(service):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    stream_url = service.replace("http", "ws", 1) + "/v1/stream"
    with pytest.raises(InvalidStatus) as refused:  # closed before it is accepted: the handshake gets 403
        with connect(stream_url, origin="https://elsewhere.example", open_timeout=10):
            pass
    assert refused.value.response.status_code == 403
    with connect(stream_url, origin=service, open_timeout=10) as socket:  # the service's own page
        socket.send(b"not an image")
        assert "error" in socket.recv(timeout=10)
