"""Start-up saved by exported models (issue 17): how long a FaceClassifier (what each service replica loads per
model) takes to become ready from a model directory with its checked `model.onnx`, against the same directory without
the export (the Keras model loaded and converted to ONNX in memory, as before). Each load runs in a fresh Python
process (imports included, as a replica starts), alternating the two, 3 rounds.

    python bench/export_startup.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != REPOSITORY / "bench"]
sys.path.insert(0, str(REPOSITORY))
from bench.common import machine, print_report  # noqa: E402

LOAD = (
    "import sys, time; started = time.perf_counter(); from faceray.serve.classify import FaceClassifier; "
    "classifier = FaceClassifier(sys.argv[1]); print(classifier.source, time.perf_counter() - started)"
)


def load_seconds(folder: Path) -> tuple[str, float]:
    started = time.perf_counter()
    finished = subprocess.run([sys.executable, "-c", LOAD, str(folder)], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    source = finished.stdout.split()[-2]
    return source, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    from faceray.model_card import ModelCard
    from faceray.runtime import use_loopback_environment
    from faceray.train.models import build_model

    use_loopback_environment()
    work = Path(tempfile.mkdtemp(prefix="faceray-bench-export-"))
    reference = REPOSITORY.parent / "shared" / "reference" / "gender_mini_XCEPTION.21-0.95.hdf5"
    if reference.is_file():
        from faceray.train.model_dir import import_legacy_model

        exported = import_legacy_model(reference, "gender", work / "exported")
        model_name = reference.name
    else:
        from faceray.exports import export_model
        from faceray.faces import IMDB_WIKI_CROP
        from faceray.model_card import save_model_dir

        exported = save_model_dir(
            work / "exported",
            build_model("residual", (64, 64, 1), 2),
            ModelCard("gender", (64, 64, 1), "gray", "residual", IMDB_WIKI_CROP),
        )
        export_model(exported)
        model_name = "mini-Xception 64x64x1 (untrained)"
    converted = work / "converted"
    shutil.copytree(exported, converted)
    (converted / "model.onnx").unlink()
    card = ModelCard.read(converted)
    ModelCard.from_dict({k: v for k, v in card.to_dict().items() if k != "exports"}).save(converted)

    times: dict[str, list[float]] = {"export": [], "converted": []}
    for _ in range(arguments.rounds):
        for folder in (exported, converted):
            source, seconds = load_seconds(folder)
            times[source].append(seconds)
    medians = {source: float(np.median(values)) for source, values in times.items()}
    payload = {
        "benchmark": "export_startup",
        "machine": machine(),
        "model": model_name,
        "onnx_bytes": (exported / "model.onnx").stat().st_size,
        "seconds": {source: [round(value, 2) for value in values] for source, values in times.items()},
        "median_export_s": round(medians["export"], 2),
        "median_converted_s": round(medians["converted"], 2),
        "ratio_export_to_converted": round(medians["export"] / medians["converted"], 3),
    }
    rows = [
        ("model", model_name),
        ("with model.onnx (no TensorFlow)", f"{medians['export']:.2f} s  ({', '.join(f'{v:.2f}' for v in times['export'])})"),
        ("converted at load (before)", f"{medians['converted']:.2f} s  ({', '.join(f'{v:.2f}' for v in times['converted'])})"),
        ("ratio", f"{payload['ratio_export_to_converted']:.2f}x the start-up of converting at load"),
    ]  # fmt: skip
    print_report("bench/export_startup", rows, payload)
    print(json.dumps({"saved_s_per_model": round(medians["converted"] - medians["export"], 2)}))


if __name__ == "__main__":
    main()
