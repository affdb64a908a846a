"""The typed formats of faceray/: shard metadata and model cards validate, round-trip, and read what older faceray
wrote; the face preprocessing is one path, shared by ingest and serving (pure, no Ray)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from faceray.faces import (
    FER_CROP,
    IMDB_WIKI_CROP,
    UNRECORDED_CROP,
    CropGeometry,
    crop_faces,
    face_pixels,
    square_crop_box,
)
from faceray.model_card import CARD_FILE, ModelCard
from faceray.shards import BASE_FIELDS, FormatError, IngestManifest, ShardMetadata, load_split_numpy


@pytest.fixture(scope="module")
def astronaut_bgr() -> np.ndarray:
    from skimage import data

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


@pytest.fixture(scope="module")
def face_box(astronaut_bgr):
    """The astronaut's face as the service's default detector (BlazeFace) finds it."""
    from faceray.serve.detect import DetectorSettings, make_detector

    boxes = make_detector(DetectorSettings()).detect(astronaut_bgr)
    assert boxes, "BlazeFace found no face in the astronaut photo"
    return boxes[0]


@pytest.mark.parametrize("color", ["gray", "rgb"])
def test_ingest_and_serving_give_identical_pixels_for_the_same_face(astronaut_bgr, face_box, tmp_path, color):
    """The same real face, (a) cut by the service from a camera frame and (b) stored as an IMDB-WIKI-style crop
    file (lossless PNG, so the file holds exactly the frame's pixels) and read by ingest: identical model inputs."""
    from faceray.ingest.images import decode_and_resize

    served = crop_faces(astronaut_bgr, [face_box], 64, color, IMDB_WIKI_CROP)[0]
    left, top, side, _ = square_crop_box(face_box, IMDB_WIKI_CROP.margin, astronaut_bgr.shape)
    crop_file = tmp_path / "nm0000001_rm1_1968-05-20_2000.png"
    cv2.imwrite(str(crop_file), astronaut_bgr[top : top + side, left : left + side])
    ingested = decode_and_resize(crop_file.read_bytes(), 64, color)
    assert served.shape == ingested.shape == (64, 64, 1 if color == "gray" else 3)
    assert np.array_equal(served, ingested)


def test_face_pixels_converts_colour_first_then_resizes(astronaut_bgr):
    grey_then_resized = cv2.resize(
        cv2.cvtColor(astronaut_bgr, cv2.COLOR_BGR2GRAY), (64, 64), interpolation=cv2.INTER_AREA
    )
    assert np.array_equal(face_pixels(astronaut_bgr, 64, "gray")[:, :, 0], grey_then_resized)
    rgb = face_pixels(astronaut_bgr[:, :, ::-1].copy(), 32, "rgb", input_order="rgb")
    assert np.array_equal(rgb, face_pixels(astronaut_bgr, 32, "rgb"))
    with pytest.raises(ValueError, match="channel order"):
        face_pixels(astronaut_bgr, 32, "gray", input_order="gbr")


def test_crop_geometry_of_the_sources():
    from faceray.ingest.sources import get_source

    assert get_source("imdb").crop == IMDB_WIKI_CROP and IMDB_WIKI_CROP.margin == 0.4
    assert get_source("fer").crop == FER_CROP and FER_CROP.margin == 0.1
    with pytest.raises(ValueError, match="not in 0..1"):
        CropGeometry(1.5)


def old_shard(path, task="emotion", labels=("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")):
    """A shard exactly as faceray wrote them before it recorded the dataset and crop geometry."""
    metadata = {
        b"faceray.image_shape": b"[48, 48, 1]",
        b"faceray.color": b"gray",
        b"faceray.task": task.encode(),
        b"faceray.labels": json.dumps(list(labels)).encode(),
    }
    schema = pa.schema([*BASE_FIELDS, pa.field("usage", pa.string())], metadata=metadata)
    images = np.arange(3 * 48 * 48, dtype=np.uint8).reshape(3, 48, 48, 1)
    rows = {"image": [image.tobytes() for image in images], "label": [0, 3, 6], "source": ["a", "b", "c"]}
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pydict({**rows, "usage": ["Training"] * 3}, schema=schema), path)
    return images


def test_shards_written_before_crop_geometry_still_load(tmp_path):
    from faceray.train.pipeline import card_crop

    images = old_shard(tmp_path / "train" / "part-00000.parquet")
    meta = ShardMetadata.read(tmp_path, "train")
    assert meta.image_shape == (48, 48, 1) and meta.task == "emotion" and meta.dataset is None and meta.crop is None
    loaded, labels = load_split_numpy(tmp_path, "train")
    assert np.array_equal(loaded, images) and labels.tolist() == [0, 3, 6]
    assert card_crop(None, meta) == UNRECORDED_CROP  # the old 10% margin, said to be unrecorded
    assert card_crop(0.25, meta).margin == 0.25


