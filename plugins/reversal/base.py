"""The ReversalTransform contract and the one reordering engine every reversal type shares.

Reverse training (Golovneva et al. 2024, "Reverse Training to Nurse the Reversal Curse") trains on each sample and
on a reversed copy of it. All four reversal types are one operation: cut the sequence into *chunks* that keep their
forward order (a token, a word, an entity, a random segment) and write the chunks in reverse order. Whitespace
between chunks stays where it was, so "Alice met Bob" word-reverses to "Bob met Alice". A subclass only says how
words group into chunks (`chunks`); text, token ids, labels and entity marks all move through the same order, so the
loss mask stays aligned with the reversed tokens by construction.

Departures from the paper:
    1. On token ids, a word is a run of tokens between whitespace-only tokens. For a byte-level tokenizer (litforge's
       own, GPT-2's) the tokens' bytes are decoded as UTF-8, so a multi-byte space (U+00A0, U+3000) spread over
       several byte tokens is whitespace as in `reverse_text`, and the two paths agree exactly. A tokenizer that
       glues the space to the next word ("Ġword") sees whole lines as one word; reverse such data as text
       (`reverse_text`) before tokenizing.
    2. Special tokens (bos, eos, pad) never move; the text between them is reversed piece by piece, so a packed block
       of several documents reverses each document in place.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from tokenizers import decoders
from transformers import PreTrainedTokenizerBase
from transformers.convert_slow_tokenizer import bytes_to_unicode

from litforge.data import IGNORE_INDEX, DataError, Record, Sample

Span = tuple[int, int]


def entity_marks(length: int, spans: Sequence[Sequence[int]] | None, record: Record | None = None,
                 field: str = "entities") -> list[int]:
    """Per-position entity ids (0 outside, k inside the k-th span) from [start, end) spans; bad spans raise DataError.

    A span must be two integers with 0 <= start < end <= length, and spans must not overlap.
    """
    marks = [0] * length
    for index, span in enumerate(spans or []):
        where = f"{field}[{index}]"
        if (not isinstance(span, (list, tuple)) or len(span) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in span)):
            raise _error(record, where, f"expected [start, end] integers, got {span!r}")
        start, end = span
        if not 0 <= start < end <= length:
            raise _error(record, where, f"span [{start}, {end}) is out of range for a text of length {length} "
                                        "(need 0 <= start < end <= length)")
        for position in range(start, end):
            if marks[position]:
                raise _error(record, where, f"span [{start}, {end}) overlaps {field}[{marks[position] - 1}]")
            marks[position] = index + 1
    return marks


def runs(marks: Sequence[int]) -> list[Span]:
    """[start, end) of each maximal run of equal non-zero marks (the spans of the entities)."""
    spans, start = [], None
    for position, mark in enumerate(list(marks) + [0]):
        if start is not None and mark != marks[start]:
            spans.append((start, position))
            start = None
        if start is None and mark:
            start = position
    return spans


class ReversalTransform:
    """Reverses a sequence while keeping some chunks (tokens, words, entities, segments) in forward order.

    Subclasses implement `chunks`; call `read_tokenizer(tokenizer)` once before `reverse_ids`.

    Args:
        separator: text written between reversed chunks (e.g. "@@ "), or None for none.
    """

    def __init__(self, separator: str | None = None):
        self.separator = separator
        self.space_ids: set[int] | None = None
        self.token_bytes: dict[int, bytes] | None = None  # id -> bytes, for byte-level tokenizers
        self.special_ids: set[int] = set()
        self.separator_ids: list[int] = []

    def chunks(self, words: list[Span], entity: Sequence[int], rng: random.Random) -> list[Span]:
        """Group consecutive words into chunks: a list of [first_word, last_word + 1) covering all words in order."""
        raise NotImplementedError

    def order(self, space: Sequence[bool], entity: Sequence[int] | None = None,
              rng: random.Random | None = None) -> list[int | None]:
        """The original positions in reversed order; None marks where the separator goes."""
        n = len(space)
        entity = list(entity) if entity is not None else [0] * n
        words = runs([0 if s else 1 for s in space])  # maximal runs of non-whitespace
        if not words:
            return list(range(n))
        groups = self.chunks(words, entity, rng or random.Random(0))
        pieces = [(words[first][0], words[last - 1][1]) for first, last in groups]
        gaps = [range(pieces[i][1], pieces[i + 1][0]) for i in range(len(pieces) - 1)]
        out: list[int | None] = list(range(pieces[0][0]))
        for j, (start, end) in enumerate(reversed(pieces)):
            if j:
                out += gaps[j - 1]
                if self.separator:
                    out.append(None)
            out += range(start, end)
        return out + list(range(pieces[-1][1], n))

    def reverse_text(self, text: str, entities: Sequence[Sequence[int]] | None = None,
                     seed: int = 0) -> tuple[str, list[Span]]:
        """Reverse a string; returns it with the character spans of the entity pieces (one per entity kept whole)."""
        entity = entity_marks(len(text), entities)
        order = self.order([c.isspace() for c in text], entity, random.Random(seed))
        chars, marks = [], []
        for position in order:
            piece = self.separator if position is None else text[position]
            chars.append(piece)
            marks += [0 if position is None else entity[position]] * len(piece)
        text = "".join(chars)
        return text, [(start, end) for start, end in runs(marks) if not text[start:end].isspace()]

    def read_tokenizer(self, tokenizer: PreTrainedTokenizerBase) -> None:
        """Read which token ids are whitespace (or each token's bytes) and which are special; encode the separator."""
        self.special_ids = set(tokenizer.all_special_ids)
        self.space_ids = {i for i in range(len(tokenizer))
                          if i not in self.special_ids and (text := tokenizer.decode([i])) and text.isspace()}
        self.token_bytes = token_bytes(tokenizer)
        self.separator_ids = tokenizer(self.separator, add_special_tokens=False)["input_ids"] if self.separator else []

    def reverse_ids(self, input_ids: Sequence[int], labels: Sequence[int] | None = None,
                    entity: Sequence[int] | None = None, rng: random.Random | None = None) -> Sample:
        """Reverse one unpadded sample of token ids; labels and entity marks move with their tokens.

        Separator tokens carry a label when the token after them does, and entity mark 0.
        """
        if self.space_ids is None:
            raise RuntimeError(f"{type(self).__name__}.read_tokenizer(tokenizer) must be called before reverse_ids")
        ids = list(input_ids)
        labels = list(labels) if labels is not None else list(ids)
        entity = list(entity) if entity is not None else [0] * len(ids)
        rng = rng or random.Random(0)
        out: list[int | None] = []
        start = 0
        for end in [i for i, token in enumerate(ids) if token in self.special_ids] + [len(ids)]:
            piece = self.order(self.whitespace(ids[start:end]), entity[start:end], rng)
            out += [None if p is None else p + start for p in piece]
            if end < len(ids):
                out.append(end)
            start = end + 1
        sample: Sample = {"input_ids": [], "labels": [], "entity": []}
        for index, position in enumerate(out):
            if position is None:
                following = next(p for p in out[index + 1:] if p is not None)
                labelled = labels[following] != IGNORE_INDEX
                sample["input_ids"] += self.separator_ids
                sample["labels"] += self.separator_ids if labelled else [IGNORE_INDEX] * len(self.separator_ids)
                sample["entity"] += [0] * len(self.separator_ids)
            else:
                sample["input_ids"].append(ids[position])
                sample["labels"].append(labels[position])
                sample["entity"].append(entity[position])
        return sample

    def whitespace(self, ids: Sequence[int]) -> list[bool]:
        """Per token of a run without special tokens, whether it is whitespace (as `str.isspace` sees the text)."""
        if self.token_bytes is None:
            return [token in self.space_ids for token in ids]
        pieces = [self.token_bytes[token] for token in ids]
        space = whitespace_bytes(b"".join(pieces))
        flags, start = [], 0
        for piece in pieces:
            flags.append(bool(piece) and all(space[start:start + len(piece)]))
            start += len(piece)
        return flags


def token_bytes(tokenizer: PreTrainedTokenizerBase) -> dict[int, bytes] | None:
    """The bytes of each non-special token of a byte-level BPE tokenizer (GPT-2's alphabet), else None."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or not isinstance(backend.decoder, decoders.ByteLevel):
        return None
    byte_of = {symbol: byte for byte, symbol in bytes_to_unicode().items()}
    special = set(tokenizer.all_special_ids)
    table = {}
    for symbol, index in tokenizer.get_vocab().items():
        if index not in special:
            if not all(char in byte_of for char in symbol):
                return None  # an added token outside the byte alphabet: fall back to decoding token by token
            table[index] = bytes(byte_of[char] for char in symbol)
    return table


def whitespace_bytes(data: bytes) -> list[bool]:
    """Per byte, whether it is part of a whitespace character of the UTF-8 text; bytes of invalid UTF-8 are not."""
    flags = [False] * len(data)
    start = 0
    while start < len(data):
        lead = data[start]
        width = 1 if lead < 0xC0 else 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4
        try:
            char = data[start:start + width].decode("utf-8")
        except UnicodeDecodeError:
            start += 1
            continue
        if char.isspace():
            flags[start:start + width] = [True] * width
        start += width
    return flags


def _error(record: Record | None, field: str, message: str) -> DataError:
    return record.error(field, message) if record is not None else DataError(None, None, field, message)
