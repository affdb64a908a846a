"""faceray: distributed data prep, training and serving for face emotion and gender classification.

`from faceray import FaceAnalyzer` gives the in-process face pipeline (serve/analyzer.py); it is imported on
first use, so importing faceray loads nothing heavy.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["FaceAnalyzer", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "FaceAnalyzer":
        from serve.analyzer import FaceAnalyzer

        return FaceAnalyzer
    raise AttributeError(f"module 'faceray' has no attribute {name!r}")
