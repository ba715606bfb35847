"""Reversal-curse tasks for reverse training (Golovneva et al. 2024): symbolic pairs, fictional biographies, JSONL.

Training text is seen in one direction only; the entity spans of every sample travel with it as a per-token
`entity` field (0 outside an entity, k inside the k-th), so `EntityPreservingReversal` in the model can keep them
whole. Validation sets are named: `forward` asks in the trained direction, `reverse` asks the other way.

Question format (one for every method): the reverse question is the fact rewritten by entity-preserving reversal,
cut before the entity to recover, e.g. the fact "a b = c d" is asked as "c d = " -> "a b" + eos. With a one-symbol
relation and one-symbol words this is also what token and word reversal produce, except that they reverse the
letters or words *inside* each multi-symbol entity; so the question poses the reversed language with entity names
as written, and only a method that kept entities whole has seen them so.

Departures from the paper:
    1. Entity names are words of single random symbols (letters and digits), one byte token each, so a 2-word name
       is 2 tokens; the paper's symbolic task draws random tokens from a word-piece vocabulary.
    2. Biographies use one sentence template (the paper's biographies vary wording); the reverse question gives all
       attributes and asks for the full name.
    3. The question's answer is scored by exact match under teacher forcing (every answer token the argmax), which
       equals greedy decoding's exact match without running generation.
"""

from __future__ import annotations

import random
import string
from collections.abc import Sequence

from litforge.datamodules.base import LMDataModule
from litforge.plugins.reversal.base import ReversalTransform, Span, entity_marks
from litforge.plugins.reversal.entity import EntityDetector, EntityPreservingReversal
from litforge.plugins.reversal.token import TokenReversal

from litforge.data import IGNORE_INDEX, Record, Sample, check_length, read_jsonl
from litforge.errors import require


def encode_with_entities(tokenizer, text: str, spans: Sequence[Sequence[int]] | None,
                         record: Record | None = None) -> Sample:
    """bos + text + eos, labels on every token, and the per-token entity marks of the [start, end) character spans."""
    marks = entity_marks(len(text), spans, record)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    entity = [max(marks[start:end], default=0) for start, end in encoded["offset_mapping"]]
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    ids = bos + encoded["input_ids"] + [tokenizer.eos_token_id]
    return {"input_ids": ids, "labels": list(ids), "entity": [0] * len(bos) + entity + [0]}


def encode_question(tokenizer, prompt: str, answer: str, ends: bool) -> Sample:
    """bos + prompt + answer (+ eos when the answer ends the sentence), labels on the answer only."""
    prompt_ids = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    prompt_ids += tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"] + ([tokenizer.eos_token_id] if ends else [])
    return {"input_ids": prompt_ids + answer_ids, "labels": [IGNORE_INDEX] * len(prompt_ids) + answer_ids}


def reverse_question(text: str, spans: Sequence[Span], transform: ReversalTransform | None = None) -> tuple[str, str]:
    """(prompt, answer): `text` reversed (entity-preserving by default), cut before its first entity (now last)."""
    reversed_text, reversed_spans = (transform or EntityPreservingReversal()).reverse_text(text, spans)
    start, end = reversed_spans[-1]
    assert end == len(reversed_text), "the first entity must end the reversed text"
    return reversed_text[:start], reversed_text[start:]


