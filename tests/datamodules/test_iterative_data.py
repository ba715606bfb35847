"""The datamodules of iterative objectives: prompts served, only handed rows trained on, defaults a config sees."""

from __future__ import annotations

import pytest
from jsonargparse import ArgumentParser
from litforge.datamodules import ArithmeticIterativeDataModule, JSONLIterativeDataModule

from litforge.errors import ConfigError


def test_the_datamodule_serves_prompts_and_only_handed_pairs():
    data = ArithmeticIterativeDataModule(num_train=6, num_val=4, batch_size=4, prompts_per_iteration=4)
    data.setup("fit")
    with pytest.raises(ConfigError, match="none were handed"):
        data.train_dataloader()
    assert [r["prompt"] for r in data.iteration_prompts(1)] == [r["prompt"] for r in (data.pool * 2)[4:8]]
    assert all(r["reference"] == str(sum(map(int, r["prompt"].rstrip("=").split("+")))) for r in data.prompts("val"))
    data.set_rows([{"prompt": "1+2=", "chosen": "3", "rejected": "4"}])
    assert len(data.train_dataloader().dataset) == 1
    assert len(data.graded(12)) == 12


def test_jsonl_prompts_keep_their_references_and_have_no_grades(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"prompt": "1+2=", "reference": 3}\n{"prompt": "Say hi"}\n')
    data = JSONLIterativeDataModule(prompts_path=str(path))
    assert data.prompts("train") == [{"prompt": "1+2=", "reference": "3"}, {"prompt": "Say hi", "reference": None}]
    assert data.prompts("val") == []
    with pytest.raises(ConfigError, match="num_judge_heldout"):
        data.graded(10)


def test_a_config_sees_the_defaults_the_datamodule_uses():
    parser = ArgumentParser()
    parser.add_class_arguments(ArithmeticIterativeDataModule, "data")
    defaults = parser.parse_args([]).data
    assert defaults.max_length == 64 and defaults.truncate is True  # not the base's 256 and False


BAD_SETTINGS = [
    (ArithmeticIterativeDataModule, {"num_train": 0}, "num_train"),
    (ArithmeticIterativeDataModule, {"num_val": -1}, "num_val"),
    (ArithmeticIterativeDataModule, {"num_terms": 0}, "num_terms"),
    (ArithmeticIterativeDataModule, {"min_operand": 50, "max_operand": 40}, "max_operand"),
    (ArithmeticIterativeDataModule, {"prompts_per_iteration": 0}, "prompts_per_iteration"),
]


@pytest.mark.parametrize("cls, kwargs, field", BAD_SETTINGS, ids=[f"{c.__name__}-{f}" for c, _, f in BAD_SETTINGS])
def test_bad_settings_are_config_errors_naming_the_field(cls, kwargs, field):
    with pytest.raises(ConfigError, match=f"^{field}: ") as caught:
        cls(**kwargs).setup("fit")  # some settings only show when the task is generated, still before training
    assert caught.value.field == field
