"""LIFT data: pair augmentation and mixing, and the length-instructed datamodule over a preference source."""

from __future__ import annotations

import json

import pytest
import torch
from litforge.datamodules import LengthBiasedPreferenceDataModule, LengthInstructedDataModule
from litforge.datamodules.lift import augment_pairs
from litforge.datamodules.list_task import LengthBiasedTask
from litforge.datamodules.preference import JSONLPreferenceDataModule

from litforge.data import DataError
from litforge.length import LengthInstruction, count_words, within_limit
from litforge.plugins.length import BetweenLengths, FixedLimits
from litforge.errors import ConfigError

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


def test_lift_datamodule_over_the_synthetic_source():
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


BAD_SETTINGS = [
    (LengthInstructedDataModule, {"ratio": -1.0}, "ratio"),
]


@pytest.mark.parametrize("cls, kwargs, field", BAD_SETTINGS, ids=[f"{c.__name__}-{f}" for c, _, f in BAD_SETTINGS])
def test_bad_settings_are_config_errors_naming_the_field(cls, kwargs, field):
    with pytest.raises(ConfigError, match=f"^{field}: ") as caught:
        cls(**kwargs).setup("fit")  # some settings only show when the task is generated, still before training
    assert caught.value.field == field
