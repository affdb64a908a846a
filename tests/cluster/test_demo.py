"""The main job end to end at reduced size: every stage runs and the report holds their results."""

from __future__ import annotations

import json

import pytest

from faceray.cli import main


@pytest.mark.slow
def test_demo_small_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--size", "small"]) == 0
    report = (out / "report.md").read_text()
    assert "synthetic" in report and "faceray submit" in report
    facts = json.loads((out / "report.json").read_text())
    assert facts["ingest"]["imdb"]["inputs"]["rejected"] >= 8 and facts["ingest"]["fer"]["inputs"]["rejected"] == 6
    assert set(facts["train"]) == {"emotion", "gender"}
    assert facts["serve"]["responses"] > 0 and facts["serve"]["frames_with_faces"] > 0
    for path in (
        "models/emotion/model.keras",
        "models/gender/model_card.json",
        "models/emotion/confusion_matrix.png",
        "sweep/results.csv",
        "sweep/curves.png",
        "annotated.mp4",
        "annotated_frame.png",
        "client.jsonl",
        "data/imdb64/inspect/samples.png",
    ):
        assert (out / path).is_file(), path
    with open(out / "sweep" / "results.csv") as handle:
        assert len(handle.read().strip().splitlines()) == 2  # header + the small size's one trial
    console = capsys.readouterr().out
    assert "[demo 8/8" in console and "faceray fetch-weights paper" in console and "resources: sweep:" in console
    assert len(console.splitlines()) <= 100, len(console.splitlines())


def test_a_failed_step_fails_the_demo_and_the_report_says_which(tmp_path, monkeypatch, capsys):
    """A step that raises (here: the client's answers, as on the busy machine of issue 13) makes `faceray demo` exit
    non-zero, and report.md names the step and the reason; the finished steps keep their sections."""
    from faceray.cluster import demo
    from faceray.serve.client import ClientSummary

    def broken_steps(out, plan, address, progress, facts, log):
        progress("ingest both datasets into Parquet shards with Ray Data")
        facts["ingest"] = {}
        progress("run the client headless over a generated video")
        demo.check_client(ClientSummary(frames_read=7, responses=1, exit_reason="HTTP 500 from the service"), 1)

    monkeypatch.setattr(demo, "run_steps", broken_steps)
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--size", "small"]) == 1
    error = capsys.readouterr().err
    assert 'FAILED at step "run the client headless over a generated video"' in error and "HTTP 500" in error
    report = (out / "report.md").read_text()
    assert "FAILED at step" in report and "HTTP 500 from the service" in report and "## Ingest" in report
    assert json.loads((out / "report.json").read_text())["failed"]["step"].startswith("run the client")


@pytest.mark.parametrize(
    ("read", "answered", "faces", "reason", "passes"),
    [
        (60, 58, 40, "end of video", True),
        (60, 20, 10, "end of video", False),
        (60, 58, 0, "end of video", False),
        (7, 7, 7, "service gone", False),
    ],
)
def test_the_client_check(read, answered, faces, reason, passes):
    from faceray.cluster.demo import DemoFailed, check_client
    from faceray.serve.client import ClientSummary

    summary = ClientSummary(frames_read=read, responses=answered, exit_reason=reason)
    if passes:
        check_client(summary, faces)
    else:
        with pytest.raises(DemoFailed):
            check_client(summary, faces)
