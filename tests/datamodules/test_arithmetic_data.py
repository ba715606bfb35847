"""DataModules of the arithmetic task: SFT on the chain of thought, the self-rewarding seed (IFT + EFT), pairs."""

from __future__ import annotations

import pytest
from litforge.datamodules import ArithmeticPreferenceDataModule, ArithmeticSFTDataModule, SelfRewardSeedDataModule
from litforge.datamodules.arithmetic import extract_answer
from litforge.plugins.judges.llm import parse_score

from litforge.data import IGNORE_INDEX
from litforge.errors import ConfigError


def test_sft_labels_only_the_chain_of_thought():
    sft = ArithmeticSFTDataModule(num_train=20, num_val=5, num_test=0)
    sft.setup("fit")
    sample = sft.splits["train"][0]
    question = sft.questions("train")[0]
    labelled = [t for t in sample["labels"] if t != IGNORE_INDEX]
    assert sft.tokenizer.decode(labelled) == question["solution"] + "<|eos|>"


def test_seed_datamodule_is_deterministic_and_mixes_ift_with_eft():
    def built(seed):
        data = SelfRewardSeedDataModule(num_train=40, num_eft=30, num_val=5, num_test=0, max_operand=49,
                                        eft_seed=seed)
        data.setup("fit")
        return data

    data = built(0)
    train, val = data.splits["train"], data.splits["val"]
    assert len(train) == 70 and len(val) == 10 and max(len(s["input_ids"]) for s in train) <= data.max_length
    assert train == built(0).splits["train"] and train != built(1).splits["train"]
    text = data.tokenizer.decode(train[-1]["input_ids"], skip_special_tokens=True)
    prompt, reply = text.split("\n", 1)
    assert prompt.startswith("Grade 0-5: ") and parse_score(reply) is not None
    labelled = [t for t, label in zip(train[-1]["input_ids"], train[-1]["labels"]) if label != -100]
    assert data.tokenizer.decode(labelled, skip_special_tokens=True) == reply  # the loss is on the reply only
    first = data.tokenizer.decode(train[0]["input_ids"], skip_special_tokens=True)
    assert "Grade" not in first and first.count("=") == 2  # an IFT example: question + chain of thought


def test_a_seed_template_without_a_response_slot_is_refused():
    with pytest.raises(ValueError, match="response"):
        SelfRewardSeedDataModule(template="Grade: {prompt}\n")


def test_arithmetic_pairs_have_a_correct_chosen_and_a_wrong_rejected():
    pref = ArithmeticPreferenceDataModule(num_train=10, num_val=4, pairs_per_question=2)
    pref.setup("fit")
    pairs = pref.pairs("train")
    assert len(pairs) == 20 and len(pref.splits["train"]) == 20 and len(pref.splits["val"]) == 8
    for pair in pairs:
        assert extract_answer(pair["chosen"]) == pair["answer"] != extract_answer(pair["rejected"])



BAD_SETTINGS = [
    (ArithmeticSFTDataModule, {"num_terms": 0}, "num_terms"),
    (ArithmeticSFTDataModule, {"min_operand": 50, "max_operand": 40}, "max_operand"),
    (ArithmeticSFTDataModule, {"num_train": 5000, "min_operand": 1, "max_operand": 9, "num_terms": 2}, "max_operand"),
    (SelfRewardSeedDataModule, {"template": "no slot"}, "template"),
]


@pytest.mark.parametrize("cls, kwargs, field", BAD_SETTINGS, ids=[f"{c.__name__}-{f}" for c, _, f in BAD_SETTINGS])
def test_bad_settings_are_config_errors_naming_the_field(cls, kwargs, field):
    with pytest.raises(ConfigError, match=f"^{field}: ") as caught:
        cls(**kwargs).setup("fit")  # some settings only show when the task is generated, still before training
    assert caught.value.field == field
