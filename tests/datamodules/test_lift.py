"""LIFT data: pair augmentation and mixing, the AlpacaEval-LI reader, the synthetic length-biased task."""

from __future__ import annotations

import json
import random

import pytest
import torch
from litforge.datamodules.lift import LengthBiasedTask, augment_pairs, read_length_prompts

from litforge.data import DataError
from litforge.length import BetweenLengths, FixedLimits, LengthInstruction, count_words, within_limit

TEMPLATE = LengthInstruction()


def pair(prompt: str, chosen_words: int, rejected_words: int) -> dict:
    return {"prompt": prompt, "chosen": " ".join(["C"] * chosen_words), "rejected": " ".join(["R"] * rejected_words)}


def test_augment_relabels_and_mixes_at_the_ratio():
    pairs = [pair("long wins", 9, 3), pair("short wins", 2, 8), pair("tie", 4, 4)]
    mixed, stats = augment_pairs(pairs, TEMPLATE, BetweenLengths(), ratio=1.0, seed=0)
    assert mixed[:3] == pairs  # originals first, untouched
    augmented = mixed[3:]
    assert len(augmented) == 3 and stats == {"original": 3, "kept": 2, "flipped": 1, "dropped": 0}
    for sample in augmented:
        instruction, limit = TEMPLATE.parse(sample["prompt"])
        assert limit == sample["max_len"]
        assert within_limit(sample["chosen"], limit)
        original = next(p for p in pairs if p["prompt"] == instruction)
        assert {sample["chosen"], sample["rejected"]} == {original["chosen"], original["rejected"]}
        if instruction == "long wins":  # the long chosen response violates a limit between the lengths: it loses
            assert (count_words(sample["chosen"]), count_words(sample["rejected"])) == (3, 9)
            assert 3 <= limit < 9
        else:
            assert sample["chosen"] == original["chosen"]


def test_augment_drops_pairs_with_both_over_and_counts_them():
    pairs = [pair("p", 10, 12)]
    mixed, stats = augment_pairs(pairs, TEMPLATE, FixedLimits([5]), ratio=1.0)
    assert mixed == pairs and stats["dropped"] == 1


@pytest.mark.parametrize("ratio, augmented", [(0.0, 0), (0.5, 5), (1.0, 10), (2.5, 25)])
def test_augment_ratio(ratio, augmented):
    pairs = [pair(f"p{i}", 3 + i, 1) for i in range(10)]
    mixed, stats = augment_pairs(pairs, TEMPLATE, FixedLimits([50]), ratio=ratio, seed=1)
    assert len(mixed) == 10 + augmented and stats["kept"] == augmented
    only_augmented, _ = augment_pairs(pairs, TEMPLATE, FixedLimits([50]), ratio=ratio, seed=1, keep_original=False)
    assert only_augmented == mixed[10:]


def test_augment_is_seeded():
    pairs = LengthBiasedTask().pairs(30, seed=0)
    first, _ = augment_pairs(pairs, TEMPLATE, BetweenLengths(), seed=3)
    second, _ = augment_pairs(pairs, TEMPLATE, BetweenLengths(), seed=3)
    third, _ = augment_pairs(pairs, TEMPLATE, BetweenLengths(), seed=4)
    assert first == second and first != third


def write(path, rows):
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return str(path)


def test_read_length_prompts(tmp_path):
    path = write(tmp_path / "li.jsonl", [{"instruction": "Name a color.", "max_len": 3, "output": "Red."},
                                         {"instruction": "Describe a cat.", "max_len": 40}])
    prompts = read_length_prompts(path, TEMPLATE)
    assert [p["max_len"] for p in prompts] == [3, 40] and prompts[0]["output"] == "Red."
    assert TEMPLATE.parse(prompts[1]["prompt"]) == ("Describe a cat.", 40)
    assert read_length_prompts(path, None)[0]["prompt"] == "Name a color."


@pytest.mark.parametrize("row, field, message", [
    ({"instruction": "x"}, "max_len", "missing"),
    ({"max_len": 3}, "instruction", "missing"),
    ({"instruction": "x", "max_len": 0}, "max_len", "must be positive"),
    ({"instruction": "x", "max_len": -2}, "max_len", "must be positive"),
    ({"instruction": "x", "max_len": "12"}, "max_len", "positive integer"),
])
def test_read_length_prompts_errors_name_file_line_field(tmp_path, row, field, message):
    path = write(tmp_path / "li.jsonl", [{"instruction": "fine", "max_len": 5}, row])
    with pytest.raises(DataError, match=message) as error:
        read_length_prompts(path, TEMPLATE)
    assert (error.value.path, error.value.line, error.value.field) == (path, 2, field)


