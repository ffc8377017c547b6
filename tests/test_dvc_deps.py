"""dvc.yaml's code deps cannot drift: each stage lists exactly its script and the library modules
that script imports, directly or through other modules (lazy imports inside functions and the
`__init__.py` of every package on the way included), read statically from the source."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

from conftest import ROOT

PACKAGE = "wardrobe"


def module_file(name: str, src: Path) -> Path | None:
    """The file of module `name` under src/, or None for a module from elsewhere."""
    base = src.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imported_names(path: Path) -> set[str]:
    """Every module name an import in `path` may load: `import a.b` loads a and a.b, and
    `from a import b` loads a, and a.b when b is a module."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: use absolute imports"
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {prefix for name in names for prefix in _prefixes(name)}


def _prefixes(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def import_closure(script: Path, root: Path) -> set[str]:
    """The script and every file of this project it imports, transitively, relative to root."""
    src, seen, todo = root / "src", set(), [script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imported_names(path):
            if name.split(".")[0] == PACKAGE and (found := module_file(name, src)):
                todo.append(found)
    return {path.relative_to(root).as_posix() for path in seen}


def stages(root: Path) -> dict[str, tuple[str, set[str]]]:
    """{stage: (cmd, deps)} as DVC resolves dvc.yaml (vars interpolated)."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return {
            stage.name: (stage.cmd, {dep.def_path for dep in stage.deps})
            for stage in repo.index.stages
        }


def mismatches(root: Path, resolved: dict[str, tuple[str, set[str]]]) -> list[str]:
    """One line per stage whose code deps differ from its script's import closure."""
    found = []
    for name, (cmd, deps) in resolved.items():
        [script] = [word for word in cmd.split() if word.endswith(".py")]
        closure = import_closure(root / script, root)
        code_deps = {dep for dep in deps if dep.endswith(".py")}
        if missing := sorted(closure - code_deps):
            found.append(f"{name}: dvc.yaml misses {', '.join(missing)}")
        if extra := sorted(code_deps - closure):
            found.append(f"{name}: dvc.yaml lists {', '.join(extra)}, which it does not import")
    return found


@pytest.fixture(scope="module")
def resolved() -> dict[str, tuple[str, set[str]]]:
    return stages(ROOT)


def test_every_stage_lists_exactly_the_code_it_imports(resolved):
    assert set(resolved) == {
        "fetch", "preprocess", "validate", "train_ae", "train_vae", "train_classifier",
        "reference", "evaluate@ae", "evaluate@vae", "collect", "plots@ae", "plots@vae",
        "explore",
    }  # fmt: skip
    assert mismatches(ROOT, resolved) == []


def test_stages_import_only_their_own_model_and_download_code(resolved):
    """The cut the deps follow: a model's module belongs to its training and to the stages
    that load it, the download code to fetch alone."""
    modules = ("fetch.py", "models/vae.py", "models/classifier.py", "checks/suites.py")
    users = {
        module: {name for name, (_, deps) in resolved.items() if f"src/wardrobe/{module}" in deps}
        for module in (*modules, "webassets.py")
    }
    assert users == {
        "fetch.py": {"fetch"},
        "models/vae.py": {
            "train_vae",
            "reference",
            "evaluate@ae",
            "evaluate@vae",
            "plots@ae",
            "plots@vae",
            "explore",
        },
        "models/classifier.py": {"train_classifier", "reference", "evaluate@ae", "evaluate@vae"},
        "checks/suites.py": {"validate"},
        "webassets.py": {"validate"},
    }


def test_a_drifted_dep_list_is_caught(resolved, tmp_path):
    # A dep removed from dvc.yaml.
    cmd, deps = resolved["train_vae"]
    dropped = {**resolved, "train_vae": (cmd, deps - {"src/wardrobe/models/autoencoder.py"})}
    assert mismatches(ROOT, dropped) == [
        "train_vae: dvc.yaml misses src/wardrobe/models/autoencoder.py"
    ]
    # An import added to a module, in a copy of the code: every stage that imports the module
    # now misses the new dependency, and what that one imports.
    for part in ("pipeline", "src"):
        shutil.copytree(ROOT / part, tmp_path / part, ignore=shutil.ignore_patterns("*.pyc"))
    loop = tmp_path / "src" / "wardrobe" / "training" / "loop.py"
    loop.write_text(loop.read_text() + "\n\ndef lazy():\n    import wardrobe.models.vae\n")
    assert mismatches(tmp_path, resolved) == [
        "train_ae: dvc.yaml misses src/wardrobe/models/vae.py",
        "train_classifier: dvc.yaml misses src/wardrobe/models/autoencoder.py, "
        "src/wardrobe/models/vae.py",
    ]
