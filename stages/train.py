"""Stage 5: train the model named in params.yaml (train.*) → models/model.keras; curves via DVCLive.
A killed run continues from models/train_state/ (a persistent output) on the next `dvc repro`."""
from pathlib import Path

from dvclive import Live

from emotion.config import load_params
from emotion.errors import one_line_errors
from emotion.fileio import load_npz
from emotion.pipeline import StageInputs
from emotion.training import (drop_torn_live_summary, keep_freed_memory, mark_finished, run_fingerprint, save_model,
                              saved_state, train)

STATE = Path("models/train_state")


@one_line_errors
def main():
    keep_freed_memory()
    inputs = StageInputs("train")
    params = load_params().train
    train_set, val_set = load_npz("data/prepared/train.npz"), load_npz("data/prepared/val.npz")
    fingerprint = run_fingerprint(inputs.fingerprint, params)
    resume = saved_state(STATE, fingerprint) is not None
    if resume:
        drop_torn_live_summary(Path("dvclive"))
    with Live("dvclive", save_dvc_exp=False, dvcyaml=None, resume=resume) as live:
        classifier, summary = train(params, train_set, val_set, live, STATE, fingerprint)
        live.summary.update(summary)
    inputs.verify()
    save_model(classifier, Path("models/model.keras"))
    mark_finished(STATE, fingerprint, summary["epochs_run"])
    print(f"train: best val accuracy {summary['best_val_accuracy']:.4f} at epoch {summary['best_epoch']}")


if __name__ == "__main__":
    main()
