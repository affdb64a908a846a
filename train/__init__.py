"""Training: the paper's two models (Keras), a framework-free training core and a Ray Train wrapper."""
