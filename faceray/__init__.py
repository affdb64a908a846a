"""faceray: distributed data prep, training and serving for face emotion and gender classification.

One installed name: the stages are `faceray.ingest`, `faceray.train`, `faceray.serve` and `faceray.cluster`. In the
repository they are the top-level folders ingest/ train/ serve/ cluster/ (the layout), mapped into this package by
setuptools' `package-dir` in a wheel; in a source tree (an editable install, a Ray job's working_dir) this
package's `__path__` reaches them below.

`from faceray import FaceAnalyzer` gives the in-process face pipeline (serve/analyzer.py); it is imported on
first use, so importing faceray loads nothing heavy.
"""

import os as _os
from typing import Any

STAGES = ("ingest", "train", "serve", "cluster")

_source_tree = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if not _os.path.isdir(_os.path.join(_os.path.dirname(_os.path.abspath(__file__)), "serve")) and all(
    _os.path.isfile(_os.path.join(_source_tree, stage, "__init__.py")) for stage in STAGES
):
    # A source tree: faceray.<stage> is the <stage>/ folder beside this one (a wheel holds it inside faceray/).
    __path__.append(_source_tree)

__version__ = "0.1.0"
__all__ = ["FaceAnalyzer", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "FaceAnalyzer":
        from faceray.serve.analyzer import FaceAnalyzer

        return FaceAnalyzer
    raise AttributeError(f"module 'faceray' has no attribute {name!r}")
