"""Face tracking across frames: box overlap (IoU) and smoothing of each face's probabilities; following a face
between detections by template matching (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt


def iou(first: Sequence[float], second: Sequence[float]) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ax, ay, aw, ah = first
    bx, by, bw, bh = second
    overlap_w = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    overlap_h = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = overlap_w * overlap_h
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Track:
    """One face over time: its latest box and exponentially smoothed scores per task."""

    track_id: int
    box: list[int]
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    missed: int = 0
    hits: int = 0
    detector_score: float | None = None  # from the track's last detection (followed frames keep it)

    def as_face(self) -> dict[str, Any]:
        """A response-shaped face with the smoothed label and score per task."""
        face: dict[str, Any] = {"box": self.box, "detector_score": self.detector_score, "track": self.track_id}
        for task, scores in self.scores.items():
            label = max(scores, key=lambda name: scores[name])
            face[task] = {"label": label, "score": scores[label], "scores": dict(scores)}
        return face


class FaceTracker:
    """Greedy IoU matching of new detections to tracks; each face keeps its own smoothing window.

    `smoothing` in [0, 1): weight of the past (0 = no smoothing). Tracks unseen for `max_missed` updates end.
    """

    def __init__(self, iou_threshold: float = 0.3, smoothing: float = 0.6, max_missed: int = 5) -> None:
        self.iou_threshold = iou_threshold
        self.smoothing = smoothing
        self.max_missed = max_missed
        self.tracks: list[Track] = []
        self._next_id = 1

    def update(self, faces: list[dict[str, Any]]) -> list[Track]:
        """Match this frame's faces (response items) to tracks; returns the tracks seen in this frame."""
        pairs = sorted(
            (
                (iou(track.box, face["box"]), track_index, face_index)
                for track_index, track in enumerate(self.tracks)
                for face_index, face in enumerate(faces)
            ),
            reverse=True,
        )
        matched_tracks: set[int] = set()
        matched_faces: dict[int, Track] = {}
        for overlap, track_index, face_index in pairs:
            if overlap < self.iou_threshold:
                break
            if track_index in matched_tracks or face_index in matched_faces:
                continue
            matched_tracks.add(track_index)
            matched_faces[face_index] = self.tracks[track_index]
        seen = []
        for face_index, face in enumerate(faces):
            track = matched_faces.get(face_index)
            if track is None:
                track = Track(self._next_id, list(face["box"]))
                self._next_id += 1
                self.tracks.append(track)
            self._absorb(track, face)
            seen.append(track)
        seen_ids = {track.track_id for track in seen}
        for track in self.tracks:
            if track.track_id not in seen_ids:
                track.missed += 1
        self.tracks = [track for track in self.tracks if track.missed <= self.max_missed]
        return seen

    def _absorb(self, track: Track, face: dict[str, Any]) -> None:
        track.box = [int(value) for value in face["box"]]
        if "detector_score" in face:
            track.detector_score = face["detector_score"]
        track.missed = 0
        track.hits += 1
        for task in ("emotion", "gender"):
            result = face.get(task)
            if not result:
                continue
            new = result.get("scores") or {result["label"]: result["score"]}
            old = track.scores.get(task)
            if old is None or self.smoothing == 0:
                track.scores[task] = dict(new)
            else:
                track.scores[task] = {
                    label: self.smoothing * old.get(label, 0.0) + (1 - self.smoothing) * value
                    for label, value in new.items()
                }


TEMPLATE_SIDE = 24  # faces are matched at this size: cheap (~0.1 ms per face) and still distinctive
FOLLOW_MIN_SCORE = 0.6  # normalised correlation below which a face counts as lost


def follow_faces(
    previous_grey: npt.NDArray[np.uint8],
    grey: npt.NDArray[np.uint8],
    boxes: list[tuple[int, int, int, int]],
    search: float = 0.5,
    min_score: float = FOLLOW_MIN_SCORE,
) -> list[tuple[int, int, int, int]] | None:
    """Where each face box of the previous frame is now, by template matching around it; None if one is lost.

    Grey frames are uint8 (H, W) of equal shape. Each face is matched downscaled to about TEMPLATE_SIDE pixels
    within its box enlarged by `search` x its size on every side. Boxes keep their size (detection, run every
    few frames, corrects size and drift).
    """
    import cv2

    height, width = grey.shape
    followed = []
    for x, y, w, h in boxes:
        if w < 4 or h < 4:
            return None
        scale = min(1.0, TEMPLATE_SIDE / max(w, h))
        template = previous_grey[max(0, y) : y + h, max(0, x) : x + w]
        pad_x, pad_y = int(w * search), int(h * search)
        left, top = max(0, x - pad_x), max(0, y - pad_y)
        right, bottom = min(width, x + w + pad_x), min(height, y + h + pad_y)
        region = grey[top:bottom, left:right]
        if (
            template.shape[0] < 4
            or template.shape[1] < 4
            or region.shape[0] < template.shape[0]
            or region.shape[1] < template.shape[1]
        ):
            return None
        small_template = cv2.resize(template, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        small_region = cv2.resize(region, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        if small_region.shape[0] < small_template.shape[0] or small_region.shape[1] < small_template.shape[1]:
            return None
        scores = cv2.matchTemplate(small_region, small_template, cv2.TM_CCOEFF_NORMED)
        _, best, _, (best_x, best_y) = cv2.minMaxLoc(scores)
        if not best >= min_score:  # also catches NaN from a flat template
            return None
        new_x = left + int(round(best_x / scale)) - (max(0, x) - x)
        new_y = top + int(round(best_y / scale)) - (max(0, y) - y)
        followed.append((min(max(new_x, 0), width - 1), min(max(new_y, 0), height - 1), w, h))
    return followed
