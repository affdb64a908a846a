"""Face crops and their pixels: the one preprocessing path of ingest, training's evaluation and serving (no Ray).

Every face image a model sees goes through `face_pixels`: colour conversion first, then a resize to the model's
square side. Ingest calls it on decoded dataset images (which the dataset already cropped), serving calls it on the
square crop of a detected face (`crop_faces`), so the two give identical pixels for identical input pixels.

How a dataset cropped its faces is a `CropGeometry`: ingest records it in the shard metadata, training copies it
into the model card, and the service crops live faces the same way.
Boxes are (x, y, w, h) in frame pixels; frames are uint8 (H, W, 3) in BGR order, as OpenCV decodes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

Box = tuple[int, int, int, int]
COLOR_CHANNELS: dict[str, int] = {"gray": 1, "rgb": 3}
CHANNEL_ORDERS = ("bgr", "rgb")


@dataclass(frozen=True)
class CropGeometry:
    """How face images were cut from photos: a square around the face box, grown by `margin` x the box's size on
    each side (0 = the box itself). `description` says where the number comes from."""

    margin: float
    description: str = ""

    def __post_init__(self) -> None:
        if not 0 <= self.margin <= 1:
            raise ValueError(f"crop margin {self.margin} is not in 0..1")

    def to_dict(self) -> dict[str, Any]:
        return {"margin": self.margin, "description": self.description}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> CropGeometry:
        return cls(float(values["margin"]), str(values.get("description", "")))


IMDB_WIKI_CROP = CropGeometry(
    0.4, "IMDB-WIKI imdb_crop/wiki_crop: the detected face plus 40% of its size on each side (Rothe et al.)"
)
# FER-2013's faces were registered and cropped close, but with forehead and chin: a little more than a detector's
# box. Measured with the published emotion model (bench/crop_geometry.py): on the reference group photo the bare
# BlazeFace box (0.0) turned 2 of 6 faces to fear/angry, 0.1-0.3 agreed (happy/neutral) and 0.2 scored highest.
FER_CROP = CropGeometry(0.1, "FER-2013: 48x48 faces registered and cropped close (about 10% around a face box)")
UNRECORDED_CROP = CropGeometry(
    0.1, "not recorded (data or card written before faceray recorded crop geometry): the old 10% margin"
)


def check_color(color: str) -> None:
    """Raise ValueError unless `color` is a colour mode ('gray' or 'rgb')."""
    if color not in COLOR_CHANNELS:
        raise ValueError(f"unknown colour mode {color!r}: expected one of {sorted(COLOR_CHANNELS)}")


def face_pixels(image: npt.NDArray[np.uint8], size: int, color: str, input_order: str = "bgr") -> npt.NDArray[np.uint8]:
    """A face image as a model takes it: uint8 (size, size, 1) grey or (size, size, 3) RGB.

    `image` is uint8 (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); `input_order` is the channel order of colour
    inputs ('bgr' as OpenCV decodes, or 'rgb'). Colour conversion comes first, then the resize: area
    interpolation when shrinking, bilinear when enlarging. Non-square inputs are stretched to the square.
    """
    import cv2

    check_color(color)
    if input_order not in CHANNEL_ORDERS:
        raise ValueError(f"unknown channel order {input_order!r}: expected one of {CHANNEL_ORDERS}")
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    if image.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3) or 0 in image.shape:
        raise ValueError(f"expected an image of shape (H, W) or (H, W, C), got {image.shape}")
    if color == "gray" and image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY if input_order == "bgr" else cv2.COLOR_RGB2GRAY)
    elif color == "rgb" and image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    elif color == "rgb" and input_order == "bgr":
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    height, width = image.shape[:2]
    if (height, width) != (size, size):
        shrinking = height > size or width > size
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    if image.ndim == 2:
        image = image[:, :, np.newaxis]
    return np.ascontiguousarray(image)


def square_crop_box(box: Box, margin: float, frame_shape: Sequence[int]) -> Box:
    """A square around `box`, each side grown by `margin` x the box's longer side, shifted and clamped into the frame.

    Faces at the edge keep a square crop as long as the frame allows; it is never empty.
    """
    x, y, w, h = box
    frame_height, frame_width = frame_shape[:2]
    side = int(round(max(w, h) * (1 + 2 * margin)))
    side = max(1, min(side, frame_width, frame_height))
    centre_x, centre_y = x + w / 2, y + h / 2
    left = int(round(centre_x - side / 2))
    top = int(round(centre_y - side / 2))
    left = min(max(left, 0), frame_width - side)
    top = min(max(top, 0), frame_height - side)
    return left, top, side, side


def crop_faces(
    frame: npt.NDArray[np.uint8], boxes: Sequence[Box], size: int, color: str, crop: CropGeometry | float
) -> npt.NDArray[np.uint8]:
    """The face of each box in a BGR frame, cut as `crop` says and prepared by `face_pixels`:
    uint8 (N, size, size, 1) grey or (N, size, size, 3) RGB."""
    check_color(color)
    margin = crop.margin if isinstance(crop, CropGeometry) else float(crop)
    crops = np.zeros((len(boxes), size, size, COLOR_CHANNELS[color]), np.uint8)
    for index, box in enumerate(boxes):
        left, top, side, _ = square_crop_box(box, margin, frame.shape)
        crops[index] = face_pixels(frame[top : top + side, left : left + side], size, color, "bgr")
    return crops
