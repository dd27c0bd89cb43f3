"""What a DVC stage ran with. dvc.lock records a stage's params and deps as they are when the stage
*ends*; a value edited while it ran would be recorded though the stage never used it. `StageInputs`
reads the stage's params and dep contents (as dvc.yaml declares them) when the stage starts, and
`verify()` fails, before the stage's final outputs are written, if any of them changed since."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import yaml

from emotion.errors import EmotionError
from emotion.fileio import file_digest


def declared_inputs(stage: str, dvc_yaml: str | Path = "dvc.yaml") -> tuple[list[str], list[str]]:
    """The params.yaml keys and dep paths that dvc.yaml lists for `stage`."""
    try:
        spec = yaml.safe_load(Path(dvc_yaml).read_text(encoding="utf-8"))["stages"][stage]
    except (OSError, KeyError, TypeError) as err:
        raise EmotionError(f"{dvc_yaml}: no stage '{stage}' ({err}); run stages from the repository root") from None
    keys = []
    for entry in spec.get("params", []):  # "train.lr", or {"params.yaml": [keys]}
        keys += [entry] if isinstance(entry, str) else [k for values in entry.values() for k in values]
    deps = [d if isinstance(d, str) else next(iter(d)) for d in spec.get("deps", [])]
    return keys, deps


def content_hash(path: Path) -> str | None:
    """md5 of a file, or of a folder's sorted (relative path, file md5) list; None if it does not exist."""
    if path.is_file():
        return file_digest(path, "md5")
    if not path.is_dir():
        return None
    digest = hashlib.md5()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{file.relative_to(path).as_posix()}\0{file_digest(file, 'md5')}\n".encode())
    return digest.hexdigest()


def _param_values(keys: list[str], params_file: Path) -> dict:
    raw = yaml.safe_load(params_file.read_text(encoding="utf-8")) or {}
    values = {}
    for key in keys:
        node = raw
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        values[key] = node
    return values


class StageInputs:
    """The inputs of one stage, read at construction; `fingerprint` names them for resumable state."""

    def __init__(self, stage: str, root: str | Path = "."):
        self.stage, self.root = stage, Path(root)
        self.keys, self.deps = declared_inputs(stage, self.root / "dvc.yaml")
        self.started = self._read()

    def _read(self) -> dict:
        return {"params": _param_values(self.keys, self.root / "params.yaml"),
                "deps": {dep: content_hash(self.root / dep) for dep in self.deps}}

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.started, sort_keys=True, default=str).encode()).hexdigest()

    def verify(self) -> None:
        """Raise if a param or dep changed since the stage started: DVC then keeps the previous lock entry."""
        now = self._read()
        changed = [f"params.yaml {key} ({self.started['params'][key]!r} → {value!r})"
                   for key, value in now["params"].items() if value != self.started["params"][key]]
        changed += [dep for dep, digest in now["deps"].items() if digest != self.started["deps"][dep]]
        if changed:
            raise EmotionError(f"{', '.join(changed)} changed while stage '{self.stage}' ran, so its outputs would "
                               f"not match dvc.lock; nothing was recorded: run `dvc repro` again")
