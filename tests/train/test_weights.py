"""`faceray fetch-weights paper` against a local HTTP server on 127.0.0.1: verified files become model directories;
a tampered or oversized file is refused and leaves nothing behind."""

from __future__ import annotations

import functools
import http.server
import json
import threading

import pytest

from faceray.cli import main
from faceray.train.weights import SETS, DownloadError, fetch_weights, sha256_of


@pytest.fixture()
def mirror(tmp_path):
    """A folder with the repository's trained_models/ layout, served on 127.0.0.1; yields (folder, base URL)."""
    folder = tmp_path / "mirror"
    for weights in SETS["paper"]:
        (folder / weights.path).parent.mkdir(parents=True, exist_ok=True)
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def test_published_weights_are_fetched_checked_and_imported(mirror, reference_dir, tmp_path, capsys):
    folder, url = mirror
    for weights in SETS["paper"]:
        (folder / weights.path).symlink_to(reference_dir / weights.filename)
    out = tmp_path / "models"
    assert main(["fetch-weights", "paper", "--out", str(out), "--base-url", url]) == 0
    printed = capsys.readouterr().out
    assert f"faceray serve --emotion-model {out / 'emotion-paper'} --gender-model {out / 'gender-paper'}" in printed
    for task in ("emotion", "gender"):
        card = json.loads((out / f"{task}-paper" / "model_card.json").read_text())
        assert (
            card["task"] == task
            and card["crop"]["margin"] == (0.4 if task == "gender" else 0.1)
            and card["source"]["sha256"] == sha256_of(out / "downloads" / card["source"]["file"])
        )
        assert "MIT" in card["source"]["license"] and (out / f"{task}-paper" / "model.keras").is_file()
    # A second run downloads nothing: the verified files are kept.
    (folder / SETS["paper"][0].path).unlink()
    fetch_weights("paper", out, url, log=None)


def test_a_tampered_file_is_refused_and_nothing_is_left(mirror, tmp_path, capsys):
    folder, url = mirror
    emotion = SETS["paper"][0]
    # The right size, other bytes (the published file with bytes changed gives the same refusal).
    (folder / emotion.path).write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(emotion.size_bytes - 8))
    out = tmp_path / "models"
    with pytest.raises(SystemExit) as exited:
        main(["fetch-weights", "paper", "--out", str(out), "--base-url", url])
    assert exited.value.code == 2
    message = capsys.readouterr().err
    assert "SHA-256" in message and "is not the pinned" in message and "Traceback" not in message
    assert not list((out / "downloads").glob("*")) and not (out / "emotion-paper").exists()


def test_an_oversized_or_missing_file_is_refused(mirror, tmp_path):
    folder, url = mirror
    emotion = SETS["paper"][0]
    (folder / emotion.path).write_bytes(bytes(3 * emotion.size_bytes))
    with pytest.raises(DownloadError, match="more than"):
        fetch_weights("paper", tmp_path / "models", url, log=None)
    (folder / emotion.path).unlink()
    with pytest.raises(DownloadError, match="(?i)not found"):
        fetch_weights("paper", tmp_path / "models", url, log=None)
    assert not list((tmp_path / "models" / "downloads").glob("*"))
