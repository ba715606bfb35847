"""The synthetic tool task: the library and its unseen tools, SFT rows on seen tools only, evaluation inputs, the
ToolSelect CSV round trip, and the datamodules serving them."""

from __future__ import annotations

import random

import pytest
from litforge.datamodules.tool_data import (
    ToolEvalDataModule,
    ToolSelectDataModule,
    ToolSFTDataModule,
    evaluation_inputs,
)
from litforge.datamodules.tool_tasks import SKILLS, TOPICS, ToolTask, toolselect_csv
from litforge.plugins.tools import DirectSelection, ReasoningSelection, read_toolselect_csv


@pytest.fixture(scope="module")
def task():
    return ToolTask()


def test_whole_families_and_one_sibling_per_seen_family_are_unseen(task):
    assert (len(task.library), len(task.seen), len(task.unseen)) == (60, 40, 20)
    held = [sum(tool.family == topic for tool in task.unseen) for topic in TOPICS]
    assert held == [1] * (len(TOPICS) - 2) + [6, 6]
    assert ToolTask().library.tools == task.library.tools  # the library seed fixes names and held-out siblings


def test_names_are_option_numbers_random_codes_the_library_s_own_or_descriptive(task):
    rng = random.Random(0)
    gold = task.seen.tools[0]
    numbered = [task.item(gold, task.seen, rng) for _ in range(40)]
    assert all([tool.name for tool in item["candidates"]] == ["1", "2", "3", "4"] for item in numbered)
    assert {item["label"] for item in numbered} == {"1", "2", "3", "4"}  # the gold tool's place is drawn
    names = {ToolTask(names="random").item(gold, task.seen, rng)["label"] for _ in range(20)}
    assert len(names) > 10 and all(len(name) == 3 for name in names) and task.seen.tools[0].name == gold.name
    assert ToolTask(names="fixed").item(gold, task.seen, rng)["label"] == gold.name
    descriptive = ToolTask(names="descriptive")
    item = descriptive.item(gold, descriptive.seen, rng)
    assert gold.description == "weather now by city" and item["label"] == "weather-now-city"
    for tool in item["candidates"]:  # each name spells its own tool's attributes
        assert tool.name == tool.description.replace(" by ", " ").replace(" ", "-")
    names = {tool.description: descriptive.item(tool, descriptive.library, rng)["label"]
             for tool in descriptive.library.tools}
    assert len(set(names.values())) == 60 and names["rent last year by country"] == "rent-last-year-country"
    with pytest.raises(ValueError, match="names must be one of"):
        ToolTask(names="letters")


def test_sft_rows_never_show_an_unseen_tool_and_parse_back_to_the_gold(task):
    rows = task.sft_rows(400, random.Random(0))
    assert {row["skill"] for row in rows} == set(SKILLS)
    unseen = [tool.description for tool in task.unseen]
    for row in rows:
        assert not any(description in row["prompt"] for description in unseen)
    reason = next(row for row in rows if row["skill"] == "reason")
    select = next(row for row in rows if row["skill"] == "select")
    assert ReasoningSelection().parse(reason["response"]) == DirectSelection().parse(reason["response"].split()[-1])
    assert DirectSelection().parse(select["response"]) in select["prompt"]


def test_evaluation_inputs_split_seen_from_unseen_gold_tools(task):
    inputs = evaluation_inputs(task, 30, 30, seed=0)
    unseen = {tool.description for tool in task.unseen}
    for split in ("seen", "unseen"):
        for item in inputs[split]:
            names = [tool.name for tool in item["candidates"]]
            assert names.count(item["label"]) == 1 and len(set(names)) == len(item["candidates"]) == 4
            gold = item["candidates"][names.index(item["label"])]
            assert (gold.description in unseen) == (split == "unseen")
        place = next(iter(item["arguments"].values()))
        assert place in item["question"]
    assert evaluation_inputs(task, 30, 30, seed=0)["seen"][0]["question"] == inputs["seen"][0]["question"]


def test_toolselect_csv_round_trips(task, tmp_path):
    items = evaluation_inputs(task, 5, 5, seed=1)["unseen"]
    path = tmp_path / "select.csv"
    path.write_text(toolselect_csv(items))
    read = read_toolselect_csv(path)
    assert [(r["question"], r["label"], r["arguments"]) for r in read] == \
        [(i["question"], i["label"], i["arguments"]) for i in items]
    assert [t.description for t in read[0]["candidates"]] == [t.description for t in items[0]["candidates"]]
    data = ToolSelectDataModule(str(path), batch_size=2)
    data.setup("validate")
    assert len(data.splits["val"]) == 5 and next(iter(data.val_dataloader()))[0]["label"] == items[0]["label"]


def test_the_sft_datamodule_drops_rows_about_evaluation_requests(task):
    data = ToolSFTDataModule(task, num_train=300, num_seen=200, num_unseen=10, task_seed=0)
    held = {item["question"] for item in evaluation_inputs(task, 200, 10, 0)["seen"]}
    rows = data.rows("train")
    assert rows and not any(row["question"] in held for row in rows)
    assert len(task.sft_rows(300, random.Random(3))) == 300 > len(rows)  # some were dropped
    data.setup("fit")
    assert len(data.splits["train"]) == len(rows)


def test_the_evaluation_datamodule_names_its_two_sets(task):
    data = ToolEvalDataModule(task, num_seen=3, num_unseen=2, batch_size=2)
    data.setup("validate")
    assert data.names("val") == ["seen", "unseen"]
    seen, unseen = data.val_dataloader()
    assert [len(batch) for batch in seen] == [2, 1] and isinstance(next(iter(unseen)), list)


def test_the_sft_datamodule_trains_a_word_level_vocabulary_covering_unseen_tools(task):
    data = ToolSFTDataModule(task, num_train=50, num_seen=10, num_unseen=10, vocab_size=1024)
    tokenizer = data.tokenizer
    for tool in task.unseen:  # unseen families' words are single tokens too, as a pretrained vocabulary's are
        words = tool.description.split()
        ids = tokenizer(tool.description, add_special_tokens=False)["input_ids"]
        assert len(ids) == 2 * len(words) - 1
    data.setup("fit")
    sample = data.splits["train"][0]
    assert sample["input_ids"][0] == tokenizer.bos_token_id and max(sample["input_ids"]) < len(tokenizer)
    short, long = sorted(data.splits["train"][:10], key=lambda sample: len(sample["input_ids"]))[::9]
    batch = data.collate([short, long])
    assert batch["input_ids"][0, -1] == tokenizer.pad_token_id != 258  # the trained vocabulary's pad, not the bytes'


def test_the_sft_datamodule_refuses_a_vocabulary_size_beside_a_tokenizer_directory(task, tmp_path):
    with pytest.raises(Exception, match="vocab_size"):
        ToolSFTDataModule(task, num_train=5, vocab_size=1024, tokenizer=str(tmp_path))
