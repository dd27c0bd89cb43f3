"""Facial-emotion recognition on FER2013: the library behind the DVC stages and the `emotion` command."""
__version__ = "0.1.0"
