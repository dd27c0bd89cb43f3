"""Stage 1: fetch FER2013 (Kaggle handle, zip or folder) into data/raw/{train,test}/<class>/."""
from pathlib import Path

from emotion.config import load_params
from emotion.data import fetch_raw
from emotion.errors import one_line_errors


@one_line_errors
def main():
    params = load_params()
    print(f"download: fetching {params.download.source}")
    fetch_raw(params.download.source, Path("data/raw"))


if __name__ == "__main__":
    main()