def test_length_biased_task():
    task = LengthBiasedTask(num_topics=4, min_words=2, max_words=12, long_bias=0.9, error_rate=0.5)
    pairs = task.pairs(400, seed=0)
    assert all(task.is_good(p["prompt"], p["chosen"]) for p in pairs)
    longer = sum(count_words(p["chosen"]) > count_words(p["rejected"]) for p in pairs) / len(pairs)
    bad = sum(not task.is_good(p["prompt"], p["rejected"]) for p in pairs) / len(pairs)
    assert 0.85 < longer < 0.95 and 0.4 < bad < 0.6
    assert task.pairs(5, seed=1) == task.pairs(5, seed=1)
    assert task.is_good("list b", "1b 2b 3b") and not task.is_good("list b", "1b 3b")
    assert not task.is_good("list b", "1b 2c") and not task.is_good("list b", "")
    assert not task.is_good("list b", task.response("b", 5, random.Random(0), error=True))

    prompts = task.length_prompts(50, seed=0, instruction=TEMPLATE)
    assert all(2 <= p["max_len"] <= 10 and TEMPLATE.parse(p["prompt"]) == (p["instruction"], p["max_len"])
               for p in prompts)
    demos = task.demonstrations(100, seed=0, instruction=TEMPLATE)
    instructed = [d for d in demos if TEMPLATE.parse(d["prompt"])]
    assert 30 < len(instructed) < 70
    assert all(task.is_good((TEMPLATE.parse(d["prompt"]) or (d["prompt"],))[0], d["response"]) for d in demos)


def test_lift_datamodule_over_the_synthetic_source():
    from litforge.datamodules.lift import LengthBiasedPreferenceDataModule, LengthInstructedDataModule

    source = LengthBiasedPreferenceDataModule(num_train=40, num_val=10, num_length_prompts=6)
    data = LengthInstructedDataModule(source=source, ratio=0.5, batch_size=4, val_batch_size=4)
    data.setup("fit")
    assert len(data.splits["train"]) == 40 + 20 and data.stats["train"]["kept"] + data.stats["train"]["flipped"] == 20
    assert data.names("val") == ["pairs", "length"] and len(data.splits["val"]["pairs"]) == 15
    batch = next(iter(data.train_dataloader()))
    assert batch["input_ids"].shape[0] == 8  # 4 chosen rows, then 4 rejected rows
    _, length_loader = data.val_dataloader()
    prompts = next(iter(length_loader))
    assert len(prompts["prompt"]) == 4 and prompts["max_len"].dtype == torch.long
    assert [data.instruction.parse(p)[1] for p in prompts["prompt"]] == prompts["max_len"].tolist()


def test_lift_datamodule_reads_jsonl_pairs_and_length_prompts(tmp_path):
    from litforge.datamodules.lift import LengthInstructedDataModule
    from litforge.datamodules.preference import JSONLPreferenceDataModule

    pairs = write(tmp_path / "pairs.jsonl", [{"prompt": "Q?\n", "chosen": "a long good answer", "rejected": "short"}])
    prompts = write(tmp_path / "li.jsonl", [{"instruction": "Name a color.", "max_len": 3}])
    data = LengthInstructedDataModule(source=JSONLPreferenceDataModule(train_path=pairs), length_prompts_path=prompts)
    data.setup("fit")
    assert len(data.splits["train"]) == 2 and data.stats["train"]["flipped"] == 1
    assert data.splits["val"] == {"length": [{"instruction": "Name a color.", "max_len": 3,
                                              "prompt": LengthInstruction().apply("Name a color.", 3)}]}
    evaluation_only = LengthInstructedDataModule(length_prompts_path=prompts, prepend_instruction=False)
    evaluation_only.setup("validate")
    assert evaluation_only.splits["val"]["length"][0]["prompt"] == "Name a color."

    bad = write(tmp_path / "bad.jsonl", [{"instruction": "x", "max_len": 0}])
    with pytest.raises(DataError, match=r"bad.jsonl:1: field 'max_len'"):
        LengthInstructedDataModule(length_prompts_path=bad).setup("validate")


def test_lift_sft_datamodule():
    from litforge.datamodules.lift import LengthBiasedSFTDataModule

    data = LengthBiasedSFTDataModule(num_train=20, num_val=5)
    data.setup("fit")
    sample = data.splits["train"][0]
    text = data.tokenizer.decode(sample["input_ids"], skip_special_tokens=True)
    response = data.tokenizer.decode([t for t in sample["labels"] if t != -100], skip_special_tokens=True)
    prompt = text[: len(text) - len(response)]
    assert LengthBiasedTask().is_good((LengthInstruction().parse(prompt) or (prompt,))[0], response)
