"""dvc.yaml's code deps follow the code: each stage depends on exactly the project modules its script
imports, directly or through other modules (derived from the source with ast, so it stays true as
modules move)."""
import ast
from pathlib import Path

import yaml

from emotion.pipeline import declared_inputs

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "emotion"


def imported_modules(path: Path) -> set[str]:
    """Project modules (emotion.x) a file imports anywhere, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "emotion"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "emotion":
            found.add(node.module)
            # `from emotion import plots` imports the module emotion.plots
            found |= {f"{node.module}.{a.name}" for a in node.names if (PACKAGE / f"{a.name}.py").exists()
                      and node.module == "emotion"}
    return found


def module_file(name: str) -> Path:
    parts = name.split(".")[1:]
    return PACKAGE.joinpath(*parts).with_suffix(".py") if parts else PACKAGE / "__init__.py"


def import_closure(script: Path) -> set[str]:
    """Repo-relative paths of every project module `script` loads, the package's __init__ included."""
    todo, seen = list(imported_modules(script)), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(imported_modules(module_file(name)))
    files = {module_file(name) for name in seen} | ({PACKAGE / "__init__.py"} if seen else set())
    return {str(f.relative_to(REPO)) for f in files}


def test_every_stage_depends_on_exactly_the_modules_its_script_imports():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    wrong = {}
    for name in stages:
        script = REPO / "stages" / f"{name}.py"
        declared = set(declared_inputs(name, REPO / "dvc.yaml")[1])
        code = {d for d in declared if d.startswith("src/")}
        assert f"stages/{name}.py" in declared, f"stage {name}: its script is not a dep"
        expected = import_closure(script)
        if code != expected:
            wrong[name] = {"missing": sorted(expected - code), "extra": sorted(code - expected)}
    assert not wrong, f"dvc.yaml code deps differ from the import closure: {wrong}"


def test_closure_follows_imports_through_other_modules(tmp_path):
    # the evaluate stage imports emotion.inference, which imports emotion.models: both must be found
    closure = import_closure(REPO / "stages" / "evaluate.py")
    assert "src/emotion/inference.py" in closure
    direct = {str(module_file(m).relative_to(REPO)) for m in imported_modules(REPO / "stages" / "evaluate.py")}
    assert closure > direct, "the closure should reach modules the script does not import itself"
