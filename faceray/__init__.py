"""faceray: distributed data prep, training and serving for face emotion and gender classification."""

__version__ = "0.1.0"
