"""Atomic, deterministic writes (an output is either complete or absent, and equal inputs give equal
bytes), the npz reader that matches them, and a chunked file digest."""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from emotion.errors import EmotionError

_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_UMASK = os.umask(0)
os.umask(_UMASK)


def file_digest(path: str | os.PathLike, algorithm: str) -> str:
    """Hex digest of a file's bytes ('md5', 'sha256'), read in 1 MiB chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, is_dir: bool = False):
    """Yield a temporary sibling of `dest`; move it over `dest` only if the block succeeds. A file never
    replaces a folder (a folder given where a file is written is the user's, with their files in it)."""
    dest = Path(dest)
    if not is_dir and dest.is_dir():
        raise EmotionError(f"{dest}: is a folder, and a file is written here; give a file path, or move the folder")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if is_dir:
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=dest.suffix, dir=dest.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, (0o777 if is_dir else 0o666) & ~_UMASK)  # mkstemp/mkdtemp make them private
        if is_dir and dest.is_dir() and not dest.is_symlink():
            shutil.rmtree(dest)
        elif dest.exists() or dest.is_symlink():
            dest.unlink()
        os.replace(tmp, dest)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def write_text(dest, text: str) -> None:
    with atomic_path(dest) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")


def write_json(dest, obj) -> None:
    write_text(dest, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_npz(dest, **arrays: np.ndarray) -> None:
    """Like np.savez, but with fixed zip timestamps so the same arrays always give the same bytes."""
    with atomic_path(dest) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:
        for name in sorted(arrays):
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asarray(arrays[name], order="C"), allow_pickle=False)  # keeps 0-d
            archive.writestr(zipfile.ZipInfo(f"{name}.npy", _FIXED_ZIP_TIME), buffer.getvalue())


def fix_zip_times(path, edit=lambda name, data: data) -> None:
    """Rewrite a zip in place with fixed timestamps (and each member passed through `edit`), so equal
    contents give equal bytes; members keep their order and compression."""
    with zipfile.ZipFile(path) as archive:
        members = [(info.filename, info.compress_type, edit(info.filename, archive.read(info)))
                   for info in archive.infolist()]
    with zipfile.ZipFile(path, "w") as archive:
        for name, compression, data in members:
            info = zipfile.ZipInfo(name, _FIXED_ZIP_TIME)
            info.compress_type = compression
            archive.writestr(info, data)


def load_npz(path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}
