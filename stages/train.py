"""Stage 5: train the model named in params.yaml (train.*) → models/model.keras; curves via DVCLive."""
from pathlib import Path

from dvclive import Live

from emotion.config import load_params
from emotion.errors import one_line_errors
from emotion.fileio import load_npz
from emotion.training import train


@one_line_errors
def main():
    params = load_params().train
    train_set, val_set = load_npz("data/prepared/train.npz"), load_npz("data/prepared/val.npz")
    with Live("dvclive", save_dvc_exp=False, dvcyaml=None) as live:
        summary = train(params, train_set, val_set, Path("models/model.keras"), live)
        live.summary.update(summary)
    print(f"train: best val accuracy {summary['best_val_accuracy']:.4f} at epoch {summary['best_epoch']}")


if __name__ == "__main__":
    main()
