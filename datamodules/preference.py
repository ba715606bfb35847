"""Preference pairs (prompt, chosen, rejected): a base that validates and tokenizes raw pairs, and a reader of JSONL
or `datasets` sources in the common layouts (plain, chat, UltraFeedback-binarized, HH-RLHF).

A subclass implements `pairs(split)` returning raw dicts `{"prompt", "chosen", "rejected"}` (str; extra keys are
allowed and ignored); `load(split)` turns them into samples with `encode_pair`. A batch holds the chosen responses
in its first half and the rejected ones in its second half, so the policy runs once on the concatenation.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch

from litforge.data import IGNORE_INDEX, DataError, Record, Sample
from litforge.datamodules.base import FromSource, LMDataModule
from litforge.datamodules.sft import ROLES
from litforge.tokenizer import response_end_ids

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

    def sample_length(self, sample: Sample) -> int:
        """Tokens of the pair's shared-prompt row (prompt once, then chosen and rejected): what it adds to a batch
        under the default layouts, so `group_by_length` groups pairs by the work they cost."""
        prompt = next((i for i, label in enumerate(sample["chosen_labels"]) if label != IGNORE_INDEX), 0)
        return len(sample["chosen_input_ids"]) + len(sample["rejected_input_ids"]) - prompt

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
            response = tok(pair[field], add_special_tokens=False)["input_ids"] + response_end_ids(tok)
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


class JSONLPreferenceDataModule(FromSource, PreferenceDataModule):
    """Preference pairs from JSONL or any `datasets` source (`FromSource`), in any of these layouts:

    - `{"prompt": str, "chosen": str, "rejected": str}`;
    - chat prompt: `"prompt"` (or `"messages"`) a list of `{"role", "content"}` messages, rendered with the
      tokenizer's chat template and a generation prompt; `"chosen"`/`"rejected"` strings, an assistant message,
      or a one-message list holding it;
    - full conversations (UltraFeedback-binarized): `"chosen"`/`"rejected"` message lists that share every turn
      but the last, the assistant's response; the shared turns are the chat prompt (a `"prompt"` string is ignored);
    - full transcripts (HH-RLHF): no prompt, `"chosen"`/`"rejected"` strings `"\n\nHuman: ... \n\nAssistant: ..."`
      sharing everything up to their last `assistant_marker`; that prefix is the prompt, the rest the response.

    Args:
        assistant_marker: where the last turn starts in a full transcript (HH-RLHF layout).
        **kwargs: see `FromSource` (train_path, val_path, test_path, splits, columns, streaming, ...) and
            `PreferenceDataModule`.
    """

    def __init__(self, assistant_marker: str = "\n\nAssistant:", **kwargs):
        super().__init__(**kwargs)
        self.assistant_marker = assistant_marker

    def pairs(self, split):
        if self.paths.get(split) is None:
            return None
        return [self.to_pair(record) for record in self.source.records(split)]

    def load(self, split):
        if self.paths.get(split) is None or self.source.is_jsonl(split):  # JSONL: validated and tokenized in order
            return super().load(split)
        rows = self.source.read(split)
        fields = ["chosen_input_ids", "chosen_labels", "rejected_input_ids", "rejected_labels", "cut", "index"]
        samples = self.source.tokenize(split, rows, self.encode_batch, fields,
                                       self.encoding(truncate=self.truncate, marker=self.assistant_marker))
        if not self.source.streaming:
            cut = sum(samples["cut"])
            if cut:
                warnings.warn(f"{self.paths[split]}: {cut} responses cut to max_length={self.max_length}")
        return samples.remove_columns("cut")

    def encode_batch(self, records: list[Record]) -> list[Sample]:
        """Tokenized pairs of `datasets` rows, each keeping its row index (`index`) and whether it was cut."""
        return [self.encode_pair(self.to_pair(record)) | {"index": record.index} for record in records]

    def to_pair(self, record: Record) -> Record:
        """Render any layout of the class docstring into a plain pair of strings (a plain pair is returned as is)."""
        chosen = record.get("chosen")
        if isinstance(chosen, list) and len(chosen) > 1:
            return self.conversation_pair(record)
        if "prompt" not in record and "messages" not in record and isinstance(chosen, str):
            return self.transcript_pair(record)
        prompt_field = "messages" if "messages" in record and "prompt" not in record else "prompt"
        if not isinstance(record.get(prompt_field), list):
            return record
        pair = record.located(record)
        pair["prompt"] = self.render(record, prompt_field, record[prompt_field])
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

    def conversation_pair(self, record: Record) -> Record:
        """A pair of full conversations sharing all turns but the last: those turns are the prompt."""
        chosen, rejected = record["chosen"], record.get("rejected")
        if not isinstance(rejected, list) or len(rejected) != len(chosen):
            raise record.error("rejected", f"expected a conversation of {len(chosen)} messages like chosen's")
        for field, conversation in (("chosen", chosen), ("rejected", rejected)):
            self.check_messages(record, field, conversation)
            if conversation[-1]["role"] != "assistant":
                raise record.error(f"{field}[{len(conversation) - 1}].role", "the last message must be the "
                                                                              "assistant's")
        turns = [(m["role"], m["content"]) for m in chosen[:-1]]
        for index, message in enumerate(rejected[:-1]):
            if (message["role"], message["content"]) != turns[index]:
                raise record.error(f"rejected[{index}]", "differs from chosen's; the conversations must share all "
                                                         "turns but the last")
        return record.located({"prompt": self.render(record, "chosen", chosen[:-1]),
                               "chosen": chosen[-1]["content"], "rejected": rejected[-1]["content"]})

    def transcript_pair(self, record: Record) -> Record:
        """A pair of full transcripts (HH-RLHF): the shared text up to the last assistant marker is the prompt."""
        chosen, rejected = record["chosen"], record.get_typed("rejected", str)
        cut = chosen.rfind(self.assistant_marker)
        if cut < 0:
            raise record.error("prompt", f"missing, and chosen has no {self.assistant_marker!r} turn to split a "
                                         "prompt from")
        prompt = chosen[:cut + len(self.assistant_marker)]
        if not rejected.startswith(prompt):
            raise record.error("rejected", f"does not share chosen's transcript up to its last "
                                           f"{self.assistant_marker!r}")
        return record.located({"prompt": prompt, "chosen": chosen[len(prompt):], "rejected": rejected[len(prompt):]})

    def render(self, record: Record, field: str, messages: list) -> str:
        """Checked messages through the tokenizer's chat template, with the generation prompt."""
        if not messages:
            raise record.error(field, "is empty")
        self.check_messages(record, field, messages)
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    @staticmethod
    def check_messages(record: Record, field: str, messages: list) -> None:
        """Each message a `{"role", "content"}` object with a known role and string content."""
        for index, message in enumerate(messages):
            where = f"{field}[{index}]"
            if not isinstance(message, dict) or message.get("role") not in ROLES:
                raise record.error(f"{where}.role", f"expected a message with a role in {sorted(ROLES)}")
            if not isinstance(message.get("content"), str):
                raise record.error(f"{where}.content", "missing or not a string")
