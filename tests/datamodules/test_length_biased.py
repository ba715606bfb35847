"""DataModules of the synthetic list task: demonstrations for the starting model."""

from __future__ import annotations

from litforge.datamodules import LengthBiasedSFTDataModule
from litforge.datamodules.list_task import LengthBiasedTask

from litforge.length import LengthInstruction
from litforge.datamodules import LengthBiasedPreferenceDataModule
from litforge.errors import ConfigError
import pytest


def test_demonstrations_are_good_lists_whatever_limit_the_prompt_states():
    data = LengthBiasedSFTDataModule(num_train=20, num_val=5)
    data.setup("fit")
    sample = data.splits["train"][0]
    text = data.tokenizer.decode(sample["input_ids"], skip_special_tokens=True)
    response = data.tokenizer.decode([t for t in sample["labels"] if t != -100], skip_special_tokens=True)
    prompt = text[: len(text) - len(response)]
    assert LengthBiasedTask().is_good((LengthInstruction().parse(prompt) or (prompt,))[0], response)


BAD_SETTINGS = [
    (LengthBiasedPreferenceDataModule, {"num_topics": 27}, "num_topics"),
    (LengthBiasedPreferenceDataModule, {"min_words": 5, "max_words": 5}, "max_words"),
    (LengthBiasedPreferenceDataModule, {"long_bias": 1.5}, "long_bias"),
    (LengthBiasedPreferenceDataModule, {"error_rate": -0.1}, "error_rate"),
    (LengthBiasedSFTDataModule, {"instructed_share": 2.0}, "instructed_share"),
]


@pytest.mark.parametrize("cls, kwargs, field", BAD_SETTINGS, ids=[f"{c.__name__}-{f}" for c, _, f in BAD_SETTINGS])
def test_bad_settings_are_config_errors_naming_the_field(cls, kwargs, field):
    with pytest.raises(ConfigError, match=f"^{field}: ") as caught:
        cls(**kwargs).setup("fit")  # some settings only show when the task is generated, still before training
    assert caught.value.field == field
