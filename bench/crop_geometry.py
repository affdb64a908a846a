"""The crop geometry finding (issue 15): the paper's published models on real photos, each face cut with the old
service margin (10% for every model) and with the crop of the data each model was trained on, as the card records
it (gender: IMDB-WIKI crops, the face plus 40% per side; emotion: FER-2013, 10%).

Needs ../shared/reference (the published .hdf5 files and a group photo); exits with a message without it. Photos:
scikit-image's astronaut (one woman) and camera (one man), and the reference group photo (labels unknown).
Prints one JSON line and a table: per photo and model, mean confidence of the top class at each crop, how many
faces change their label, and for the two labelled photos the probability of the true gender.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
OLD_MARGIN = 0.1


def photos() -> dict[str, tuple[np.ndarray, str | None]]:
    from skimage import data

    found = {
        "astronaut": (cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), "woman"),
        "camera": (cv2.cvtColor(data.camera(), cv2.COLOR_GRAY2BGR), "man"),
    }
    group = cv2.imread(str(REFERENCE / "test_image.jpg"))
    if group is not None:
        found["group"] = (group, None)
    return found


def main() -> int:
    from faceray.faces import crop_faces
    from faceray.runtime import use_loopback_environment
    from faceray.serve.classify import FaceClassifier
    from faceray.serve.detect import DetectorSettings, make_detector
    from faceray.train.model_dir import import_legacy_model

    if not (REFERENCE / "gender_mini_XCEPTION.21-0.95.hdf5").is_file():
        print(f"skipped: the published weights are not in {REFERENCE}")
        return 0
    use_loopback_environment()
    folder = Path(tempfile.mkdtemp())
    classifiers = {
        "gender": FaceClassifier(
            import_legacy_model(REFERENCE / "gender_mini_XCEPTION.21-0.95.hdf5", "gender", folder / "gender")
        ),
        "emotion": FaceClassifier(
            import_legacy_model(REFERENCE / "fer2013_mini_XCEPTION.102-0.66.hdf5", "emotion", folder / "emotion")
        ),
    }
    detector = make_detector(DetectorSettings())
    results = []
    for photo, (frame, truth) in photos().items():
        boxes = detector.detect(frame)
        for task, classifier in classifiers.items():
            card = classifier.card
            by_crop = {}
            for name, margin in (("old_10pct", OLD_MARGIN), ("card", card.crop.margin)):
                probabilities = classifier.predict(crop_faces(frame, boxes, card.size, card.color, margin))
                by_crop[name] = probabilities
            old, new = by_crop["old_10pct"], by_crop["card"]
            row = {
                "photo": photo,
                "task": task,
                "faces": len(boxes),
                "card_margin": card.crop.margin,
                "mean_top_score_old": round(float(old.max(axis=1).mean()), 3) if len(boxes) else None,
                "mean_top_score_card": round(float(new.max(axis=1).mean()), 3) if len(boxes) else None,
                "labels_changed": int((old.argmax(axis=1) != new.argmax(axis=1)).sum()),
                "labels_old": [card.labels[index] for index in old.argmax(axis=1)],
                "labels_card": [card.labels[index] for index in new.argmax(axis=1)],
            }
            if truth is not None and task == "gender" and len(boxes):
                index = card.labels.index(truth)
                row["truth"] = truth
                row["p_truth_old"] = round(float(old[0, index]), 3)
                row["p_truth_card"] = round(float(new[0, index]), 3)
            results.append(row)
    print(json.dumps({"benchmark": "crop_geometry", "old_margin": OLD_MARGIN, "rows": results}))
    print(f"{'photo':<10} {'task':<8} {'faces':>5} {'margin':>6} {'top@0.1':>8} {'top@card':>8} {'changed':>7} "
          f"{'p(true)@0.1':>11} {'p(true)@card':>12}")  # fmt: skip
    for row in results:
        print(
            f"{row['photo']:<10} {row['task']:<8} {row['faces']:>5} {row['card_margin']:>6} "
            f"{row['mean_top_score_old']!s:>8} {row['mean_top_score_card']!s:>8} {row['labels_changed']:>7} "
            f"{row.get('p_truth_old', '-')!s:>11} {row.get('p_truth_card', '-')!s:>12}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
