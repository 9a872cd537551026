"""The package's layering, checked on its import graph (read with ``ast``, nothing hand-listed).

Data flows one way: config, then data and models, then training with the recorder attached, then
the method and its solver, then masks and the run folder. The rules below keep it that way:

* ``solvers/`` and ``analysis/`` are pure numerical cores: no model or mask code, nothing from
  the experiment, the training loop, the recorder, the methods or DDP;
* ``train.py`` never reaches (through any chain of imports) a pruning method or a solver;
* ``config.py`` is a leaf: nothing from ``data/``, ``models/`` or ``record/``;
* ``data/`` knows no model code;
* ``dist/`` is plumbing: it reaches no method, solver, recorder, model or mask code;
* no import cycles, counting imports inside functions too;
* no module mentions the test harness, and no comment cites a document outside the repository.

The graph counts what Python really executes: ``from .a import b`` runs ``a/__init__`` (and
``a/b`` when ``b`` is a module), and importing ``x.y`` first runs every parent package that is not
already running (a module's own packages are).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "causalprune"

# Project code that handles nn.Module objects (builds, masks, traces or wraps models).
MODULE_CODE = ("models", "masks", "structured", "integrations", "pruner", "prune", "experiment")


def module_names(root: Path, package: str) -> dict[str, Path]:
    """``{dotted module name: file}`` of every module under ``root`` (a package called ``package``)."""
    out = {}
    for f in sorted(root.rglob("*.py")):
        parts = [package, *f.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Edges module -> modules of ``package`` that importing it executes directly."""
    mods = module_names(root, package)
    graph: dict[str, set[str]] = {}
    for name, file in mods.items():
        is_pkg = file.name == "__init__.py"
        here = name if is_pkg else name.rpartition(".")[0]
        deps: set[str] = set()
        mine = set(_parents(name)) | ({name} if is_pkg else set())
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                subs = [f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in mods]
                # ``from pkg import submodule`` needs pkg's __init__ only to exist, not its names.
                targets = subs + ([mod] if len(subs) < len(node.names) or mod not in mine else [])
            for t in targets:
                if t in mods:
                    # Parent packages run first, except this module's own: they are running already.
                    deps.update([t, *(p for p in _parents(t) if p in mods and p not in mine)])
        deps.discard(name)
        graph[name] = deps
    return graph


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start, *(p for p in _parents(start) if p in graph)]
    while todo:
        m = todo.pop()
        for d in graph.get(m, ()):
            if d not in seen:
                seen.add(d)
                todo.append(d)
    seen.discard(start)
    return seen


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _under(name: str, *areas: str, package: str = "causalprune") -> bool:
    return any(name == f"{package}.{a}" or name.startswith(f"{package}.{a}.") for a in areas)


def violations(root: Path, package: str = "causalprune") -> list[str]:
    """Every broken layering rule, as one readable line each (empty when the layout is sound)."""
    graph = import_graph(root, package)
    out = []

    def rule(who: list[str], forbidden: tuple[str, ...], why: str, transitive: bool = False) -> None:
        for m in who:
            deps = reachable(graph, m) if transitive else graph[m]
            bad = sorted(d for d in deps if _under(d, *forbidden, package=package))
            if bad:
                out.append(f"{m} {'reaches' if transitive else 'imports'} {', '.join(bad)}: {why}")

    mods = sorted(graph)
    pure = [m for m in mods if _under(m, "solvers", "analysis", package=package)]
    rule(pure, (*MODULE_CODE, "train", "record", "methods", "dist"), "numerical cores stay pure")
    rule([m for m in mods if _under(m, "train", package=package)], ("methods", "solvers"),
         "the training loop knows no pruning method or solver", transitive=True)
    rule([m for m in mods if _under(m, "config", package=package)], ("data", "models", "record"),
         "the configuration is a leaf", transitive=True)
    rule([m for m in mods if _under(m, "data", package=package)], ("models",), "data knows no model code",
         transitive=True)
    rule([m for m in mods if _under(m, "dist", package=package)],
         ("methods", "solvers", "record", "models", "masks", "experiment", "train"), "DDP is plumbing only",
         transitive=True)
    out += [f"import cycle: {' <-> '.join(c)}" for c in cycles(graph)]
    return out


def test_the_package_keeps_its_layers():
    assert violations(SRC) == []


def test_the_check_catches_each_kind_of_violation(tmp_path):
    """The checker itself: a small package that breaks every rule must be reported for each."""
    pkg = tmp_path / "causalprune"
    files = {
        "__init__.py": "",
        "config.py": "from .data import load\n",
        "data/__init__.py": "def load():\n    from ..models import build\n",
        "models/__init__.py": "build = 1\n",
        "train.py": "from .helpers import x\n",
        "helpers.py": "from .solvers.core import fit\nx = 1\n",
        "solvers/__init__.py": "",
        "solvers/core.py": "from ..masks import apply\nfit = 1\n",
        "masks.py": "apply = 1\n",
        "dist/__init__.py": "from ..methods import m\n",
        "methods/__init__.py": "from .a import f\nm = 1\n",
        "methods/a.py": "from . import m\nf = 1\n",
        "analysis/__init__.py": "import causalprune.experiment\n",
        "experiment.py": "",
    }
    for rel, text in files.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)
    found = "\n".join(violations(pkg))
    for expected in ("causalprune.solvers.core imports causalprune.masks",
                     "causalprune.analysis imports causalprune.experiment",
                     "causalprune.train reaches causalprune.solvers",
                     "causalprune.config reaches causalprune.data",
                     "causalprune.data reaches causalprune.models",
                     "causalprune.dist reaches causalprune.methods",
                     "import cycle: causalprune.methods <-> causalprune.methods.a"):
        assert expected in found, f"not reported: {expected}\n{found}"


def test_no_module_mentions_the_test_harness():
    hits = [f"{f.relative_to(SRC)}: {pat}" for f in SRC.rglob("*.py")
            for pat in ("testhooks", "harness", "CAUSALPRUNE_TEST", "CAUSALPRUNE_DEBUG")
            if pat in f.read_text(encoding="utf-8")]
    assert hits == []


@pytest.mark.parametrize("pattern", [r"method-facts", r"\bissue [0-9]"])
def test_code_cites_only_the_paper_and_the_repository(pattern):
    hits = [f"{f.relative_to(SRC)}:{i}" for f in SRC.rglob("*.py")
            for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1) if re.search(pattern, line)]
    assert hits == [], f"cite the paper or docs/method.md instead: {hits[:10]}"
