"""The Serve application over HTTP on loopback: contract, bad inputs, concurrency, the client end to end."""

from __future__ import annotations

import json
import socket
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
import requests

from serve.client import ClientConfig, run_client, write_test_video
from tests.serve.conftest import free_port, jpeg

pytestmark = pytest.mark.slow


def post(url: str, body: bytes, content_type: str = "image/jpeg", query: str = "") -> requests.Response:
    return requests.post(f"{url}/v1/faces{query}", data=body, headers={"Content-Type": content_type}, timeout=60)


def test_contract_on_a_real_photo(service, astronaut_bgr):
    response = post(service, jpeg(astronaut_bgr))
    assert response.status_code == 200
    payload = response.json()
    assert payload["image"] == {"width": 512, "height": 512}
    [face] = payload["faces"]
    x, y, w, h = face["box"]
    assert 190 < x + w / 2 < 260 and 80 < y + h / 2 < 150
    for task, count in (("emotion", 7), ("gender", 2)):
        result = face[task]
        assert len(result["scores"]) == count and abs(sum(result["scores"].values()) - 1) < 1e-3
        assert result["label"] == max(result["scores"], key=result["scores"].get)
    assert set(payload["timings_ms"]) == {"decode", "detect", "classify", "total"}


def test_no_face_is_an_empty_list(service):
    assert post(service, jpeg(np.full((240, 320, 3), 128, np.uint8))).json()["faces"] == []


def test_png_multipart_and_annotation(service, astronaut_bgr):
    ok, png = cv2.imencode(".png", astronaut_bgr)
    assert post(service, png.tobytes(), "image/png").status_code == 200
    multipart = requests.post(f"{service}/v1/faces", files={"image": ("a.jpg", jpeg(astronaut_bgr), "image/jpeg")}, timeout=60)
    assert multipart.status_code == 200 and len(multipart.json()["faces"]) == 1
    annotated = post(service, jpeg(astronaut_bgr), query="?annotate=1")
    assert annotated.headers["content-type"] == "image/jpeg"
    picture = cv2.imdecode(np.frombuffer(annotated.content, np.uint8), cv2.IMREAD_COLOR)
    assert picture.shape == astronaut_bgr.shape


@pytest.mark.parametrize(
    ("body", "content_type", "status", "words"),
    [
        (b"", "image/jpeg", 400, "empty"),
        (b"GIF89a nonsense", "image/jpeg", 400, "not a decodable image"),
        (b"truncated", "image/jpeg", 400, "truncated"),
        (b'{"image": 1}', "application/json", 415, "content type"),
        (b"x" * 3_100_000, "image/jpeg", 413, "exceeds"),
    ],
    ids=["empty", "not-an-image", "truncated", "wrong-type", "oversized"],
)
def test_bad_inputs_get_a_4xx_and_the_service_stays_up(service, astronaut_bgr, body, content_type, status, words):
    if body == b"truncated":
        whole = jpeg(astronaut_bgr)
        body = whole[: len(whole) // 2]
    response = post(service, body, content_type)
    assert response.status_code == status
    assert words in response.json()["error"]
    assert requests.get(f"{service}/healthz", timeout=10).json() == {"status": "ok"}


def test_concurrent_requests_match_single_ones(service, astronaut_bgr):
    frames = [np.roll(astronaut_bgr, shift, axis=1) for shift in (0, 20, 40, 60, 80, 100, 120, 140)]
    bodies = [jpeg(frame) for frame in frames]
    single = [post(service, body).json()["faces"] for body in bodies]
    with ThreadPoolExecutor(8) as pool:
        together = [response.json()["faces"] for response in pool.map(lambda body: post(service, body), bodies)]
    for alone, batched in zip(single, together):
        assert [item["box"] for item in alone] == [item["box"] for item in batched]
        for first, second in zip(alone, batched):
            for task in ("emotion", "gender"):
                assert first[task]["label"] == second[task]["label"]
                assert abs(first[task]["score"] - second[task]["score"]) < 1e-4


def test_models_endpoint_returns_the_cards(service):
    cards = requests.get(f"{service}/v1/models", timeout=10).json()
    assert cards["emotion"]["labels"][3] == "happy" and cards["gender"]["labels"] == ["woman", "man"]


def test_published_weights_through_the_service(service, model_dirs, astronaut_bgr):
    if not model_dirs["published"]:
        pytest.skip("../shared/reference (published weights) not available")
    [face] = post(service, jpeg(astronaut_bgr)).json()["faces"]
    assert face["gender"]["label"] == "woman"  # the astronaut photo is of Eileen Collins
    assert face["emotion"]["label"] == "happy"


def moving_face_video(path, astronaut_bgr, frames: int = 24):
    face = astronaut_bgr[40:200, 150:310]
    pictures = []
    for index in range(frames):
        frame = np.full((480, 640, 3), 90, np.uint8)
        x = 40 + index * 12
        frame[150:310, x : x + 160] = face
        pictures.append(frame)
    return write_test_video(path, pictures)


def test_client_end_to_end_headless(service, astronaut_bgr, tmp_path):
    video = moving_face_video(tmp_path / "in.mp4", astronaut_bgr)
    output, jsonl = tmp_path / "annotated.mp4", tmp_path / "results.jsonl"
    summary = run_client(ClientConfig(source=str(video), url=service, output=str(output), jsonl=str(jsonl), display=False),
                         log=lambda message: None)
    assert summary.exit_reason == "end of video"
    assert summary.frames_read == 24 and summary.frames_sent + summary.frames_dropped == 24
    assert summary.responses == summary.frames_sent > 0
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(lines) == summary.responses
    with_faces = [line for line in lines if line["faces"]]
    assert len(with_faces) >= len(lines) // 2
    assert len({face["track"] for line in with_faces for face in line["smoothed"]}) <= 3  # one face, not one per frame
    capture = cv2.VideoCapture(str(output))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 24
    capture.release()


def test_client_exits_cleanly_when_the_service_is_gone(astronaut_bgr, tmp_path):
    video = moving_face_video(tmp_path / "in.mp4", astronaut_bgr, frames=5)
    port = free_port()  # nothing listens there
    summary = run_client(ClientConfig(source=str(video), url=f"http://127.0.0.1:{port}", jsonl=str(tmp_path / "r.jsonl"),
                                      display=False, timeout_s=2), log=lambda message: None)
    assert "unreachable" in summary.exit_reason and summary.responses == 0
    assert (tmp_path / "r.jsonl").exists()


def test_client_rejects_a_missing_source(tmp_path):
    with pytest.raises(ValueError, match="cannot open"):
        run_client(ClientConfig(source=str(tmp_path / "none.mp4"), display=False))


def test_client_falls_back_to_headless_without_a_display(monkeypatch, astronaut_bgr, tmp_path):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    messages = []
    video = moving_face_video(tmp_path / "in.mp4", astronaut_bgr, frames=2)
    run_client(ClientConfig(source=str(video), url=f"http://127.0.0.1:{free_port()}", display=True, timeout_s=1),
               log=messages.append)
    assert any("no display available" in message for message in messages)


def test_socket_helper_gives_a_closed_port():
    port = free_port()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
