"""The model registry: versions and stages of the model as GTO git tags, files from the DVC remote.

dvc.yaml declares the artifact (`artifacts: emotion: path: models/export`). `gto register emotion` tags a
commit as a version (emotion@v1.2.0); `gto assign emotion --version v1.2.0 --stage prod` tags the stage.
`emotion pull --stage prod` and `--model emotion@prod` resolve those tags to one commit and fetch
exactly that commit's export folder (`dvc get`, from the DVC cache or remote)."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

from emotion.errors import EmotionError
from emotion.storage import get_at_commit, repo_root

DEFAULT_ARTIFACT = "emotion"
CACHE = Path(".emotion-cache/registry")
_SPEC = re.compile(r"^(?P<name>[a-z0-9][a-z0-9-]*)@(?P<ref>[A-Za-z0-9][\w.+-]*)$")
_VERSION = re.compile(r"^v?\d+(\.\d+){0,2}$")


def parse_spec(text: str) -> tuple[str, str | None, str | None] | None:
    """'emotion@prod' → (name, stage, None); 'emotion@v1.2.0' → (name, None, version); else None."""
    match = _SPEC.match(str(text))
    if not match:
        return None
    ref = match["ref"]
    return (match["name"], None, ref) if _VERSION.match(ref) else (match["name"], ref, None)


def artifact_path(root: Path, name: str) -> str:
    declared = (yaml.safe_load((root / "dvc.yaml").read_text()) or {}).get("artifacts") or {}
    if name not in declared:
        raise EmotionError(f"dvc.yaml: no artifact '{name}'; declared: {', '.join(declared) or 'none'}")
    return declared[name]["path"]


def versions(root: Path, name: str) -> list[dict]:
    """Registered versions, newest first: {'version', 'commit', 'stages'} each."""
    import gto.api
    from gto.exceptions import ArtifactNotFound

    try:
        shown = gto.api.show(str(root), name)
    except ArtifactNotFound:  # no tag of the artifact yet: nothing registered
        return []
    found = [v for v in shown if v.get("is_active", True)]
    return [{"version": v["version"], "commit": v["commit_hexsha"],
             "stages": sorted(s["stage"] for s in v.get("stages", []) if s.get("is_active", True))} for v in found]


def resolve(root: Path, name: str, stage: str | None = None, version: str | None = None) -> dict:
    """The one registered version that a stage points to, or a named version, or the latest."""
    known = versions(root, name)
    if not known:
        raise EmotionError(f"no registered versions of '{name}'; register one with "
                           f"`gto register {name} HEAD --version v1.0.0`")
    if version:
        wanted = version if version.startswith("v") else f"v{version}"
        for entry in known:
            if entry["version"] == wanted:
                return entry
        raise EmotionError(f"'{name}' has no version {wanted}; registered: "
                           f"{', '.join(v['version'] for v in known)}")
    if stage:
        for entry in known:
            if stage in entry["stages"]:
                return entry
        stages = sorted({s for v in known for s in v["stages"]})
        raise EmotionError(f"no version of '{name}' is in stage '{stage}'; stages in use: "
                           f"{', '.join(stages) or 'none'} (assign one with "
                           f"`gto assign {name} --version {known[0]['version']} --stage {stage}`)")
    return known[0]


def fetch(name: str = DEFAULT_ARTIFACT, stage: str | None = None, version: str | None = None,
          out: Path | None = None, root: Path | None = None) -> tuple[dict, Path]:
    """Resolve the tags, then `dvc get` that commit's artifact folder into `out` (default: a cache folder
    per version, reused). Returns (the version entry, the local folder)."""
    root = root or repo_root(Path.cwd())
    if root is None:
        raise EmotionError("the model registry needs the project's git + DVC repository; run this inside a clone")
    entry = resolve(root, name, stage, version)
    target = artifact_path(root, name)
    dest = Path(out) if out else root / CACHE / name / entry["version"]
    if not (out is None and dest.exists()):
        get_at_commit(root, target, entry["commit"], dest, f"{name}@{entry['version']}")
    return entry, dest


def local_model(spec: str) -> Path | None:
    """NAME@STAGE or NAME@VERSION → the fetched folder; None when `spec` is not such a name."""
    parsed = parse_spec(spec)
    if parsed is None or Path(spec).exists():
        return None
    name, stage, version = parsed
    return fetch(name, stage, version)[1]


def describe(root: Path, name: str = DEFAULT_ARTIFACT) -> str:
    """One line for a review: which version each stage serves, and the latest registered."""
    try:
        known = versions(root, name)
    except Exception as err:  # a review must not fail for the registry
        return f"registry unavailable ({str(err).splitlines()[0][:120]})"
    if not known:
        return f"no registered versions of '{name}' yet"
    stages = {s: v["version"] for v in reversed(known) for s in v["stages"]}
    held = ", ".join(f"{s}: {name}@{v}" for s, v in sorted(stages.items())) or "no stage assigned"
    return f"{held}; latest registered {name}@{known[0]['version']} (commit {known[0]['commit'][:7]})"
