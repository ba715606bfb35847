"""Supervised fine-tuning data: JSONL prompt/response pairs or chat messages, loss on the response only."""

from __future__ import annotations

import warnings

from litforge.data import Record, check_length, encode_prompt_response, read_jsonl
from litforge.datamodules.base import LMDataModule

ROLES = {"system", "user", "assistant", "tool"}


class SFTDataModule(LMDataModule):
    """SFT on JSONL lines `{"prompt", "response"}` or `{"messages": [{"role", "content"}, ...]}`.

    With messages, the conversation up to the last message goes through the tokenizer's chat template and the
    last message, which must be the assistant's, is the response the loss is taken on.

    Args:
        train_path: JSONL training file.
        val_path: JSONL validation file (optional).
        test_path: JSONL test file (optional).
        truncate: cut samples longer than `max_length` (with a warning) instead of failing.
        **kwargs: see `LMDataModule`.
    """

    def __init__(self, train_path: str, val_path: str | None = None, test_path: str | None = None,
                 truncate: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.paths = {"train": train_path, "val": val_path, "test": test_path}
        self.truncate = truncate

    def load(self, split):
        if self.paths[split] is None:
            return None
        samples, cut = [], 0
        for record in read_jsonl(self.paths[split]):
            field = "messages" if "messages" in record else "response"
            encoded = self.encode(record)
            cut += len(encoded["input_ids"]) > self.max_length
            sample = check_length(encoded, self.max_length, self.truncate, record, field)
            if sample is not None:
                samples.append(sample)
        if cut:
            warnings.warn(f"{self.paths[split]}: {cut} samples cut to max_length={self.max_length} "
                          "(those left with no response token were dropped)")
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
