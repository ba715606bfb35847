"""Preference pairs (prompt, chosen, rejected): a base that validates and tokenizes raw pairs, and a JSONL reader.

A subclass implements `pairs(split)` returning raw dicts `{"prompt", "chosen", "rejected"}` (str; extra keys are
allowed and ignored); `load(split)` turns them into samples with `encode_pair`. A batch holds the chosen responses
in its first half and the rejected ones in its second half, so the policy runs once on the concatenation.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch

from litforge.data import IGNORE_INDEX, DataError, Record, Sample, read_jsonl
from litforge.datamodules.base import LMDataModule
from litforge.datamodules.sft import ROLES

PAIR_FIELDS = ("prompt", "chosen", "rejected")


class PairCollator:
    """Pads B pair samples into one batch of 2B rows: chosen rows 0..B-1, rejected rows B..2B-1.

    Output: input_ids, labels, attention_mask (2B, T); index (B,) = each pair's position in its split; any other
    field of the samples is passed through as a list.
    """

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int = 1):
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, samples: Sequence[Sample]) -> dict[str, Any]:
        rows = [(s["chosen_input_ids"], s["chosen_labels"]) for s in samples]
        rows += [(s["rejected_input_ids"], s["rejected_labels"]) for s in samples]
        length = max(len(ids) for ids, _ in rows)
        length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        batch: dict[str, Any] = {
            "input_ids": torch.tensor([ids + [self.pad_token_id] * (length - len(ids)) for ids, _ in rows]),
            "labels": torch.tensor([labels + [IGNORE_INDEX] * (length - len(labels)) for _, labels in rows]),
            "attention_mask": torch.tensor([[1] * len(ids) + [0] * (length - len(ids)) for ids, _ in rows]),
            "index": torch.tensor([s["index"] for s in samples]),
        }
        for key in samples[0]:
            if key not in batch and not key.startswith(("chosen_", "rejected_")):
                batch[key] = [s[key] for s in samples]
        return batch


class PreferenceDataModule(LMDataModule):
    """Base of the preference datamodules: subclasses return raw pairs from `pairs(split)`.

    Bad pairs raise DataError naming the source, line and field: missing or non-string fields, an empty response,
    chosen identical to rejected, a prompt that leaves no room for a response in `max_length`.

    Args:
        truncate: cut responses that overflow `max_length` (with a warning) instead of failing.
        **kwargs: see `LMDataModule`.
    """

    def __init__(self, truncate: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.truncate = truncate
        self.collate = PairCollator(self.tokenizer.pad_token_id)

    def pairs(self, split: str) -> list[dict[str, Any]] | None:
        """Raw pairs `{"prompt", "chosen", "rejected"}` of a split ("train", "val", "test"), or None."""
        raise NotImplementedError

    def load(self, split):
        pairs = self.pairs(split)
        if pairs is None:
            return None
        samples, cut = [], 0
        for number, pair in enumerate(pairs):
            sample = self.encode_pair(pair, where=(f"<{type(self).__name__} {split}>", number + 1))
            cut += sample.pop("cut")
            sample["index"] = len(samples)
            samples.append(sample)
        if cut:
            warnings.warn(f"{type(self).__name__} {split}: {cut} responses cut to max_length={self.max_length}")
        return samples

    def encode_pair(self, pair: dict[str, Any], where: tuple[str, int] = ("<pairs>", 0)) -> Sample:
        """Validate one raw pair and tokenize it into chosen/rejected input_ids and labels (loss on responses).

        `where` (source, number) names the pair in errors unless the pair is a JSONL `Record`, which knows its line.
        """
        def error(field, message):
            if isinstance(pair, Record):
                return pair.error(field, message)
            return DataError(where[0], where[1], field, message)

        for field in PAIR_FIELDS:
            if not isinstance(pair.get(field), str):
                found = "missing" if field not in pair else f"expected str, got {type(pair[field]).__name__}"
                raise error(field, found)
        for field in ("chosen", "rejected"):
            if not pair[field].strip():
                raise error(field, "is empty")
        if pair["chosen"] == pair["rejected"]:
            raise error("rejected", "is identical to chosen")
        tok = self.tokenizer
        prompt = pair["prompt"]
        bos = [tok.bos_token_id] if tok.bos_token_id is not None and not prompt.startswith(tok.bos_token or "") else []
        prompt_ids = bos + tok(prompt, add_special_tokens=False)["input_ids"]
        if len(prompt_ids) >= self.max_length:
            raise error("prompt", f"is {len(prompt_ids)} tokens, leaving no room for a response in "
                                  f"max_length={self.max_length}")
        sample, cut = {}, False
        for field in ("chosen", "rejected"):
            response = tok(pair[field], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            room = self.max_length - len(prompt_ids)
            if len(response) > room:
                if not self.truncate:
                    raise error(field, f"prompt + response is {len(prompt_ids) + len(response)} tokens, longer than "
                                       f"max_length={self.max_length} (set truncate: true to cut it)")
                response, cut = response[:room], True
            sample[f"{field}_input_ids"] = prompt_ids + response
            sample[f"{field}_labels"] = [IGNORE_INDEX] * len(prompt_ids) + response
        sample["cut"] = cut
        return sample


class JSONLPreferenceDataModule(PreferenceDataModule):
    """Pairs from JSONL: `{"prompt": str, "chosen": str, "rejected": str}`, or chat style.

    Chat style: `"prompt"` (or `"messages"`) is a list of `{"role", "content"}` messages, rendered with the
    tokenizer's chat template and a generation prompt; `"chosen"`/`"rejected"` are strings, an assistant message,
    or a one-message list holding it.

    Args:
        train_path: JSONL training pairs.
        val_path: JSONL validation pairs (optional).
        test_path: JSONL test pairs (optional).
        **kwargs: see `PreferenceDataModule`.
    """

    def __init__(self, train_path: str, val_path: str | None = None, test_path: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.paths = {"train": train_path, "val": val_path, "test": test_path}

    def pairs(self, split):
        if self.paths.get(split) is None:
            return None
        return [self.to_pair(record) for record in read_jsonl(self.paths[split])]

    def to_pair(self, record: Record) -> Record:
        """Render a chat-style record into plain strings (a plain record is returned as it is)."""
        prompt_field = "messages" if "messages" in record and "prompt" not in record else "prompt"
        if not isinstance(record.get(prompt_field), list):
            return record
        messages = record[prompt_field]
        if not messages:
            raise record.error(prompt_field, "is empty")
        for index, message in enumerate(messages):
            where = f"{prompt_field}[{index}]"
            if not isinstance(message, dict) or message.get("role") not in ROLES:
                raise record.error(f"{where}.role", f"expected a message with a role in {sorted(ROLES)}")
            if not isinstance(message.get("content"), str):
                raise record.error(f"{where}.content", "missing or not a string")
        pair = Record(record)
        pair.path, pair.line = record.path, record.line
        pair["prompt"] = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        for field in ("chosen", "rejected"):
            value = record.get(field)
            if isinstance(value, list) and len(value) == 1:
                value = value[0]
            if isinstance(value, dict):
                if value.get("role") != "assistant" or not isinstance(value.get("content"), str):
                    raise record.error(field, "expected an assistant message with string content")
                value = value["content"]
            pair[field] = value
        return pair
