"""The layout's rules, held against the code: which folder of petit/ may import which (the same
table as docs/development.md, which must not drift from this one), where each heavy third-party
library may be imported, empty __init__ files, module size, and a supervisor that loads none of
tornado, yaml, tinydb or prometheus_client."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "petit"
DEVELOPMENT_DOC = ROOT / "docs" / "development.md"
ANYTHING = "anything, lazily"

# folder (or top-level module) -> what it may import; `cli` imports the rest inside functions only
ALLOWED: dict[str, set[str] | str] = {
    "errors": set(),
    "logconf": set(),
    "core": {"errors", "core"},
    "jobs": {"errors", "core", "jobs"},
    "storage": {"errors", "core", "storage"},
    "execution": {"errors", "core", "storage", "execution"},
    "ipc": {"errors", "core", "ipc"},
    "api": {"errors", "logconf", "core", "storage", "ipc", "api"},
    "service": {"errors", "logconf", "core", "jobs", "storage", "execution", "ipc", "service"},
    "cli": ANYTHING,
    "__main__": {"cli"},
}
# The long-lived supervisor process: what it imports stays light.
SUPERVISOR_SIDE = {
    "service.supervisor",
    "service.child",
    "service.control_server",
    "service.hub",
    "service.entry",
    "service.settings",
    "service.config_file",
    "service.security_config",
    "service.socket_door",
    "service.key_reload",
    "service.startup",
}
SUPERVISOR_MAY_IMPORT = {"errors", "logconf", "ipc", *SUPERVISOR_SIDE}
# What the modules every command loads may import at module level; the rest is imported inside
# the command that needs it (the other cli modules are themselves imported that way).
CLI_EAGER = {"cli.main", "cli.commands"}
CLI_MODULE_LEVEL = {"", "errors", "cli"}
# third-party library -> the only places (folders or modules) that may import it
THIRD_PARTY_HOMES = {
    "tornado": {"api"},
    "tinydb": {"storage"},
    "yaml": {"jobs"},
    "prometheus_client": {"api.exposition"},
}
HEAVY = sorted(THIRD_PARTY_HOMES)
MAX_MODULE_LINES = 420


def modules() -> dict[str, Path]:
    """'core.model' -> its path, for every module of the package ('' is petit/__init__.py)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path) -> list[tuple[str, int, bool]]:
    """(imported name relative to petit, or a third-party top name prefixed '!', line, is it at
    module level) for every import statement of a module."""
    tree = ast.parse(path.read_text(), str(path))
    package = [
        p for p in (name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]) if p
    ]
    top_level = {id(node) for node in tree.body}
    for node in tree.body:  # `try: import x` and `if ...: import x` at module level count too
        if isinstance(node, (ast.If, ast.Try)):
            top_level.update(id(child) for child in ast.walk(node))
    found = []
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                module = ".".join([*base, node.module] if node.module else base)
                targets = [f"petit.{module}" if module else "petit"]
                if not node.module:  # `from .. import x`: x is a module, or a name of the package
                    known = modules()
                    targets = [
                        "petit." + ".".join([*base, a.name])
                        if ".".join([*base, a.name]) in known
                        else targets[0]
                        for a in node.names
                    ]
            else:
                targets = [node.module or ""]
        for target in targets:
            if target == "petit" or target.startswith("petit."):
                found.append(
                    (
                        target[len("petit.") :] if target != "petit" else "",
                        node.lineno,
                        id(node) in top_level,
                    )
                )
            else:
                found.append(("!" + target.split(".")[0], node.lineno, id(node) in top_level))
    return found


def folder_of(name: str) -> str:
    return name.split(".")[0]


def within(name: str, homes: set[str]) -> bool:
    return any(name == home or name.startswith(home + ".") for home in homes)


