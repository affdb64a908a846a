"""Exported models: `model.onnx` beside `model.keras` in a model directory, checked against it (no Ray).

The Keras model stays the source of truth (preprocessing included: its first layers scale uint8 pixels). The export is
its traced call converted by tf2onnx with a uint8 input (N, H, W, C), checked on a probe batch, and recorded in the
card (`exports.onnx`: file, SHA-256, size, opset, the largest difference from Keras). A service loads the export
without TensorFlow when the card's checksum matches the file; otherwise it converts in memory as before.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from faceray.model_card import MODEL_FILE, ModelCard, load_model_dir, record_model_file
from faceray.storage import Location

ONNX_FILE = "model.onnx"
ONNX_OPSET = 17
PARITY_TOLERANCE = 1e-4  # largest difference in probability allowed between the ONNX and Keras outputs
FORMATS = ("onnx",)


class ExportMismatchError(RuntimeError):
    """The converted model disagrees with the Keras model it came from."""


def traced_call(model: Any, input_shape: tuple[int, int, int]) -> tuple[Any, list[Any]]:
    """The model's inference call as a traced TensorFlow function of uint8 images (N, H, W, C), and its signature."""
    import tensorflow as tf

    signature = [tf.TensorSpec([None, *input_shape], tf.uint8, name="images")]
    # A traced function with a fixed signature: ~10x faster per face than eager calls, no retracing.
    traced = tf.function(lambda images: model(tf.cast(images, tf.float32), training=False), input_signature=signature)
    return traced, signature


def to_onnx(traced: Any, signature: list[Any]) -> bytes:
    """The ONNX graph of a traced call (converted in memory; nothing is written or downloaded)."""
    import tf2onnx

    proto, _ = tf2onnx.convert.from_function(traced, input_signature=signature, opset=ONNX_OPSET)
    return proto.SerializeToString()


def onnx_session(graph: bytes, threads: int = 0) -> Any:
    """An ONNX Runtime CPU session of `graph`; `threads` intra-op threads (0 = one per core)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Idle threads sleep instead of spinning: the detector and the other model share these cores.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


def run_session(session: Any, crops: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """uint8 (N, H, W, C) -> float32 (N, K) through an ONNX Runtime session."""
    return session.run(None, {session.get_inputs()[0].name: np.ascontiguousarray(crops, np.uint8)})[0]


def probe_batch(input_shape: tuple[int, int, int], count: int = 8) -> npt.NDArray[np.uint8]:
    return np.random.default_rng(0).integers(0, 256, (count, *input_shape)).astype(np.uint8)


def max_difference(session: Any, traced: Any, input_shape: tuple[int, int, int]) -> float:
    """The largest difference in probability between the ONNX session and the traced Keras call on a probe batch."""
    probe = probe_batch(input_shape)
    return float(np.abs(run_session(session, probe) - traced(probe).numpy()).max())


def export_model(folder: str | Path, format: str = "onnx") -> ModelCard:
    """Export the model directory `folder`, local or in object storage (`faceray export`); see `write_export`."""
    from faceray.model_card import CARD_FILE, MODEL_FILE
    from faceray.storage import local_folder

    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}: expected one of {FORMATS}")
    # A directory in object storage: its files copied here, the export and then the card uploaded back.
    with local_folder(Location.of(folder), fetch=True, skip=(MODEL_FILE,), last=(CARD_FILE,)) as local:
        model, card = load_model_dir(local)
        return write_export(local, model, card)


def write_export(folder: str | Path, model: Any, card: ModelCard) -> ModelCard:
    """Write `folder/model.onnx` from `model` (the directory's Keras model, in memory), check it
    (ExportMismatchError above PARITY_TOLERANCE), and record it in the card; returns the updated card. The file is
    written under a temporary name, then renamed."""
    folder = Path(folder)
    traced, signature = traced_call(model, card.input_shape)
    graph = to_onnx(traced, signature)
    difference = max_difference(onnx_session(graph), traced, card.input_shape)
    if not difference <= PARITY_TOLERANCE:
        raise ExportMismatchError(
            f"{folder}: the ONNX export differs from the Keras model by {difference:.2e} (> {PARITY_TOLERANCE:g})"
        )
    temporary = folder / (ONNX_FILE + ".tmp")
    temporary.write_bytes(graph)
    os.replace(temporary, folder / ONNX_FILE)
    record = {
        "file": ONNX_FILE,
        "sha256": hashlib.sha256(graph).hexdigest(),
        "bytes": len(graph),
        "opset": ONNX_OPSET,
        "input": "uint8 (N, H, W, C), as the Keras model",
        "max_abs_difference": float(f"{difference:.3g}"),
    }
    exports = dict(card.extra.get("exports") or {})
    exports["onnx"] = record
    card = record_model_file(folder, card).with_extra(exports=exports)
    card.save(folder)
    return card


def recorded_export(folder: str | Path | Location, card: ModelCard) -> bytes | None:
    """The bytes of the ONNX export the card records (local or in object storage), when the file is there and its
    SHA-256 matches; else None (a directory from before exports, or a file changed since: the caller converts in
    memory instead)."""
    record = (card.extra.get("exports") or {}).get("onnx")
    if not record:
        return None
    try:
        graph = (Location.of(folder) / str(record.get("file", ONNX_FILE))).read_bytes()
    except FileNotFoundError:
        return None
    return graph if hashlib.sha256(graph).hexdigest() == record.get("sha256") else None


def changed_export(folder: str | Path | Location, card: ModelCard) -> str | None:
    """The warning to give when the card records an ONNX export that is missing or differs from its record (the
    graph is then rebuilt from model.keras at load); None when it matches or none is recorded."""
    record = (card.extra.get("exports") or {}).get("onnx")
    if not record or recorded_export(folder, card) is not None:
        return None
    name = Location.of(folder) / str(record.get("file", ONNX_FILE))
    return (
        f"{name}: missing or changed since it was written (its SHA-256 differs); the graph is rebuilt from "
        f"{MODEL_FILE} at load, which is slower: run `faceray export {Location.of(folder)}` to write it again"
    )