def test_shard_metadata_round_trips_and_names_the_file_and_field(tmp_path):
    meta = ShardMetadata((64, 64, 1), "gray", "gender", ("woman", "man"), "imdb", IMDB_WIKI_CROP)
    assert ShardMetadata.from_schema(meta.schema(), "x.parquet") == meta
    with pytest.raises(FormatError, match="color 'rgb' does not match image_shape"):
        ShardMetadata((64, 64, 1), "rgb", "gender", ("woman", "man"))
    old_shard(tmp_path / "train" / "part-00000.parquet", labels=("a", "b"))
    with pytest.raises(FormatError, match=r"part-00000.parquet: .*labels \['a', 'b'\] are not the emotion labels"):
        ShardMetadata.read(tmp_path)
    with pytest.raises(FormatError, match="no Parquet shards"):
        ShardMetadata.read(tmp_path, "val")
    with pytest.raises(FormatError, match="no manifest.json"):
        IngestManifest.read(tmp_path)


OLD_CARD = {  # model_card.json as faceray wrote it before crop geometry (crop_margin only)
    "task": "gender",
    "labels": ["woman", "man"],
    "input_shape": [64, 64, 1],
    "color": "gray",
    "input": "uint8 or float pixels 0..255, (N, H, W, C); RGB order when C = 3",
    "normalization": "(x / 255 - 0.5) * 2, inside the model (layer 'normalize')",
    "crop_margin": 0.1,
    "architecture": "residual",
    "intended_use": "Research.",
    "limitations": ["binary labels"],
    "config": {"lr": 0.001},
    "metrics": {"best_epoch": 3},
}


def test_model_cards_written_by_older_faceray_still_load(tmp_path):
    (tmp_path / CARD_FILE).write_text(json.dumps(OLD_CARD))
    card = ModelCard.read(tmp_path)
    assert card.crop.margin == 0.1 and "older faceray" in card.crop.description
    assert card.labels == ("woman", "man") and card.extra == {"config": {"lr": 0.001}, "metrics": {"best_epoch": 3}}
    assert ModelCard.from_dict(card.to_dict()) == card  # and the new form round-trips


def test_model_card_errors_name_the_file_and_field(tmp_path):
    (tmp_path / CARD_FILE).write_text(json.dumps({key: value for key, value in OLD_CARD.items() if key != "task"}))
    with pytest.raises(ValueError, match=r"model_card.json: field 'task' is missing"):
        ModelCard.read(tmp_path)
    (tmp_path / CARD_FILE).write_text(json.dumps({**OLD_CARD, "input_shape": [64, 64, 3]}))
    with pytest.raises(
        ValueError, match=r"model_card.json: input shape \[64, 64, 3\] does not match colour mode 'gray'"
    ):
        ModelCard.read(tmp_path)
    with pytest.raises(ValueError, match="not a model directory"):
        ModelCard.read(tmp_path / "nowhere")


def test_ingest_manifests_of_older_faceray_load_and_bad_counts_are_refused(tmp_path):
    old = {  # manifest.json as faceray wrote it before crop geometry
        "dataset": "fer",
        "task": "emotion",
        "labels": ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"],
        "image_shape": [48, 48, 1],
        "color": "gray",
        "config": {"csv": "fer2013.csv"},
        "inputs": {"total": 10, "accepted": 9, "rejected": 1},
        "splits": {"train": {"count": 9, "labels": {}}},
        "rejects": {"wrong pixel count": 1},
        "chunks": 1,
        "this_run": {"chunks_processed": 1, "images_processed": 10, "elapsed_s": 1.0, "images_per_s": 10.0},
        "schema": "see ingest/shards.py",
    }
    (tmp_path / "manifest.json").write_text(json.dumps(old))
    manifest = IngestManifest.read(tmp_path)
    assert manifest.metadata.crop is None and manifest.metadata.dataset == "fer" and manifest.inputs["accepted"] == 9
    assert IngestManifest.from_dict(manifest.to_dict()) == manifest
    (tmp_path / "manifest.json").write_text(json.dumps({**old, "inputs": {"total": 10, "accepted": 5, "rejected": 1}}))
    with pytest.raises(FormatError, match="accepted \\+ rejected = total"):
        IngestManifest.read(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({key: value for key, value in old.items() if key != "splits"}))
    with pytest.raises(FormatError, match="manifest.json: field 'splits' is missing"):
        IngestManifest.read(tmp_path)
