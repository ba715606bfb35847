"""Plain-text pretraining data: `{"text"}` rows (JSONL or `datasets`), and seeded synthetic text for the quick start."""

from __future__ import annotations

import random
import warnings

from litforge.data import DataError, Record, check_length, encode_text, pack
from litforge.datamodules.base import FromSource, LMDataModule


class TextDataModule(FromSource, LMDataModule):
    """Pretraining on rows `{"text": "..."}`, packed into full blocks (or one document per sample).

    Args:
        pack: concatenate documents (bos ... eos) and cut into `max_length` blocks; no padding is wasted.
            Without packing each document is one sample and a document longer than `max_length` is an error.
            A `datasets` source packs within each map batch of 1000 documents (`litforge.sources`, departure 2).
        truncate: without packing, cut over-long documents to `max_length` (with a warning) instead of failing.
        **kwargs: see `FromSource` (train_path, val_path, test_path, splits, columns, streaming, ...) and
            `LMDataModule`.
    """

    def __init__(self, pack: bool = True, truncate: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.pack = pack
        self.truncate = truncate

    def load(self, split):
        rows = self.source.read(split)
        if rows is None:
            return None
        if isinstance(rows, list):
            samples = self.encode_batch(rows)
        else:
            samples = self.source.tokenize(split, rows, self.encode_batch, ["input_ids", "labels", "cut"],
                                           self.encoding(pack=self.pack, truncate=self.truncate))
            if self.source.streaming:
                return samples.remove_columns("cut")
        if self.pack and not len(samples):
            message = f"the whole file holds fewer than max_length={self.max_length} tokens"
            raise rows[0].error(None, message) if isinstance(rows, list) else DataError(
                self.paths[split], None, None, message, split=self.source.split_names[split])
        cut = sum(sample["cut"] for sample in samples) if isinstance(samples, list) else sum(samples["cut"])
        if cut:
            warnings.warn(f"{self.paths[split]}: {cut} documents cut to max_length={self.max_length}")
        if isinstance(samples, list):
            return [{key: sample[key] for key in ("input_ids", "labels")} for sample in samples]
        return samples.remove_columns("cut")

    def encode_batch(self, records: list[Record]) -> list[dict]:
        """Documents of rows, packed into blocks or checked against `max_length` one by one (each marked `cut`)."""
        documents = [encode_text(self.tokenizer, record.get_text("text")) for record in records]
        if self.pack:
            return [block | {"cut": False} for block in pack(documents, self.max_length)]
        samples = [check_length({"input_ids": ids, "labels": list(ids)}, self.max_length, self.truncate, record, "text")
                   for ids, record in zip(documents, records)]
        return [sample | {"cut": len(ids) > self.max_length}
                for ids, sample in zip(documents, samples) if sample is not None]


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
