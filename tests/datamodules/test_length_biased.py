"""DataModules of the synthetic list task: demonstrations for the starting model."""

from __future__ import annotations

from litforge.datamodules import LengthBiasedSFTDataModule
from litforge.datamodules.list_task import LengthBiasedTask

from litforge.length import LengthInstruction


def test_demonstrations_are_good_lists_whatever_limit_the_prompt_states():
    data = LengthBiasedSFTDataModule(num_train=20, num_val=5)
    data.setup("fit")
    sample = data.splits["train"][0]
    text = data.tokenizer.decode(sample["input_ids"], skip_special_tokens=True)
    response = data.tokenizer.decode([t for t in sample["labels"] if t != -100], skip_special_tokens=True)
    prompt = text[: len(text) - len(response)]
    assert LengthBiasedTask().is_good((LengthInstruction().parse(prompt) or (prompt,))[0], response)

