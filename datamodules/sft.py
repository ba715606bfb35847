"""Supervised fine-tuning data: prompt/response pairs or chat messages, loss on the response only.

Rows come from JSONL or any `datasets` source (`FromSource`; `litforge.sources`).
"""

from __future__ import annotations

import warnings

from litforge.data import Record, check_length, encode_prompt_response
from litforge.datamodules.base import FromSource, LMDataModule

ROLES = {"system", "user", "assistant", "tool"}


class SFTDataModule(FromSource, LMDataModule):
    """SFT on rows `{"prompt", "response"}` or `{"messages": [{"role", "content"}, ...]}`.

    With messages, the conversation up to the last message goes through the tokenizer's chat template with the
    generation prompt (as `apply_chat_template(messages[:-1], add_generation_prompt=True)` renders it) and the last
    message, which must be the assistant's, is the response the loss is taken on.

    Args:
        truncate: cut samples longer than `max_length` (with a warning) instead of failing.
        **kwargs: see `FromSource` (train_path, val_path, test_path, splits, columns, streaming, ...) and
            `LMDataModule`.
    """

    def __init__(self, truncate: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.truncate = truncate

    def load(self, split):
        rows = self.source.read(split)
        if rows is None:
            return None
        if not isinstance(rows, list):  # a `datasets` split
            samples = self.source.tokenize(split, rows, self.encode_batch, ["input_ids", "labels", "cut"],
                                           self.encoding(truncate=self.truncate))
            if self.source.streaming:
                return samples.remove_columns("cut")
            cut = sum(samples["cut"]) + len(rows) - len(samples)  # rows dropped were cut to no response token
            samples = samples.remove_columns("cut")
        else:
            samples = self.encode_batch(rows)
            cut = sum(sample.pop("cut") for sample in samples) + len(rows) - len(samples)
        if cut:
            warnings.warn(f"{self.paths[split]}: {cut} samples cut to max_length={self.max_length} "
                          "(those left with no response token were dropped)")
        return samples

    def encode_batch(self, records: list[Record]) -> list[dict]:
        """Tokenize rows, checked against `max_length`: a sample each (marked `cut`), less those cut to nothing."""
        samples = []
        for record in records:
            field = "messages" if "messages" in record else "response"
            encoded = self.encode(record)
            sample = check_length(encoded, self.max_length, self.truncate, record, field)
            if sample is not None:
                samples.append(sample | {"cut": len(encoded["input_ids"]) > self.max_length})
        return samples

    def encode(self, record: Record):
        """Tokenize one record, checking its fields."""
        if "messages" not in record:
            prompt, response = record.get_text("prompt"), record.get_text("response")
            return encode_prompt_response(self.tokenizer, prompt, response)
        messages = record.get_typed("messages", list)
        if not messages:
            raise record.error("messages", "is empty")
        for index, message in enumerate(messages):
            where = f"messages[{index}]"
            if not isinstance(message, dict):
                raise record.error(where, f"expected an object, got {type(message).__name__}")
            if message.get("role") not in ROLES:
                raise record.error(f"{where}.role", f"expected one of {sorted(ROLES)}, got {message.get('role')!r}")
            if not isinstance(message.get("content"), str):
                raise record.error(f"{where}.content", "missing or not a string")
        if messages[-1]["role"] != "assistant":
            raise record.error(f"messages[{len(messages) - 1}].role", "the last message must be the assistant's")
        prompt = self.tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True, tokenize=False)
        return encode_prompt_response(self.tokenizer, prompt, messages[-1]["content"], add_bos=False)