class ReversalTaskDataModule(LMDataModule):
    """A seeded set of facts (text + entity spans) trained forward, asked forward and in reverse.

    Subclasses implement `facts()` and `forward_question(index)`; `val` and `test` are the same questions.

    Args:
        num_eval: how many facts are asked (None = all).
        **kwargs: see `LMDataModule`.
    """

    def __init__(self, num_eval: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.num_eval = num_eval
        self._facts: list[tuple[str, list[Span]]] | None = None

    def facts(self) -> list[tuple[str, list[Span]]]:
        """Every fact as (text, entity spans); the first span is the entity the reverse question asks for."""
        raise NotImplementedError

    def forward_question(self, text: str, spans: list[Span]) -> tuple[str, str, bool]:
        """(prompt, answer, answer ends the sentence) asking in the trained direction."""
        raise NotImplementedError

    def load(self, split):
        if self._facts is None:
            self._facts = self.facts()
        facts = self._facts
        if split == "train":
            encoded = [encode_with_entities(self.tokenizer, text, spans) for text, spans in facts]
            return [check_length(sample, self.max_length, False, None, "text") for sample in encoded]
        asked = facts[:self.num_eval] if self.num_eval is not None else facts
        forward = [encode_question(self.tokenizer, *self.forward_question(text, spans)) for text, spans in asked]
        reverse = [encode_question(self.tokenizer, *reverse_question(text, spans), True) for text, spans in asked]
        return {"forward": forward, "reverse": reverse}


class SymbolicReversalDataModule(ReversalTaskDataModule):
    """Facts "A = B" between random multi-symbol names, e.g. "k 3 = Q b"; reverse question "Q b = " -> "k 3".

    A third validation set, `reverse_tokens`, asks the reverse question token-reversed ("b Q = " -> "3 k"): the
    language token reversal trains on, with the names' symbols backwards.

    Args:
        num_pairs: facts (every name is used once).
        entity_length: symbols (words, one token each) per name.
        num_symbols: size of the symbol alphabet (letters then digits, at most 62).
        relation: the word between the names; one symbol, so it reads the same under every reversal.
        **kwargs: see `ReversalTaskDataModule`.
    """

    def __init__(self, num_pairs: int = 500, entity_length: int = 2, num_symbols: int = 60, relation: str = "=",
                 **kwargs):
        super().__init__(**kwargs)
        alphabet = string.ascii_letters + string.digits
        require(1 <= num_symbols <= len(alphabet), "num_symbols", f"must be in [1, {len(alphabet)}], got {num_symbols}")
        require(entity_length >= 1, "entity_length", f"must be >= 1, got {entity_length}")
        require(num_symbols ** entity_length >= 2 * num_pairs, "num_pairs",
                f"{num_symbols}^{entity_length} names are too few for {num_pairs} pairs")
        self.symbols = alphabet[:num_symbols]
        self.num_pairs, self.entity_length, self.relation = num_pairs, entity_length, relation

    def facts(self):
        rng = random.Random(self.seed)
        names: set[str] = set()
        while len(names) < 2 * self.num_pairs:
            names.add(" ".join(rng.choice(self.symbols) for _ in range(self.entity_length)))
        names = sorted(names)
        rng.shuffle(names)
        facts = []
        for a, b in zip(names[0::2], names[1::2]):
            text = f"{a} {self.relation} {b}"
            facts.append((text, [(0, len(a)), (len(text) - len(b), len(text))]))
        return facts

    def forward_question(self, text, spans):
        start = spans[1][0]
        return text[:start], text[start:], True

    def load(self, split):
        sets = super().load(split)
        if split != "train":  # the reverse question in token-reversed language: "d c = " -> "b a"
            asked = self._facts[:self.num_eval] if self.num_eval is not None else self._facts
            sets["reverse_tokens"] = [encode_question(self.tokenizer, *reverse_question(text, spans, TokenReversal()),
                                                      True) for text, spans in asked]
        return sets


class BiographyReversalDataModule(ReversalTaskDataModule):
    """Fictional people: "<name> was born in <city> on <date> and works as a <job> ."; asked name -> city, and
    attributes -> full name (". job a as works and <date> on <city> in born was " -> "<name>").

    Args:
        num_people: biographies (full names are unique).
        **kwargs: see `ReversalTaskDataModule`.
    """

    FIRST = ("Ada", "Bruno", "Celia", "Dario", "Elin", "Farid", "Greta", "Hugo", "Ines", "Jonas", "Kira", "Lior",
             "Mara", "Nils", "Oona", "Pavel", "Quinn", "Rosa", "Soren", "Talia")
    LAST = ("Abbot", "Brandt", "Castell", "Dunmore", "Eskola", "Fairlie", "Gaskin", "Holm", "Ivers", "Jarvik",
            "Kestrel", "Lindqvist", "Morrow", "Nyberg", "Okafor", "Pell", "Quist", "Ravel", "Stroud", "Tamsin")
    CITIES = ("Arden", "Brisk", "Calder", "Dunwich", "Elmstead", "Fenwick", "Glenrock", "Harwood", "Ivybridge",
              "Kestwick", "Larkhall", "Millbrook")
    MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
              "November", "December")
    JOBS = ("baker", "pilot", "chemist", "weaver", "surveyor", "violinist", "glazier", "botanist", "cartographer",
            "jeweller")

    def __init__(self, num_people: int = 200, **kwargs):
        super().__init__(**kwargs)
        require(num_people <= len(self.FIRST) * len(self.LAST), "num_people",
                f"at most {len(self.FIRST) * len(self.LAST)} people have distinct names, got {num_people}")
        self.num_people = num_people

    def facts(self):
        rng = random.Random(self.seed)
        names = rng.sample([f"{first} {last}" for first in self.FIRST for last in self.LAST], self.num_people)
        facts = []
        for name in names:
            date = f"{rng.randint(1, 28)} {rng.choice(self.MONTHS)} {rng.randint(1900, 1999)}"
            fields = [name, rng.choice(self.CITIES), date, rng.choice(self.JOBS)]
            pieces = ["", " was born in ", " on ", " and works as a ", " ."]
            text, spans = pieces[0], []
            for field, after in zip(fields, pieces[1:]):
                spans.append((len(text), len(text) + len(field)))
                text += field + after
            facts.append((text, spans))
        return facts

    def forward_question(self, text, spans):
        start, end = spans[1]
        return text[:start], text[start:end], False


class ReversalTextDataModule(LMDataModule):
    """Real data for reverse training: JSONL lines `{"text", "entities"?}`, entities as [start, end) character spans.

    Lines without `entities` get the detector's spans (or none). One document per sample, so the entity marks stay
    aligned with the tokens (no packing).

    Args:
        train_path: JSONL training file.
        val_path: JSONL validation file (optional).
        test_path: JSONL test file (optional).
        detector: finds entities in lines that give none (None: such lines have no entities).
        truncate: cut documents longer than `max_length` instead of failing.
        **kwargs: see `LMDataModule`.
    """

    def __init__(self, train_path: str, val_path: str | None = None, test_path: str | None = None,
                 detector: EntityDetector | None = None, truncate: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.paths = {"train": train_path, "val": val_path, "test": test_path}
        self.detector = detector
        self.truncate = truncate

    def load(self, split):
        if self.paths[split] is None:
            return None
        samples = []
        for record in read_jsonl(self.paths[split]):
            text = record.get_text("text")
            spans = record.get_typed("entities", list, required=False)
            if spans is None and self.detector is not None:
                spans = self.detector.spans(text)
            sample = encode_with_entities(self.tokenizer, text, spans, record)
            sample = check_length(sample, self.max_length, self.truncate, record, "text")
            if sample is not None:
                samples.append(sample)
        return samples
