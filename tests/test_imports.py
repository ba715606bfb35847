"""Import direction, read from the source: data never reaches into objectives, plugins never into objectives, and
the core (litforge/) into neither objectives, datamodules nor plugins, but for the exceptions named below."""

from __future__ import annotations

import re

import pytest
from helpers import REPO

OBJECTIVE = re.compile(r"^\s*(?:from|import)\s+(?:litforge\.)?lightning_modules\b", re.MULTILINE)
OUTSIDE_CORE = re.compile(r"^\s*(?:from|import)\s+(?:litforge\.)?(?:lightning_modules|datamodules|plugins)\b",
                          re.MULTILINE)

# the core files that may import outside the core, and why
CORE_EXCEPTIONS = {
    # the CLI imports the objective, datamodule and plugin packages so that YAML's short class names resolve, and
    # runs `litforge merge` from plugins/moe/merge.py
    "litforge/cli.py",
    # LitforgeModule types its `position:` field with the PositionEncoding contract: jsonargparse finds the
    # subclasses YAML may name from that annotation
    "litforge/module.py",
}


def importers(folder: str, pattern: re.Pattern) -> list[str]:
    """Python files under `folder` with an import matching `pattern` (at any indentation)."""
    return sorted(str(path.relative_to(REPO)) for path in (REPO / folder).rglob("*.py")
                  if pattern.search(path.read_text(encoding="utf-8")))


@pytest.mark.parametrize("folder", ["datamodules", "plugins"])
def test_no_datamodule_or_plugin_imports_an_objective(folder):
    assert importers(folder, OBJECTIVE) == []


def test_the_core_imports_no_objective_datamodule_or_plugin_but_the_named_exceptions():
    assert importers("litforge", OUTSIDE_CORE) == sorted(CORE_EXCEPTIONS)


def test_the_patterns_see_indented_and_aliased_imports():
    assert OBJECTIVE.search("x = 1\n    from litforge.lightning_modules.preference import PreferenceModule\n")
    assert OBJECTIVE.search("import litforge.lightning_modules as objectives\n")
    assert not OBJECTIVE.search('"""Built by lightning_modules/iterative.py."""\n')
    assert OUTSIDE_CORE.search("    from litforge.plugins.moe.merge import merge_command\n")
    assert OUTSIDE_CORE.search("import litforge.datamodules\n")
    assert not OUTSIDE_CORE.search("from litforge.checkpoint import reattach  # plugins/position records it\n")
