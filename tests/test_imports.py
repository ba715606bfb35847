"""Import direction, read from the source: data never reaches into objectives, plugins never into objectives."""

from __future__ import annotations

import re

import pytest
from helpers import REPO

IMPORT = re.compile(r"^\s*(?:from|import)\s+(?:litforge\.)?lightning_modules\b", re.MULTILINE)


def importers_of_objectives(folder: str) -> list[str]:
    """Python files under `folder` with an import of litforge.lightning_modules (at any indentation)."""
    return sorted(str(path.relative_to(REPO)) for path in (REPO / folder).rglob("*.py")
                  if IMPORT.search(path.read_text(encoding="utf-8")))


@pytest.mark.parametrize("folder", ["datamodules", "plugins"])
def test_no_datamodule_or_plugin_imports_an_objective(folder):
    assert importers_of_objectives(folder) == []


def test_the_pattern_sees_indented_and_aliased_imports():
    assert IMPORT.search("x = 1\n    from litforge.lightning_modules.preference import PreferenceModule\n")
    assert IMPORT.search("import litforge.lightning_modules as objectives\n")
    assert not IMPORT.search('"""Built by lightning_modules/iterative.py."""\n')
