"""Facial-emotion recognition on FER2013: the library behind the DVC stages and the `emotion` command."""
import os

# TensorFlow's C++ start-up chatter (oneDNN notes, absl warnings) would bury our one-line errors.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
