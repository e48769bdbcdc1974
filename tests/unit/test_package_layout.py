"""The shipped package's shape: what the layer holds, module sizes, and no import cycles.

These guard the layout the README's layout section describes: src/ is the Lambda layer
(``modelgate`` and its requirements, nothing else); the embedded AWS and the harness live
under local/ and never ship; every handler imports only its own stage.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
LAYER = ROOT / "src"
PACKAGE = LAYER / "modelgate"
MAX_MODULE_LINES = 520  # "about 500": a module past this is doing two jobs
NEVER_IN_LAYER = ("moto", "modelgate_emulator", "modelgate_harness", "aws_sam_translator", "yaml", "cfn_flip")


def _module_name(path: Path) -> str:
    parts = path.relative_to(LAYER).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module a file imports (TYPE_CHECKING blocks included: a cycle there is still a cycle)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _package_graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        # "from modelgate.pipeline import canary" imports modelgate.pipeline.canary
        graph[name] = {m for m in _imports(path) if m in modules and m != name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_layer_folder_holds_the_package_and_its_requirements_only() -> None:
    # Given the layer's ContentUri in template.yaml
    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=_CfnLoader)
    layer = template["Resources"]["ModelgateLayer"]["Properties"]
    assert (ROOT / layer["ContentUri"]).resolve() == LAYER
    # Then the folder holds modelgate/, requirements.txt and the Makefile that builds the layer, nothing else
    shipped = sorted(p.name for p in LAYER.iterdir() if p.name != "__pycache__" and not p.name.endswith(".egg-info"))
    assert shipped == ["Makefile", "modelgate", "requirements.txt"]


def test_sam_builds_the_layer_with_bytecode_from_the_makefile() -> None:
    # Given the layer's build method (SAM runs the Makefile's build-<LogicalId> target with ARTIFACTS_DIR)
    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=_CfnLoader)
    assert template["Resources"]["ModelgateLayer"]["Metadata"]["BuildMethod"] == "makefile"
    makefile = (LAYER / "Makefile").read_text()
    recipe = makefile.split("\nbuild-ModelgateLayer:", 1)[1]
    # Then it installs the requirements for the functions' platform, copies only the package,
    # and compiles everything for CPython 3.12 with bytecode the runtime never revalidates
    assert "-r requirements.txt" in recipe and "--python-version 3.12" in recipe
    assert "manylinux2014_aarch64" in makefile  # Architectures: [arm64]
    assert 'cp -R modelgate "$(ARTIFACTS_DIR)/python/"' in recipe
    assert "-m compileall" in recipe and "--invalidation-mode unchecked-hash" in recipe
    assert "sys.version_info[:2] == (3, 12)" in recipe


def test_no_shipped_module_imports_the_emulator_or_the_tooling() -> None:
    offenders = {
        _module_name(path): sorted(m for m in _imports(path) if m.split(".")[0] in NEVER_IN_LAYER)
        for path in PACKAGE.rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_nothing_the_functions_ship_imports_what_the_layer_build_prunes() -> None:
    # Given the Powertools utilities src/Makefile removes from the built layer
    line = next(x for x in (LAYER / "Makefile").read_text().splitlines() if x.startswith("POWERTOOLS_UNUSED :="))
    pruned = line.split(":=", 1)[1].split()
    assert pruned, "POWERTOOLS_UNUSED is empty"
    prefixes = tuple(f"aws_lambda_powertools.utilities.{name}" for name in pruned)
    # Then neither the package nor a handler imports one (anywhere, lazily included)
    files = [*PACKAGE.rglob("*.py"), *(ROOT / "functions").glob("*/*.py")]
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            m for m in _imports(path) if any(m == q or m.startswith(q + ".") for q in prefixes)
        )
        for path in files
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_no_module_of_the_shipped_package_is_over_about_500_lines() -> None:
    sizes = {_module_name(p): len(p.read_text(encoding="utf-8").splitlines()) for p in PACKAGE.rglob("*.py")}
    assert {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES} == {}


def test_the_shipped_package_has_no_import_cycle() -> None:
    assert _cycle(_package_graph()) is None


def test_the_cycle_finder_finds_a_cycle() -> None:
    # The guard above is only worth something if it can fail.
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("handler", sorted(p.parent.name for p in (ROOT / "functions").glob("*/app.py")))
def test_each_pipeline_handler_imports_only_its_own_stage(handler: str) -> None:
    stages = {m for m in _imports(ROOT / "functions" / handler / "app.py") if m.startswith("modelgate.pipeline.")}
    stages -= {"modelgate.pipeline.deps", "modelgate.pipeline.deps.Deps", "modelgate.pipeline.deps.default_deps"}
    assert len({s.split(".")[2] for s in stages}) <= 1, stages


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form tags (!Ref, !Sub, ...) read as plain values."""


_CfnLoader.add_multi_constructor("!", lambda loader, suffix, node: None)
