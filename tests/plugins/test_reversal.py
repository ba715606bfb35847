"""Reversal transforms on hand-written text and token ids: entities intact, involutions, seeds, masks, bad spans."""

from __future__ import annotations

import random

import pytest
from litforge.plugins.reversal import (
    CapitalizedWords,
    EntityPreservingReversal,
    RandomSegmentReversal,
    TokenReversal,
    WordReversal,
    entity_marks,
)

from litforge.data import IGNORE_INDEX, DataError
from litforge.errors import ConfigError

TEXT = "Mary Lee met Tom  Cruise today."
SPANS = [(0, 8), (13, 24)]  # "Mary Lee", "Tom  Cruise"


def test_token_reversal_reads_backwards_and_is_an_involution():
    reversed_text, spans = TokenReversal().reverse_text(TEXT, SPANS)
    assert reversed_text == TEXT[::-1]
    assert [reversed_text[a:b] for a, b in spans] == ["esiurC  moT", "eeL yraM"]
    assert TokenReversal().reverse_text(reversed_text)[0] == TEXT


def test_word_reversal_keeps_letters_and_spacing_and_is_an_involution():
    reversed_text, _ = WordReversal().reverse_text(TEXT, SPANS)
    assert reversed_text == "today. Cruise Tom met  Lee Mary"  # the gaps keep their places
    assert WordReversal().reverse_text(reversed_text)[0] == TEXT


def test_entity_reversal_keeps_each_entity_whole():
    reversed_text, spans = EntityPreservingReversal().reverse_text(TEXT, SPANS)
    assert reversed_text == "today. Tom  Cruise met Mary Lee"
    assert [reversed_text[a:b] for a, b in spans] == ["Tom  Cruise", "Mary Lee"]


def test_entity_spans_inside_a_word_move_the_whole_word():
    reversed_text, _ = EntityPreservingReversal().reverse_text("see New York's sky", [(4, 12)])
    assert reversed_text == "sky New York's see"


def test_entity_detector_finds_capitalised_runs():
    transform = EntityPreservingReversal(detector=CapitalizedWords())
    assert CapitalizedWords().spans("the Mary Lee went to Paris .") == [(4, 12), (21, 26)]
    assert transform.reverse_text("the Mary Lee went to Paris .")[0] == ". Paris to went Mary Lee the"


def test_segment_reversal_is_seeded_and_keeps_every_token_once():
    text = " ".join(f"w{i}" for i in range(30))
    transform = RandomSegmentReversal(k=3)
    first, _ = transform.reverse_text(text, seed=7)
    assert first == transform.reverse_text(text, seed=7)[0]
    assert first != transform.reverse_text(text, seed=8)[0]
    assert sorted(first.split()) == sorted(text.split())
    order = transform.order([False] * 5 + [True] + [False] * 5, rng=random.Random(3))
    assert sorted(order) == list(range(11))


def test_segment_reversal_with_k_one_is_word_reversal_and_separator_marks_segments():
    assert RandomSegmentReversal(k=1).reverse_text(TEXT)[0] == WordReversal().reverse_text(TEXT)[0]
    assert RandomSegmentReversal(k=1, separator="@@ ").reverse_text("a b c")[0] == "c @@ b @@ a"
    text, _ = RandomSegmentReversal(k=4, separator="@@ ").reverse_text("a b c d e f g h", seed=1)
    segments = [segment.split() for segment in text.split("@@")]
    assert all(1 <= len(segment) <= 4 for segment in segments)
    assert [w for segment in reversed(segments) for w in segment] == ["a", "b", "c", "d", "e", "f", "g", "h"]


def test_ids_keep_special_tokens_and_move_labels_and_entities(tokenizer):
    ids = tokenizer("ab = cd", add_special_tokens=False)["input_ids"]
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    input_ids = [bos] + ids + [eos]
    labels = [IGNORE_INDEX] * 6 + ids[5:] + [eos]  # loss on "cd" and eos only
    entity = [0, 1, 1, 0, 0, 0, 2, 2, 0]
    for transform in [TokenReversal(), WordReversal(), EntityPreservingReversal(), RandomSegmentReversal(2, "@@ ")]:
        transform.read_tokenizer(tokenizer)
        out = transform.reverse_ids(input_ids, labels, entity, random.Random(0))
        assert out["input_ids"][0] == bos and out["input_ids"][-1] == eos
        assert len(out["input_ids"]) == len(out["labels"]) == len(out["entity"])
        # every labelled token is still labelled with itself: the mask moved with the tokens
        for token, label in zip(out["input_ids"], out["labels"]):
            assert label in (IGNORE_INDEX, token)
        kept = [t for t, l in zip(out["input_ids"], out["labels"]) if l != IGNORE_INDEX and t not in list(b"@ ")]
        assert sorted(kept) == sorted(ids[5:] + [eos])
    entity_transform = EntityPreservingReversal()
    entity_transform.read_tokenizer(tokenizer)
    out = entity_transform.reverse_ids(input_ids, labels, entity)
    assert tokenizer.decode(out["input_ids"][1:-1]) == "cd = ab"
    assert out["entity"] == [0, 2, 2, 0, 0, 0, 1, 1, 0]
    assert out["labels"][1:3] == ids[5:7] and out["labels"][3:-1] == [IGNORE_INDEX] * 5


def test_ids_reversal_twice_is_identity_and_needs_the_tokenizer(tokenizer):
    ids = [tokenizer.bos_token_id] + tokenizer("the cat sat  down", add_special_tokens=False)["input_ids"]
    for transform in [TokenReversal(), WordReversal()]:
        with pytest.raises(RuntimeError, match="read_tokenizer"):
            transform.reverse_ids(ids)
        transform.read_tokenizer(tokenizer)
        once = transform.reverse_ids(ids)
        assert once["input_ids"] != ids
        assert transform.reverse_ids(once["input_ids"], once["labels"])["input_ids"] == ids


@pytest.mark.parametrize("spans, message", [
    ([(5, 40)], r"entities\[0\].*out of range"),
    ([(-1, 3)], r"out of range"),
    ([(3, 3)], r"out of range"),
    ([(0, 8), (5, 10)], r"entities\[1\].*overlaps entities\[0\]"),
    ([(0, "8")], r"expected \[start, end\] integers"),
])
def test_bad_spans_raise_data_error(spans, message):
    with pytest.raises(DataError, match=message):
        EntityPreservingReversal().reverse_text(TEXT, spans)
    with pytest.raises(DataError, match=message):
        entity_marks(len(TEXT), spans)


@pytest.mark.parametrize("k", [0, -2])
def test_segment_k_must_be_positive(k):
    with pytest.raises(ConfigError, match=f"^k: must be >= 1, got {k}$"):
        RandomSegmentReversal(k=k)


UNICODE_SPACES = ["ab\u00a0cd ef", "x\u3000y\u2003z \u0085w", "a\u2028b\tc\u2029d", "é\u00a0ü  ß\u202fend",
                  "\u00a0lead trail\u3000"]


@pytest.mark.parametrize("text", UNICODE_SPACES)
@pytest.mark.parametrize("transform", [WordReversal(), EntityPreservingReversal(), RandomSegmentReversal(2, "@@ ")],
                         ids=type)
def test_text_and_ids_reverse_unicode_whitespace_alike(tokenizer, transform, text):
    transform.read_tokenizer(tokenizer)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    by_ids = tokenizer.decode(transform.reverse_ids(ids, rng=random.Random(5))["input_ids"])
    assert by_ids == transform.reverse_text(text, seed=5)[0]
