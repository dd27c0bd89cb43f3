"""DVC remote storage from the library's side: fetch a missing model instead of failing."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from emotion.errors import EmotionError

# A down S3 server makes botocore retry for ~45 s; fail in seconds instead, and never probe the
# EC2 metadata address for credentials.
S3_FAST_FAIL = {"AWS_MAX_ATTEMPTS": "1", "AWS_EC2_METADATA_DISABLED": "true", "DVC_NO_ANALYTICS": "1"}


def dvc(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**S3_FAST_FAIL, **os.environ}
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def repo_root(path: Path) -> Path | None:
    """The DVC repository that contains `path` (which need not exist yet)."""
    for folder in [path.resolve(), *path.resolve().parents]:
        if (folder / ".dvc").is_dir():
            return folder
    return None


def default_remote(root: Path) -> str | None:
    result = dvc("remote", "default", cwd=root, timeout=60)
    if result.returncode != 0:
        return None
    return result.stdout.strip() or None


def pull_missing(path: Path) -> str | None:
    """Try `dvc pull <path>` when path is missing inside a DVC repo with a default remote.
    Returns None on success, else a hint for the user saying how to get the model."""
    root = repo_root(path)
    if root is None:
        return "run `dvc repro` in the pipeline's repository, or pass --model with a .keras/.onnx/.tflite file"
    remote = default_remote(root)
    if remote is None:
        return ("run `dvc pull export` after adding a remote (`dvc remote add -d NAME URL`), "
                "or `dvc repro` to train one")
    target = os.path.relpath(path.resolve(), root)
    print(f"{target} is missing: pulling it from DVC remote '{remote}' ...", file=sys.stderr, flush=True)
    result = dvc("pull", target, cwd=root)
    if result.returncode == 0 and path.exists():
        return None
    lines = [line.strip() for line in (result.stderr + result.stdout).splitlines() if line.strip().startswith("ERROR")]
    reason = lines[-1] if lines else "nothing to pull for it"
    return f"`dvc pull {target}` from remote '{remote}' failed ({reason[:200]}); run `dvc repro` to train one"


def resolve_revision(root: Path, rev: str) -> str:
    """A git revision, or a `dvc exp` name (refs/exps/…/NAME), as a commit hash."""
    parsed = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd=root,
                            capture_output=True, text=True)
    if parsed.returncode == 0:
        return parsed.stdout.strip()
    refs = subprocess.run(["git", "for-each-ref", "--format=%(objectname) %(refname)", "refs/exps"], cwd=root,
                          capture_output=True, text=True).stdout.split("\n")
    matches = [line.split()[0] for line in refs if line.endswith(f"/{rev}")]
    if len(matches) != 1:
        raise EmotionError(f"'{rev}' is neither a git revision nor a single `dvc exp` name here; "
                           "see `dvc exp show` or `git log`")
    return matches[0]


def model_at_revision(spec: str, cache: Path) -> Path:
    """REV:PATH (e.g. exp-3f2a1:models/model.keras) → a local copy of that file as of that revision or
    experiment, fetched from the DVC cache or remote (like `git show REV:PATH`)."""
    rev, _, target = spec.partition(":")
    root = repo_root(Path.cwd())
    if root is None or not target:
        raise EmotionError(f"'{spec}': REV:PATH needs a DVC repository and a path, e.g. exp-1a2b3:models/model.keras")
    commit = resolve_revision(root, rev)
    dest = cache / commit[:12] / Path(target).name
    if not dest.exists():
        get_at_commit(root, target, commit, dest, f"'{spec}'")
    return dest


def get_at_commit(root: Path, target: str, commit: str, dest: Path, what: str,
                  fix: str = "check the DVC remote") -> Path:
    """`dvc get` the file or folder `target` as of `commit` into `dest` (from the DVC cache or remote),
    atomically: a failed fetch leaves nothing at dest and raises one line naming `what` and `fix`."""
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    result = dvc("get", str(root), target, "--rev", commit, "-o", str(tmp), "--force", cwd=root)
    if result.returncode != 0 or not tmp.exists():
        lines = [ln.strip() for ln in (result.stderr + result.stdout).splitlines() if ln.strip()]
        raise EmotionError(f"{what}: `dvc get {target} --rev {commit[:12]}` failed "
                           f"({(lines[-1] if lines else 'no output')[:200]}); {fix}")
    if dest.is_dir():
        shutil.rmtree(dest)
    tmp.replace(dest)
    return dest
