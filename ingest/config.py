"""IngestConfig: every setting of `faceray ingest imdb|fer`."""

from __future__ import annotations

from dataclasses import dataclass

from faceray.config import option
from ingest.images import COLOR_CHANNELS
from ingest.splits import parse_ratios


@dataclass(frozen=True)
class IngestConfig:
    """Settings of one ingest run (IMDB-WIKI or FER-2013 into Parquet shards)."""

    dataset: str = option(
        "imdb", "which dataset: imdb (IMDB-WIKI crops + .mat) or fer (FER-2013 CSV)", choices=("imdb", "fer"), cli=False
    )
    out: str = option("", "output directory for OUT/<split>/*.parquet, manifest.json and rejects.csv", required=True)
    root: str = option("", "IMDB-WIKI: the crop folder holding imdb.mat (or wiki.mat) and the NN/ image folders")
    mat: str = option("", "IMDB-WIKI: the .mat metadata file (default: ROOT/imdb.mat, else ROOT/wiki.mat)")
    csv: str = option("", "FER-2013: the fer2013.csv file (emotion,pixels,Usage)")
    size: int = option(
        0, "side of the square output images in pixels; 0 = the dataset's own (64 IMDB as the paper, 48 FER)"
    )
    color: str = option("gray", "colour mode of the output images", choices=tuple(COLOR_CHANNELS))
    split: tuple[float, float, float] = option(
        (0.8, 0.1, 0.1), "IMDB-WIKI train,val,test ratios (FER uses its Usage column)"
    )
    by_identity: bool = option(False, "IMDB-WIKI: keep every celeb_id in one split so test accuracy is honest")
    seed: int = option(0, "seed of the deterministic split hash")
    min_face_score: float = option(
        3.0, "IMDB-WIKI: reject images whose face_score is <= this (-Inf means no face); negative disables"
    )
    drop_unknown_gender: bool = option(True, "IMDB-WIKI: reject images whose gender is NaN")
    drop_second_face: bool = option(True, "IMDB-WIKI: reject images with a second face (second_face_score not NaN)")
    shard_rows: int = option(
        2000, "inputs per chunk; each chunk writes one shard per split and is the unit of resumption"
    )
    overwrite: bool = option(False, "delete an existing output made with other settings instead of refusing")
    progress: bool = option(True, "show a progress bar")
    address: str = option(
        "", "Ray address: empty = embedded local Ray on loopback; 'auto' or ray://HOST:10001 = a cluster"
    )

    def validate(self) -> list[str]:
        """Every problem with these settings, each naming its flag."""
        problems = []
        if not self.out:
            problems.append("--out: an output directory is required")
        if self.dataset == "imdb" and not (self.root or self.mat):
            problems.append("--root: the IMDB-WIKI crop folder is required")
        if self.dataset == "fer" and not self.csv:
            problems.append("--csv: the FER-2013 CSV file is required")
        if self.size < 0 or self.size > 1024:
            problems.append(f"--size: {self.size} is not in 0..1024")
        try:
            parse_ratios(self.split)
        except ValueError as error:
            problems.append(f"--split: {error}")
        if self.shard_rows < 1:
            problems.append(f"--shard-rows: {self.shard_rows} must be at least 1")
        return problems

    @property
    def image_size(self) -> int:
        """The output side in pixels, after applying the dataset default."""
        return self.size or (64 if self.dataset == "imdb" else 48)

    def plan_fields(self) -> dict[str, object]:
        """The settings that decide the output; a resumed run must match them."""
        ignored = {"out", "overwrite", "progress", "address"}
        return {name: value for name, value in self.__dict__.items() if name not in ignored}
