"""The package's shape, checked: the import layers (import-linter's contracts in pyproject.toml), no import
cycles, bench modules imported at the top of modules (function-local imports only for heavy libraries, and in
the CLI, which imports each command's modules when it runs), one place that branches on where data and models
come from, and the private TRL methods the trainer overrides still looking as it was written against."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import grimp

from tests.helpers import REPO

PACKAGE = REPO / "bench"
LAZY_IMPORTS_ALLOWED = {PACKAGE / "cli.py"}  # one function per command, each importing what it uses


def test_import_contracts_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(lint)], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


def _strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's components of size > 1 (the import cycles)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles() -> None:
    imports = grimp.build_graph("bench")
    graph = {m: set(imports.find_modules_directly_imported_by(m)) for m in imports.modules}
    assert _strongly_connected(graph) == []


def _function_local_bench_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for sub in ast.walk(node):
            if isinstance(sub, ast.ImportFrom) and (sub.level or (sub.module or "").split(".")[0] == "bench"):
                found.append(f"{path.relative_to(REPO)}:{sub.lineno} from {'.' * sub.level}{sub.module}")
            elif isinstance(sub, ast.Import) and any(a.name.split(".")[0] == "bench" for a in sub.names):
                found.append(f"{path.relative_to(REPO)}:{sub.lineno} import {sub.names[0].name}")
    return found


def test_bench_modules_are_imported_at_module_top() -> None:
    """A function-local import of a bench module hides a dependency (and a cycle) from readers and linters."""
    found = [
        hit
        for path in sorted(PACKAGE.rglob("*.py"))
        if path not in LAZY_IMPORTS_ALLOWED
        for hit in _function_local_bench_imports(path)
    ]
    assert found == []


def test_only_the_source_picker_reads_where_data_and_models_come_from() -> None:
    """`dataset.source` and `model.source` are read in bench/sources/__init__.py (which picks the sources)
    and nowhere else: everything downstream calls the DataSource and ModelSource interfaces."""
    readers = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "source":
                owner = ast.unparse(node.value)
                if owner.endswith(("dataset", "model", ".d", ".m")) or owner in ("d", "m"):
                    readers.append(f"{path.relative_to(REPO)}:{node.lineno} {owner}.source")
    picker = "bench/sources/__init__.py"
    assert readers and all(r.startswith(picker) or r.startswith("bench/sources/base.py") for r in readers), (
        readers
    )


def test_trainer_overrides_the_private_trl_api_it_was_written_against() -> None:
    """A TRL upgrade that renames, removes or re-signs one of the private DPOTrainer methods VariantTrainer
    overrides fails here by name, instead of silently training something else."""
    from trl import DPOTrainer

    from bench.train.trainer import TRL_PRIVATE_API, VariantTrainer

    for name, expected in TRL_PRIVATE_API.items():
        theirs = getattr(DPOTrainer, name, None)
        assert theirs is not None, (
            f"TRL's DPOTrainer has no {name} any more: bench/train/trainer.py overrides it"
        )
        params = tuple(inspect.signature(theirs).parameters)
        assert params == expected, (
            f"DPOTrainer.{name} now takes {params}, bench/train/trainer.py was written for {expected}: "
            "read TRL's new version and update the override"
        )
        assert name in vars(VariantTrainer), (
            f"TRL_PRIVATE_API lists {name} but VariantTrainer does not override it"
        )
    overridden = {n for n in vars(VariantTrainer) if n.startswith("_") and not n.startswith("__")}
    ours = {  # defined here, not TRL's
        "_sequence_logps",
        "_token_logps",
        "_token_stats",
        "_cached_reference_logps",
        "_cached_reference_token_logps",
        "_reference_pass",
        "_log_batch",
    }
    assert overridden - ours == set(TRL_PRIVATE_API)
    assert not ours & set(dir(DPOTrainer)), "TRL now has a method of the name of one of ours"
