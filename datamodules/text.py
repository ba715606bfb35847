"""Plain-text pretraining data: JSONL `{"text"}` files, and a seeded synthetic text source for the quick start."""

from __future__ import annotations

import random
import warnings

from litforge.data import check_length, encode_text, pack, read_jsonl
from litforge.datamodules.base import LMDataModule


class TextDataModule(LMDataModule):
    """Pretraining on JSONL lines `{"text": "..."}`, packed into full blocks (or one document per sample).

    Args:
        train_path: JSONL file of training documents.
        val_path: JSONL file of validation documents (optional).
        test_path: JSONL file of test documents (optional).
        pack: concatenate documents (bos ... eos) and cut into `max_length` blocks; no padding is wasted.
            Without packing each document is one sample and a document longer than `max_length` is an error.
        truncate: without packing, cut over-long documents to `max_length` (with a warning) instead of failing.
        **kwargs: see `LMDataModule`.
    """

    def __init__(self, train_path: str, val_path: str | None = None, test_path: str | None = None,
                 pack: bool = True, truncate: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.paths = {"train": train_path, "val": val_path, "test": test_path}
        self.pack = pack
        self.truncate = truncate

    def load(self, split):
        if self.paths[split] is None:
            return None
        records = read_jsonl(self.paths[split])
        documents = [encode_text(self.tokenizer, record.get_text("text")) for record in records]
        if self.pack:
            blocks = pack(documents, self.max_length)
            if not blocks:
                raise records[0].error(None, f"the whole file holds fewer than max_length={self.max_length} tokens")
            return blocks
        samples = [check_length({"input_ids": ids, "labels": list(ids)}, self.max_length, self.truncate, record, "text")
                   for ids, record in zip(documents, records)]
        cut = sum(len(ids) > self.max_length for ids in documents)
        if cut:
            warnings.warn(f"{self.paths[split]}: {cut} documents cut to max_length={self.max_length}")
        return [sample for sample in samples if sample is not None]


class SyntheticTextDataModule(LMDataModule):
    """Seeded toy English (counting and short templated sentences) so the quick start needs no files.

    The text has structure a tiny model learns in a minute: number words in order, and a fixed grammar.

    Args:
        num_train: training documents.
        num_val: validation documents.
        **kwargs: see `LMDataModule`.
    """

    NOUNS = ["cat", "dog", "bird", "fox", "owl", "frog", "bee", "cow"]
    VERBS = ["sees", "likes", "follows", "hears", "finds", "helps"]
    PLACES = ["in the garden", "by the river", "on the hill", "under the tree", "at the farm"]
    NUMBERS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]

    def __init__(self, num_train: int = 2000, num_val: int = 200, **kwargs):
        super().__init__(**kwargs)
        self.sizes = {"train": num_train, "val": num_val, "test": num_val}

    def document(self, rng: random.Random) -> str:
        """One synthetic document: a few sentences and a count."""
        sentences = []
        for _ in range(rng.randint(2, 4)):
            subject, target = rng.sample(self.NOUNS, 2)
            sentences.append(f"the {subject} {rng.choice(self.VERBS)} the {target} {rng.choice(self.PLACES)}.")
        start = rng.randint(0, 5)
        sentences.append("count: " + " ".join(self.NUMBERS[start:start + rng.randint(3, 5)]) + ".")
        return " ".join(sentences)

    def load(self, split):
        rng = random.Random(f"{self.seed}-{split}")
        documents = [encode_text(self.tokenizer, self.document(rng)) for _ in range(self.sizes[split])]
        return pack(documents, self.max_length)
