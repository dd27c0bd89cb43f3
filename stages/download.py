"""Stage 1: unpack the FER2013 archive in data/source/ (a Kaggle zip or its extracted folder, placed there
by `emotion fetch` and tracked by content in data/source.dvc) into data/raw/{train,test}/<class>/."""
from pathlib import Path

from emotion.data import SOURCE_DIR, fetch_raw, source_archive
from emotion.errors import one_line_errors
from emotion.pipeline import StageInputs


@one_line_errors
def main():
    inputs = StageInputs("download")
    archive = source_archive(SOURCE_DIR)
    print(f"download: unpacking {archive}")
    fetch_raw(archive, Path("data/raw"))
    inputs.verify()


if __name__ == "__main__":
    main()
