"""A Markdown review of a model change for a pull request: params and metrics diffs from DVC,
per-class changes and the confusion matrices of both sides. Reads only git-tracked files
(metrics/, plots/), so it needs no DVC remote and no training."""
from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd

from emotion.data import CLASSES
from emotion.errors import EmotionError
from emotion.fileio import write_text
from emotion.storage import dvc

EVAL = "metrics/eval.json"
CONFUSION = "plots/confusion.csv"


def resolve(root: Path, rev: str) -> str:
    """A git revision or a DVC experiment name → commit SHA."""
    from dvc.scm import SCM, RevError, resolve_rev

    try:
        return resolve_rev(SCM(str(root)), rev)
    except RevError:
        raise EmotionError(f"'{rev}' is neither a git revision nor an experiment name (see `dvc exp show`)") from None


def read_at(root: Path, sha: str | None, path: str) -> str | None:
    """File contents at a commit, or in the workspace when sha is None; None if absent."""
    if sha is None:
        file = root / path
        return file.read_text() if file.exists() else None
    result = subprocess.run(["git", "show", f"{sha}:{path}"], cwd=root, capture_output=True, text=True)
    return result.stdout if result.returncode == 0 else None


def confusion_matrix_at(root: Path, sha: str | None) -> np.ndarray | None:
    text = read_at(root, sha, CONFUSION)
    if text is None:
        return None
    rows = pd.read_csv(io.StringIO(text))
    table = pd.crosstab(rows.actual, rows.predicted).reindex(index=CLASSES, columns=CLASSES, fill_value=0)
    return table.to_numpy()


def _dvc_md(root: Path, kind: str, base: str, new: str | None) -> str:
    args = [kind, "diff", base] + ([new] if new else []) + ["--md"]
    if kind == "params":
        args.append("--all")
    result = dvc(*args, cwd=root, timeout=300)
    if result.returncode != 0:
        raise EmotionError(f"`dvc {' '.join(args)}` failed: {result.stderr.strip().splitlines()[-1:]}")
    return result.stdout.strip() or "_no changes_"


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def _delta(new, old) -> str:
    return "–" if new is None or old is None else f"{100 * (new - old):+.2f}"


def headline_table(base: dict, new: dict) -> list[str]:
    lines = ["| metric (%) | base | new | Δ |", "|---|---:|---:|---:|"]
    for split in ("val", "test"):  # val first: choices are made on it; test reports
        for key in ("accuracy", "macro_f1"):
            old, cur = base.get(split, {}).get(key), new.get(split, {}).get(key)
            lines.append(f"| {split} {key} | {_pct(old)} | {_pct(cur)} | {_delta(cur, old)} |")
    return lines


def per_class_table(base: dict, new: dict, split: str) -> list[str]:
    lines = [f"| class ({split}) | recall base | recall new | Δ recall | F1 base | F1 new | Δ F1 |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name in CLASSES:
        old = base.get(split, {}).get("per_class", {}).get(name, {})
        cur = new.get(split, {}).get("per_class", {}).get(name, {})
        lines.append(f"| {name} | {_pct(old.get('recall'))} | {_pct(cur.get('recall'))} | "
                     f"{_delta(cur.get('recall'), old.get('recall'))} | {_pct(old.get('f1'))} | "
                     f"{_pct(cur.get('f1'))} | {_delta(cur.get('f1'), old.get('f1'))} |")
    return lines


def confusion_change_table(base: np.ndarray, new: np.ndarray) -> list[str]:
    """new − base counts; rows are actual classes, columns predicted."""
    diff = new - base
    lines = ["| actual \\ predicted | " + " | ".join(CLASSES) + " |", "|---" * (len(CLASSES) + 1) + "|"]
    for i, name in enumerate(CLASSES):
        lines.append(f"| {name} | " + " | ".join(f"{v:+d}" if v else "·" for v in diff[i]) + " |")
    return lines


def build_report(root: Path, base: str, new: str | None, out: Path) -> str:
    """Write out (Markdown) and confusion PNGs beside it; return the Markdown."""
    from emotion.plots import plot_confusion

    root = Path(root).resolve()
    base_sha = resolve(root, base)
    new_sha = resolve(root, new) if new else None
    label = new or "workspace"
    base_eval = json.loads(read_at(root, base_sha, EVAL) or "{}")
    new_eval = json.loads(read_at(root, new_sha, EVAL) or "{}")
    if not new_eval:
        raise EmotionError(f"{label} has no {EVAL}: run `dvc repro` (or `dvc exp run`) first")

    from emotion.registry import describe

    lines = [f"## Model review: `{label}` vs `{base}` ({base_sha[:7]})", "",
             f"Registry (GTO): {describe(root)}. Merging this and registering it would replace the version "
             "its stage serves.", ""]
    lines += headline_table(base_eval, new_eval) + ["", "### Params", "", _dvc_md(root, "params", base, new),
                                                    "", "### Metrics", "", _dvc_md(root, "metrics", base, new),
                                                    "", "### Per class", ""]
    lines += per_class_table(base_eval, new_eval, "val") + [""] + per_class_table(base_eval, new_eval, "test")
    matrices = {side: confusion_matrix_at(root, sha) for side, sha in (("base", base_sha), ("new", new_sha))}
    if all(m is not None for m in matrices.values()):
        assets = out.parent / f"{out.stem}_assets"
        for side, matrix in matrices.items():
            plot_confusion(matrix, assets / f"confusion_{side}.png", f"{side}: {base if side == 'base' else label}")
        rel = assets.name
        lines += ["", "### Confusion matrices (test)", "", f"| base `{base}` | new `{label}` |", "|---|---|",
                  f"| ![base]({rel}/confusion_base.png) | ![new]({rel}/confusion_new.png) |", "",
                  "Change in counts (new − base):", ""]
        lines += confusion_change_table(matrices["base"], matrices["new"])
    text = "\n".join(lines) + "\n"
    write_text(out, text)
    return text
