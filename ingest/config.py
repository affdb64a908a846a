"""IngestConfig: every setting of `faceray ingest SOURCE` (the sources are ingest/sources/*.py)."""

from __future__ import annotations

from dataclasses import dataclass

from faceray.config import location_problems, option, output_problems
from faceray.faces import COLOR_CHANNELS
from faceray.ingest.sources import get_source


@dataclass(frozen=True)
class IngestConfig:
    """Settings of one ingest run (IMDB-WIKI or FER-2013 into Parquet shards)."""

    dataset: str = option("imdb", "which source (ingest/sources/): imdb, fer, ...; the CLI's subcommand", cli=False)
    out: str | None = option(
        None,
        "output directory (local, s3:// or gs://) for OUT/<split>/*.parquet, manifest.json and rejects.csv",
        required=True,
    )
    root: str | None = option(
        None, "IMDB-WIKI: the crop folder (local, s3:// or gs://) holding imdb.mat (or wiki.mat) and the NN/ folders"
    )
    mat: str | None = option(None, "IMDB-WIKI: the .mat metadata file (default: ROOT/imdb.mat, else ROOT/wiki.mat)")
    csv: str | None = option(None, "FER-2013: the fer2013.csv file (emotion,pixels,Usage); local, s3:// or gs://")
    size: int | None = option(
        None, "side of the square output images in pixels (default: the dataset's own: 64 IMDB as the paper, 48 FER)"
    )
    color: str = option("gray", "colour mode of the output images", choices=tuple(COLOR_CHANNELS))
    split: tuple[float, float, float] = option(
        (0.8, 0.1, 0.1), "IMDB-WIKI train,val,test ratios (FER uses its Usage column)"
    )
    by_identity: bool = option(False, "IMDB-WIKI: keep every celeb_id in one split so test accuracy is honest")
    seed: int = option(0, "seed of the deterministic split hash")
    min_face_score: float | None = option(
        3.0, "IMDB-WIKI: reject images whose face_score is <= this (-Inf means no face); 'none' disables"
    )
    drop_unknown_gender: bool = option(True, "IMDB-WIKI: reject images whose gender is NaN")
    drop_second_face: bool = option(True, "IMDB-WIKI: reject images with a second face (second_face_score not NaN)")
    shard_rows: int = option(
        2000, "inputs per chunk; each chunk writes one shard per split and is the unit of resumption"
    )
    overwrite: bool = option(False, "delete an existing output made with other settings instead of refusing")
    repair: bool = option(
        False,
        "check a finished output against its manifest's SHA-256s and redo exactly the chunks whose files are damaged "
        "or missing (a shard the ingest did not write is moved to OUT/_work/removed/)",
    )
    progress: bool = option(True, "show a progress bar")
    address: str | None = option(
        None, "Ray address: 'auto' or ray://HOST:10001 = a cluster (default: an embedded local Ray on loopback)"
    )

    def validate(self) -> list[str]:
        """Every problem with these settings, each naming its flag."""
        problems = location_problems(out=self.out, root=self.root, mat=self.mat, csv=self.csv)
        problems += output_problems(out=self.out)
        if not self.out:
            problems.append("--out: an output directory is required")
        try:
            problems += get_source(self.dataset).check(self)
        except ValueError as error:
            problems.append(f"dataset: {error}")
        if self.size is not None and not 1 <= self.size <= 1024:
            problems.append(f"--size: {self.size} is not in 1..1024")
        if self.shard_rows < 1:
            problems.append(f"--shard-rows: {self.shard_rows} must be at least 1")
        return problems

    @property
    def image_size(self) -> int:
        """The output side in pixels, after applying the dataset default."""
        return self.size or get_source(self.dataset).default_size

    def plan_fields(self) -> dict[str, object]:
        """The settings that decide the output; a resumed run must match them."""
        ignored = {"out", "overwrite", "repair", "progress", "address"}
        return {name: value for name, value in self.__dict__.items() if name not in ignored}


@dataclass(frozen=True)
class SampleConfig:
    """Settings of `faceray sample`: synthetic IMDB-WIKI and FER-2013 data in the real layouts."""

    out: str = option(None, "folder (local, s3:// or gs://) for imdb_crop/ and fer2013.csv", required=True)
    imdb: int = option(1200, "IMDB-WIKI images")
    fer: int = option(1200, "FER-2013 rows")
    seed: int = option(0, "random seed")

    def validate(self) -> list[str]:
        problems = output_problems(out=self.out) if self.out else ["--out: a folder is required"]
        if self.imdb < 0 or self.fer < 0:
            problems.append(f"--imdb {self.imdb} / --fer {self.fer}: sample sizes must be >= 0")
        return problems
