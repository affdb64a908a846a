"""Command line of the ingest stage: `faceray sample`, `faceray ingest SOURCE`, `faceray inspect`."""

from __future__ import annotations

import argparse

from faceray.config import add_config_arguments, resolve_config
from faceray.console import terminal_stderr
from faceray.ingest.config import IngestConfig, SampleConfig
from faceray.ingest.sources import sources
from faceray.shards import FormatError


def register(subparsers: argparse._SubParsersAction) -> None:
    sample = subparsers.add_parser(
        "sample",
        help="write synthetic IMDB-WIKI and FER-2013 sample data in the real layouts",
        description="Write drawn faces as an IMDB-WIKI crop folder (imdb.mat, NN/*.jpg) and a FER-2013 CSV, in exactly "
        "the real layouts, for trying every stage without the real datasets.",
    )
    sample.add_argument("--config", help="YAML file of settings (flags override it)")
    add_config_arguments(sample, SampleConfig)
    sample.set_defaults(handler=run_sample)

    ingest = subparsers.add_parser(
        "ingest",
        help="decode and resize a dataset into Parquet shards with Ray Data",
        description="Decode, crop and resize a dataset into OUT/<split>/*.parquet with Ray Data: resumable, every "
        "rejected input counted and explained in OUT/rejects.csv, every file's SHA-256 in OUT/manifest.json.",
    )
    all_sources = sources()
    datasets = ingest.add_subparsers(dest="dataset", required=True, metavar="{" + ",".join(all_sources) + "}")
    # Each source's flags: the common settings plus the ones it reads (Source.settings), none of the others'.
    source_settings = set().union(*(source.settings for source in all_sources.values()))
    for name, source in all_sources.items():
        parser = datasets.add_parser(
            name, help=source.description, description=f"Ingest {source.description} into OUT/<split>/*.parquet."
        )
        parser.add_argument("--config", help="YAML file of settings (flags override it)")
        add_config_arguments(parser, IngestConfig, skip=source_settings - source.settings)
        parser.set_defaults(handler=run_ingest_command)

    inspect = subparsers.add_parser(
        "inspect",
        help="show an ingest output: counts table, sample grid, class chart",
        description="Print an ingest output's counts per split and label and its rejects, and write a grid of samples "
        "per class and a class chart under DATA/inspect/.",
    )
    inspect.add_argument("data", help="an ingest output folder (holding manifest.json)")
    inspect.add_argument("--per-class", type=int, default=8, help="samples per class in the grid (default: 8)")
    inspect.set_defaults(handler=run_inspect)


def run_sample(arguments: argparse.Namespace) -> int:
    from faceray.config import location
    from faceray.ingest.sample import write_sample
    from faceray.storage import local_folder

    config = resolve_config(SampleConfig, arguments, arguments.config)
    out = location(config.out, "--out", output=True)
    with local_folder(out) as folder:  # written locally, then uploaded when --out is in object storage
        summary = write_sample(folder, config.imdb, config.fer, config.seed)
    print(
        f"wrote {summary.imdb_images} IMDB-WIKI rows ({summary.imdb_broken_files} broken files on purpose) "
        f"under {out / summary.imdb_root.name} and {summary.fer_rows} FER-2013 rows ({summary.fer_bad_rows} "
        f"malformed on purpose) to {out / summary.fer_csv.name}"
    )
    return 0


def run_ingest_command(arguments: argparse.Namespace) -> int:
    from faceray.ingest.pipeline import run_ingest, summary_line
    from faceray.runtime import init_ray
    from faceray.stopping import graceful_stop

    config = resolve_config(IngestConfig, arguments, arguments.config, dataset=arguments.dataset)
    init_ray(config.address or None, dashboard=False)  # before the handlers: ray.init installs its own for SIGTERM
    kept = "finished chunks are kept"
    with graceful_stop("the ingest", kept, interrupt=True) as stop, stop.as_stop(f"the ingest ({kept})"):
        manifest = run_ingest(config, log=print)
    print(summary_line(manifest))
    print(f"manifest: {config.out}/manifest.json  rejects: {config.out}/rejects.csv", file=terminal_stderr())
    return 0


def run_inspect(arguments: argparse.Namespace) -> int:
    from faceray.config import ConfigError
    from faceray.ingest.inspect import inspect_output

    try:
        table, written = inspect_output(arguments.data, arguments.per_class)
    except FormatError as error:
        raise ConfigError(str(error)) from None
    print(table)
    for path in written:
        print(f"wrote {path}")
    return 0
