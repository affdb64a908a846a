"""Deterministic train/val/test assignment (no Ray, no randomness from the machine)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from faceray.labels import SPLITS


def parse_ratios(text: str | Sequence[float]) -> tuple[float, float, float]:
    """'0.8,0.1,0.1' or a sequence -> three ratios that sum to 1 (raises ValueError)."""
    parts = [float(part) for part in (text.split(",") if isinstance(text, str) else text)]
    if len(parts) != 3 or any(part < 0 for part in parts) or abs(sum(parts) - 1.0) > 1e-6:
        raise ValueError(f"split ratios must be three non-negative numbers summing to 1, got {text!r}")
    return parts[0], parts[1], parts[2]


def unit_hash(key: str, seed: int) -> float:
    """A number in [0, 1) from a stable hash of (seed, key): the same on every machine and run."""
    digest = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def assign_splits(keys: Iterable[str], ratios: Sequence[float], seed: int = 0) -> list[str]:
    """The split ('train', 'val' or 'test') of each key; equal keys always land in the same split."""
    train_ratio, val_ratio, _ = ratios
    splits: list[str] = []
    for key in keys:
        value = unit_hash(key, seed)
        splits.append(SPLITS[0] if value < train_ratio else SPLITS[1] if value < train_ratio + val_ratio else SPLITS[2])
    return splits
