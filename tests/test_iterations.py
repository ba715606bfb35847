"""The iteration files: statistics then rows, both atomic; a rows file marks an iteration finished."""

from __future__ import annotations

import json

import pytest

from litforge.iterations import iteration_paths, load_iteration, save_iteration, write_final


def test_saved_iterations_read_back_and_unfinished_ones_read_as_none(tmp_path):
    assert load_iteration(tmp_path, 0) is None
    rows = [{"prompt": "1+2=", "chosen": "3", "rejected": "4", "reference": "3"}, {"prompt": "é", "chosen": "a"}]
    save_iteration(tmp_path, 0, rows, {"pairs": 2})
    assert load_iteration(tmp_path, 0) == (rows, {"pairs": 2})
    assert iteration_paths(tmp_path, 3) == (tmp_path / "iterations" / "iter_3.jsonl",
                                            tmp_path / "iterations" / "iter_3.json")
    iteration_paths(tmp_path, 1)[1].write_text("{}")  # statistics alone: the rows were never finished
    assert load_iteration(tmp_path, 1) is None
    write_final(tmp_path, {"iterations": {"0": {"pairs": 2}}})
    assert json.loads((tmp_path / "iterations" / "final.json").read_text())["iterations"]["0"]["pairs"] == 2


def test_a_failed_write_leaves_no_rows_file_and_no_staging_file(tmp_path):
    class Unserialisable:
        pass

    with pytest.raises(TypeError):
        save_iteration(tmp_path, 0, [{"prompt": "p"}, {"prompt": Unserialisable()}], {"pairs": 2})
    assert load_iteration(tmp_path, 0) is None
    assert sorted(p.name for p in (tmp_path / "iterations").iterdir()) == ["iter_0.json"]
