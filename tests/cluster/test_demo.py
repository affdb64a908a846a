"""The main job end to end at reduced size: every stage runs and the report holds their results."""

from __future__ import annotations

import json

import pytest

from faceray.cli import main

pytestmark = pytest.mark.slow


def test_demo_small_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--size", "small"]) == 0
    report = (out / "report.md").read_text()
    assert "synthetic" in report and "faceray submit" in report
    facts = json.loads((out / "report.json").read_text())
    assert facts["ingest"]["imdb"]["inputs"]["rejected"] >= 8 and facts["ingest"]["fer"]["inputs"]["rejected"] == 6
    assert set(facts["train"]) == {"emotion", "gender"}
    assert facts["serve"]["responses"] > 0 and facts["serve"]["frames_with_faces"] > 0
    for path in ("models/emotion/model.keras", "models/gender/model_card.json", "models/emotion/confusion_matrix.png",
                 "sweep/results.csv", "sweep/curves.png", "annotated.mp4", "annotated_frame.png", "client.jsonl",
                 "data/imdb64/inspect/samples.png"):
        assert (out / path).is_file(), path
    with open(out / "sweep" / "results.csv") as handle:
        assert len(handle.read().strip().splitlines()) == 2  # header + the small size's one trial
    assert "[demo 8/8" in capsys.readouterr().out
