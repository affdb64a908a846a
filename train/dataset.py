"""Reading shards (faceray.shards) as a Ray Dataset of (uint8 image, int label) for training (thin Ray wrapper)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from faceray.shards import ShardMetadata, check_labels, decode_images, shard_files
from faceray.storage import Location


def _decode_batch(
    batch: dict[str, np.ndarray], image_shape: tuple[int, ...], classes: int, where: str
) -> dict[str, np.ndarray]:
    labels = batch["label"].astype(np.int64)
    check_labels(labels, classes, where)
    return {"image": decode_images(batch["image"], image_shape), "label": labels}


def read_split_dataset(data_dir: str | Path | Location, split: str) -> Any:
    """A split (local or in object storage) as a `ray.data.Dataset` with columns image (uint8 (H, W, C) tensor) and
    label (int64). The read tasks get the driver's filesystem (with its store's endpoint)."""
    import ray

    metadata = ShardMetadata.read(data_dir, split)
    files = shard_files(data_dir, split)
    return ray.data.read_parquet(
        [file.path for file in files], filesystem=files[0].filesystem, columns=["image", "label"]
    ).map_batches(
        _decode_batch,
        fn_kwargs={
            "image_shape": metadata.image_shape,
            "classes": len(metadata.labels),
            "where": f"a shard of {Location.of(data_dir) / split}",
        },
        batch_format="numpy",
    )
