"""Synthetic sample data in the real IMDB-WIKI and FER-2013 layouts (pure numpy/OpenCV/scipy, no Ray).

The pictures are drawn faces whose brows, eyes and mouth follow the emotion and whose hair follows the
gender, so a model trained on them lands clearly above chance. A few inputs are broken on purpose
(truncated, empty, not-an-image and missing files; malformed CSV rows) so every rejection path runs.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from faceray.labels import EMOTION_LABELS

# FER-2013's class frequencies (disgust is rare), used to draw the sample's labels.
FER_CLASS_WEIGHTS = np.array([4953, 547, 5121, 8989, 6077, 4002, 6198], dtype=np.float64)


@dataclass(frozen=True)
class SampleSummary:
    """What `write_sample` wrote."""

    imdb_root: Path
    imdb_mat: Path
    fer_csv: Path
    imdb_images: int
    imdb_broken_files: int
    fer_rows: int
    fer_bad_rows: int


def draw_face(rng: np.random.Generator, size: int, emotion: int, gender: int) -> npt.NDArray[np.uint8]:
    """Draw a face of `emotion` (index into EMOTION_LABELS) and `gender` (0 woman, 1 man).

    Returns uint8 (size, size, 3) in BGR order. Pose, scale, colours and noise vary with `rng`.
    """
    canvas_size = 256
    background = rng.integers(40, 220, size=3)
    image = np.empty((canvas_size, canvas_size, 3), np.uint8)
    image[:] = background
    scale = canvas_size
    centre_x = 0.5 + rng.uniform(-0.04, 0.04)
    centre_y = 0.52 + rng.uniform(-0.04, 0.04)
    face_w, face_h = rng.uniform(0.27, 0.32), rng.uniform(0.34, 0.40)

    def point(x: float, y: float) -> tuple[int, int]:
        return int(round((centre_x + (x - 0.5)) * scale)), int(round((centre_y + (y - 0.5)) * scale))

    def length(value: float) -> int:
        return max(1, int(round(value * scale)))

    hair = tuple(int(c) for c in (rng.integers(10, 60, 3) if rng.random() < 0.8 else rng.integers(90, 160, 3)))
    skin = tuple(int(c) for c in np.clip(np.array([150, 180, 215]) * rng.uniform(0.45, 1.1), 0, 255))
    if gender == 0:  # long hair falling past the jaw on both sides
        cv2.ellipse(image, point(0.5, 0.55), (length(face_w + 0.08), length(face_h + 0.12)), 0, 0, 360, hair, -1)
    cv2.ellipse(image, point(0.5, 0.5), (length(face_w), length(face_h)), 0, 0, 360, skin, -1)
    if gender == 1:  # short hair cap, sometimes a beard shadow
        cv2.ellipse(image, point(0.5, 0.32), (length(face_w + 0.01), length(0.12)), 0, 180, 360, hair, -1)
        if rng.random() < 0.5:
            beard = tuple(int(c * 0.6) for c in skin)
            cv2.ellipse(image, point(0.5, 0.72), (length(face_w * 0.8), length(0.1)), 0, 0, 180, beard, -1)
    else:
        cv2.ellipse(image, point(0.5, 0.3), (length(face_w + 0.02), length(0.09)), 0, 180, 360, hair, -1)

    dark = (30, 30, 30)
    eye_y, brow_y, mouth_y = 0.45, 0.37, 0.70
    eye_radius = 0.045 if EMOTION_LABELS[emotion] in ("fear", "surprise") else 0.028
    for side in (-1, 1):
        eye_x = 0.5 + side * 0.11
        if EMOTION_LABELS[emotion] == "happy":
            cv2.ellipse(image, point(eye_x, eye_y), (length(0.035), length(0.012)), 0, 180, 360, dark, length(0.012))
        else:
            cv2.circle(image, point(eye_x, eye_y), length(eye_radius), (245, 245, 245), -1)
            cv2.circle(image, point(eye_x, eye_y), length(eye_radius * 0.5), dark, -1)
        inner, outer = (0.5 + side * 0.04), (0.5 + side * 0.17)
        inner_y = outer_y = brow_y
        label = EMOTION_LABELS[emotion]
        if label == "angry":
            inner_y += 0.04
        elif label in ("sad", "fear"):
            inner_y -= 0.04
        elif label == "surprise":
            inner_y -= 0.05
            outer_y -= 0.05
        elif label == "disgust":
            inner_y += 0.03 * side
            outer_y += 0.03 * side
        cv2.line(image, point(inner, inner_y), point(outer, outer_y), dark, length(0.018))

    label = EMOTION_LABELS[emotion]
    mouth_colour = (40, 40, 120)
    width = 0.11 + rng.uniform(-0.01, 0.01)
    if label == "happy":
        cv2.ellipse(
            image, point(0.5, mouth_y - 0.03), (length(width), length(0.06)), 0, 0, 180, mouth_colour, length(0.02)
        )
    elif label == "sad":
        cv2.ellipse(
            image, point(0.5, mouth_y + 0.05), (length(width), length(0.05)), 0, 180, 360, mouth_colour, length(0.02)
        )
    elif label == "surprise":
        cv2.ellipse(image, point(0.5, mouth_y), (length(0.05), length(0.07)), 0, 0, 360, (20, 20, 60), -1)
    elif label == "fear":
        cv2.ellipse(image, point(0.5, mouth_y), (length(width), length(0.035)), 0, 0, 360, (20, 20, 60), -1)
        cv2.line(
            image, point(0.5 - width * 0.8, mouth_y), point(0.5 + width * 0.8, mouth_y), (230, 230, 230), length(0.012)
        )
    elif label == "angry":
        cv2.rectangle(image, point(0.5 - width, mouth_y - 0.012), point(0.5 + width, mouth_y + 0.012), mouth_colour, -1)
    elif label == "disgust":
        points = np.array([point(0.5 + width * t, mouth_y + 0.03 * np.sin(t * 4)) for t in np.linspace(-1, 1, 9)])
        cv2.polylines(image, [points.astype(np.int32)], False, mouth_colour, length(0.02))
    else:  # neutral
        cv2.line(image, point(0.5 - width, mouth_y), point(0.5 + width, mouth_y), mouth_colour, length(0.01))

    angle = rng.uniform(-10, 10)
    zoom = rng.uniform(0.9, 1.1)
    matrix = cv2.getRotationMatrix2D((canvas_size / 2, canvas_size / 2), angle, zoom)
    matrix[:, 2] += rng.uniform(-0.05, 0.05, 2) * canvas_size
    image = cv2.warpAffine(image, matrix, (canvas_size, canvas_size), borderMode=cv2.BORDER_REPLICATE)
    image = image.astype(np.float32) * rng.uniform(0.7, 1.3) + rng.normal(0, 12, image.shape)
    image = np.clip(image, 0, 255).astype(np.uint8)
    interpolation = cv2.INTER_AREA if size < canvas_size else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interpolation)


def _encoded_face(rng: np.random.Generator, side: int, gender: int) -> bytes:
    """A drawn face of a random emotion as JPEG bytes (one in ten grey)."""
    picture = draw_face(rng, side, int(rng.integers(0, len(EMOTION_LABELS))), gender)
    if rng.random() < 0.1:
        picture = cv2.cvtColor(picture, cv2.COLOR_BGR2GRAY)
    ok, encoded = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(70, 95))])
    if not ok:
        raise RuntimeError("OpenCV failed to encode a sample JPEG")
    return encoded.tobytes()


def _matlab_datenum(day: dt.date) -> float:
    """MATLAB serial date number of `day` (days since year 0, as imdb.mat stores `dob`)."""
    return float(day.toordinal() + 366)


def write_imdb_sample(
    root: Path,
    count: int,
    rng: np.random.Generator,
    struct_name: str = "imdb",
    clean: bool = False,
    unique_pictures: int | None = None,
) -> tuple[Path, int]:
    """Write `count` face crops under `root` plus `root/<struct_name>.mat` in the real layout.

    `clean` leaves out the label problems and broken files (for benchmarks); `unique_pictures` draws only
    that many pictures and reuses their JPEG bytes (fast generation of large benchmark sets).
    Returns (mat path, number of deliberately broken or missing image files).
    """
    from scipy.io import savemat

    root.mkdir(parents=True, exist_ok=True)
    celeb_count = max(4, count // 6)
    celeb_gender = rng.integers(0, 2, celeb_count)
    celeb_birth = [dt.date(1940, 1, 1) + dt.timedelta(days=int(d)) for d in rng.integers(0, 20000, celeb_count)]
    celeb_names = np.empty((1, celeb_count), dtype=object)
    for index in range(celeb_count):
        celeb_names[0, index] = f"Sample Person {index + 1}"
    full_path = np.empty((1, count), dtype=object)
    name = np.empty((1, count), dtype=object)
    face_location = np.empty((1, count), dtype=object)
    dob = np.zeros((1, count))
    photo_taken = np.zeros((1, count))
    gender = np.zeros((1, count))
    face_score = np.zeros((1, count))
    second_face_score = np.full((1, count), np.nan)
    celeb_id = np.zeros((1, count))
    broken = 0
    # Deliberate problems: the first rows of the sample, so even a tiny sample has each of them.
    file_problems = {} if clean else {1: "truncated", 3: "empty", 5: "not_an_image", 7: "missing"}
    picture_pool: dict[int, list[bytes]] = {0: [], 1: []}
    for index in range(count):
        celeb = int(rng.integers(0, celeb_count))
        birth = celeb_birth[celeb]
        year = min(2015, birth.year + int(rng.integers(18, 60)))
        relative = f"{celeb % 100:02d}/nm{celeb + 1:07d}_rm{int(rng.integers(100_000_000, 4_000_000_000))}_{birth.year}-{birth.month}-{birth.day}_{year}.jpg"
        full_path[0, index] = relative
        name[0, index] = str(celeb_names[0, celeb])
        dob[0, index] = _matlab_datenum(birth)
        photo_taken[0, index] = year
        celeb_id[0, index] = celeb + 1
        gender[0, index] = float(celeb_gender[celeb])
        face_score[0, index] = float(rng.uniform(3.2, 6.5))
        roll = 1.0 if clean else rng.random()
        if clean:
            pass
        elif index in (0, 10) or roll < 0.03:
            gender[0, index] = np.nan
        elif index == 2 or roll < 0.06:
            face_score[0, index] = -np.inf
        elif index == 4 or roll < 0.08:
            face_score[0, index] = float(rng.uniform(0.5, 3.0))
        elif index == 6 or roll < 0.11:
            second_face_score[0, index] = float(rng.uniform(1.0, 4.0))
        side = int(rng.integers(100, 700))
        face_location[0, index] = np.array([[side * 0.3, side * 0.3, side * 0.7, side * 0.7]])
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        problem = file_problems.get(index) if count >= 8 else None
        if problem is None and not clean and count > 200 and rng.random() < 0.005:
            problem = str(rng.choice(list(file_problems.values())))
        if problem == "missing":
            broken += 1
            continue
        if problem == "empty":
            target.write_bytes(b"")
            broken += 1
            continue
        if problem == "not_an_image":
            target.write_text("<html>404 Not Found</html>\n")
            broken += 1
            continue
        pool = picture_pool[int(celeb_gender[celeb])]
        if unique_pictures is not None and len(pool) >= max(1, unique_pictures // 2):
            data = pool[index % len(pool)]
        else:
            data = _encoded_face(rng, side, int(celeb_gender[celeb]))
            pool.append(data)
        if problem == "truncated":
            data = data[: len(data) // 2]
            broken += 1
        target.write_bytes(data)
    struct = {
        "dob": dob,
        "photo_taken": photo_taken,
        "full_path": full_path,
        "gender": gender,
        "name": name,
        "face_location": face_location,
        "face_score": face_score,
        "second_face_score": second_face_score,
        "celeb_names": celeb_names,
        "celeb_id": celeb_id,
    }
    if struct_name == "wiki":
        struct.pop("celeb_names")
        struct.pop("celeb_id")
    mat_path = root / f"{struct_name}.mat"
    savemat(str(mat_path), {struct_name: struct}, do_compression=True)
    return mat_path, broken


def write_fer_sample(csv_path: Path, count: int, rng: np.random.Generator) -> int:
    """Write a FER-2013 CSV of `count` drawn faces plus malformed rows; returns the number of bad rows."""
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    probabilities = FER_CLASS_WEIGHTS / FER_CLASS_WEIGHTS.sum()
    usages = ("Training", "PublicTest", "PrivateTest")
    good = "0 " * 2303 + "0"
    bad_rows = [
        f'3,"{good[:-2]}",Training',  # 2,303 pixels
        f'2,"{good[:-1]}x",Training',  # non-numeric pixel
        f'4,"300 {good[2:]}",PublicTest',  # out of range
        f'9,"{good}",Training',  # unknown emotion label
        f'5,"{good}",Training,extra',  # field count
        f'6,"{good}",Validation',  # unknown Usage
    ]
    with open(csv_path, "w", newline="\n") as handle:
        handle.write("emotion,pixels,Usage\n")
        bad_positions = {int(position) for position in np.linspace(2, max(count, 8), len(bad_rows), endpoint=False)}
        bad_iter = iter(bad_rows)
        for index in range(count):
            if index in bad_positions:
                handle.write(next(bad_iter) + "\n")
            emotion = int(rng.choice(len(EMOTION_LABELS), p=probabilities))
            grey = cv2.cvtColor(draw_face(rng, 48, emotion, int(rng.integers(0, 2))), cv2.COLOR_BGR2GRAY)
            usage = usages[int(rng.choice(3, p=[0.8, 0.1, 0.1]))]
            handle.write(f'{emotion},"{" ".join(map(str, grey.ravel().tolist()))}",{usage}\n')
        for remaining in bad_iter:
            handle.write(remaining + "\n")
    return len(bad_rows)


def write_sample(out_dir: str | Path, imdb_count: int = 1200, fer_count: int = 1200, seed: int = 0) -> SampleSummary:
    """Write `out_dir/imdb_crop/` (JPEGs + imdb.mat) and `out_dir/fer2013.csv` from one seed."""
    if imdb_count < 0 or fer_count < 0:
        raise ValueError("sample sizes must be non-negative")
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    imdb_root = out / "imdb_crop"
    mat_path, broken = write_imdb_sample(imdb_root, imdb_count, rng)
    fer_csv = out / "fer2013.csv"
    bad = write_fer_sample(fer_csv, fer_count, rng)
    return SampleSummary(imdb_root, mat_path, fer_csv, imdb_count, broken, fer_count + bad, bad)