def test_every_import_follows_the_table():
    problems = []
    for name, path in modules().items():
        if name == "":
            continue
        folder = folder_of(name)
        allowed = ALLOWED.get(folder)
        assert allowed is not None, f"petit/{folder}: a folder the import table does not know"
        for target, line, module_level in imports(name, path):
            where = f"{path.relative_to(ROOT)}:{line}"
            if target.startswith("!"):
                library = target[1:]
                homes = THIRD_PARTY_HOMES.get(library)
                if homes is not None and not within(name, homes):
                    problems.append(f"{where}: imports {library}, allowed only in {sorted(homes)}")
                continue
            target_folder = folder_of(target)
            if allowed == ANYTHING:
                if name in CLI_EAGER and module_level and target_folder not in CLI_MODULE_LEVEL:
                    problems.append(
                        f"{where}: cli imports petit.{target} at module level "
                        "(import it inside the command that needs it)"
                    )
            elif target_folder not in allowed and target != "":  # the root holds __version__ only
                problems.append(f"{where}: {folder} may not import petit.{target}")
            if name in SUPERVISOR_SIDE and target and not within(target, SUPERVISOR_MAY_IMPORT):
                problems.append(f"{where}: the supervisor side may not import petit.{target}")
    assert not problems, "import rules broken:\n" + "\n".join(problems)


def table_in_docs() -> dict[str, set[str] | str]:
    text = DEVELOPMENT_DOC.read_text()
    section = text.split("## Import rules", 1)[1].split("\n## ", 1)[0]
    table = {}
    for row in re.findall(r"^\| `([\w_]+)` \| (.+?) \|$", section, re.MULTILINE):
        folder, cell = row
        cell = cell.strip()
        if cell == ANYTHING:
            table[folder] = ANYTHING
        elif cell == "(nothing)":
            table[folder] = set()
        else:
            table[folder] = set(re.findall(r"`([\w_]+)`", cell))
    return table


def test_the_table_in_the_docs_is_the_table_in_this_test():
    assert table_in_docs() == ALLOWED, (
        "docs/development.md (section 'Import rules') and tests/test_layering.py disagree"
    )


def test_the_table_names_every_folder_and_only_real_ones():
    folders = {folder_of(name) for name in modules() if name}
    assert folders == set(ALLOWED), (sorted(folders - set(ALLOWED)), sorted(set(ALLOWED) - folders))


def test_init_files_are_empty_so_importing_one_module_loads_no_sibling():
    version_only = (PACKAGE / "__init__.py").read_text()
    assert re.fullmatch(r'(""".*?"""\n+)?__version__ = "[^"]+"\n', version_only, re.DOTALL)
    full = [p for p in PACKAGE.rglob("__init__.py") if p != PACKAGE / "__init__.py"]
    assert full and all(p.read_text() == "" for p in full), [str(p) for p in full if p.read_text()]


def test_no_module_is_over_the_size_limit():
    sizes = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in modules().values()}
    big = {path: lines for path, lines in sizes.items() if lines > MAX_MODULE_LINES}
    assert not big, f"split these by responsibility (limit {MAX_MODULE_LINES} lines): {big}"


def loaded(module: str, candidates: list[str]) -> list[str]:
    """Which of `candidates` a fresh interpreter has loaded after importing petit.`module`."""
    code = (
        f"import sys, petit.{module}; print(sorted(m for m in {candidates!r} if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=True,
    )
    return json.loads(result.stdout)


@pytest.mark.parametrize("entry", sorted(SUPERVISOR_SIDE))
def test_the_supervisor_side_loads_no_heavy_library(entry):
    """In a fresh interpreter, as the supervisor process starts: the import rules above say what
    petit code may import, this says what actually gets loaded, dependencies included."""
    assert loaded(entry, HEAVY) == []


def test_the_scheduler_worker_loads_neither_the_http_stack_nor_asyncio():
    """asyncio maps OpenSSL (about 5 MiB in every worker) and nothing in the worker needs it."""
    assert loaded("service.worker", ["tornado", "asyncio", "ssl", "prometheus_client"]) == []


def test_the_checker_sees_a_forbidden_import(tmp_path):
    """The rule test can fail: a core module importing storage is caught."""
    fake = tmp_path / "model.py"
    fake.write_text("from ..storage.store import Store\nimport tornado\n")
    found = imports("core.model", fake)
    assert ("storage.store", 1, True) in found and ("!tornado", 2, True) in found
    assert "storage" not in ALLOWED["core"] and not within(
        "core.model", THIRD_PARTY_HOMES["tornado"]
    )
