"""The tool library: JSONL and ToolSelect CSV parsing (bad lines name file, line and field), siblings, and the
candidate sets a request is posed with."""

from __future__ import annotations

import json
import random

import pytest
from litforge.plugins.tools import Tool, ToolLibrary, read_toolselect_csv
from tool_helpers import weather_tools

from litforge.data import DataError

GOOD = {"name": "fc", "description": "weather tomorrow by city",
        "parameters": [{"name": "city", "type": "string", "description": "the city"},
                       {"name": "unit", "type": "string", "values": ["C", "F"]}],
        "family": "weather", "attributes": {"time": "tomorrow", "place": "city"}}


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_jsonl_library_round_trips(tmp_path):
    library = ToolLibrary.from_jsonl(write_jsonl(tmp_path / "tools.jsonl", [GOOD, dict(GOOD, name="fk")]))
    tool = library["fc"]
    assert [p.name for p in tool.parameters] == ["city", "unit"] and tool.parameters[1].values == ("C", "F")
    assert tool.attribute("time") == "tomorrow" and tool.as_dict()["attributes"] == GOOD["attributes"]
    assert len(library) == 2


@pytest.mark.parametrize("change, line, field, message", [
    ({"name": ""}, 2, "name", "must be a non-empty string"),
    ({"name": "two words"}, 2, "name", "must be one word"),
    ({"description": None}, 2, "description", "must be a non-empty string"),
    ({"parameters": [{"name": "x", "type": "date"}]}, 2, "parameters[0].type", "must be one of string"),
    ({"parameters": [{"type": "string"}]}, 2, "parameters[0].name", "missing"),
    ({"parameters": {"name": "x"}}, 2, "parameters", "expected a JSON array"),
    ({"attributes": {"time": 3}}, 2, "attributes", "must be a JSON object of strings"),
    ({"name": "fc"}, 2, "name", "already the name of the tool on line 1"),
])
def test_a_bad_jsonl_line_names_file_line_and_field(tmp_path, change, line, field, message):
    path = write_jsonl(tmp_path / "tools.jsonl", [GOOD, {**GOOD, "name": "zz", **change}])
    with pytest.raises(DataError) as error:
        ToolLibrary.from_jsonl(path)
    assert (error.value.path, error.value.line, error.value.field) == (str(path), line, field)
    assert message in error.value.message


def toolselect_file(path, rows):
    """A tiny ToolSelect-shaped CSV: header query,tools,tool,arguments, then `rows` (lists of 4 cells)."""
    import csv

    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["query", "tools", "tool", "arguments"])
        writer.writerows(rows)
    return path


TWO = json.dumps([GOOD, dict(GOOD, name="nw", description="weather now by city")])


def test_toolselect_csv_reads_requests_with_their_candidates(tmp_path):
    path = toolselect_file(tmp_path / "select.csv", [["rain in Lima tomorrow?", TWO, "fc", '{"city": "Lima"}'],
                                                     ["sun in Oslo now?", TWO, "nw", ""]])
    first, second = read_toolselect_csv(path)
    assert first["question"] == "rain in Lima tomorrow?" and first["label"] == "fc"
    assert [tool.name for tool in first["candidates"]] == ["fc", "nw"] and first["arguments"] == {"city": "Lima"}
    assert (first["line"], second["line"], second["arguments"]) == (2, 3, {})


@pytest.mark.parametrize("row, field, message", [
    (["", TWO, "fc", ""], "query", "is empty"),
    (["q?", "[{", "fc", ""], "tools", "invalid JSON"),
    (["q?", "{}", "fc", ""], "tools", "expected a JSON array"),
    (["q?", json.dumps([dict(GOOD, description="")]), "fc", ""], "tools[0].description", "non-empty"),
    (["q?", TWO, "xx", ""], "tool", "must name exactly one of the row's tools"),
    (["q?", json.dumps([GOOD, GOOD]), "fc", ""], "tool", "must name exactly one"),
    (["q?", TWO, "fc", '{"town": "Lima"}'], "arguments", "'town' is not a parameter of 'fc'"),
    (["q?", TWO, "fc", "[1]"], "arguments", "expected a JSON object"),
])
def test_a_bad_toolselect_row_names_file_line_and_field(tmp_path, row, field, message):
    path = toolselect_file(tmp_path / "select.csv", [["ok?", TWO, "fc", ""], row])
    with pytest.raises(DataError) as error:
        read_toolselect_csv(path)
    assert (error.value.path, error.value.line, error.value.field) == (str(path), 3, field)
    assert message in error.value.message


def test_a_toolselect_file_without_a_needed_column_is_refused(tmp_path):
    path = tmp_path / "select.csv"
    path.write_text("query,tool\nq?,fc\n")
    with pytest.raises(DataError, match="field 'tools': missing column"):
        read_toolselect_csv(path)


def test_siblings_differ_in_exactly_one_attribute():
    library = ToolLibrary(weather_tools())
    # ab = (now, city): siblings cd (now, country), ef (tomorrow, city), ij (last year, city)
    assert [tool.name for tool in library.siblings(library["ab"])] == ["cd", "ef", "ij"]
    assert not library["ab"].is_sibling(Tool("zz", "other", family="news", attributes=library["cd"].attributes))


@pytest.mark.parametrize("size, hard", [(4, 2), (2, 0), (6, 3), (6, 6), (10, 1)])
def test_candidate_sets_hold_the_gold_exactly_once_and_siblings_first(size, hard):
    library = ToolLibrary(weather_tools() + [Tool(f"n{k}", f"news {k}", family="news") for k in range(4)])
    rng = random.Random(0)
    for _ in range(50):
        gold = rng.choice(library.tools)
        names = [tool.name for tool in library.candidates(gold, size, hard, rng)]
        assert names.count(gold.name) == 1 and len(names) == len(set(names)) == min(size, len(library))
        siblings = {tool.name for tool in library.siblings(gold)}
        assert len(siblings & set(names)) >= min(hard, len(siblings), size - 1)


def test_candidate_sets_are_seeded():
    library = ToolLibrary(weather_tools())
    draws = [[t.name for t in library.candidates(library["ab"], 4, 2, random.Random(seed))] for seed in range(10)]
    assert draws[3] == [t.name for t in library.candidates(library["ab"], 4, 2, random.Random(3))]
    assert len({tuple(draw) for draw in draws}) > 1
