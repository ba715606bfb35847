"""System 2 program inputs from a JSONL file, served as lists of dicts to `System2Inference` (validate/predict).

One object a line: `{"question": str, "context": str (optional), "label": str (optional)}`, or for pairwise judging
`{"question": str, "response_a": str, "response_b": str, "label": "A" | "B" (optional)}`. Every line is checked when
the data is set up, before any generation; a bad line is a DataError naming file, line and field.
"""

from __future__ import annotations

from typing import Any

from litforge.datamodules.base import LMDataModule

from litforge.data import Record, read_jsonl


def as_list(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The collate function of program inputs: a batch is the list of its input dicts, untouched."""
    return list(items)


def program_input(record: Record) -> dict[str, Any]:
    """One checked program input of a JSONL record; `line` is its line number in the file."""
    item: dict[str, Any] = {"question": record.get_text("question"), "line": record.line}
    context = record.get_text("context", required=False, allow_empty=True)
    if context:
        item["context"] = context
    pair = [record.get_text(name, required=False, allow_empty=True) for name in ("response_a", "response_b")]
    if (pair[0] is None) != (pair[1] is None):
        raise record.error("response_b" if pair[1] is None else "response_a", "missing: a pair needs both responses")
    if pair[0] is not None:
        item["response_a"], item["response_b"] = pair
    label = record.get_typed("label", (str, int, float), required=False)
    if label is not None:
        label = str(label).strip()
        if not label:
            raise record.error("label", "is empty (leave the field out for an unlabelled input)")
        if "response_a" in item and label not in ("A", "B"):
            raise record.error("label", f"a pair's label must be \"A\" or \"B\", got {label!r}")
        item["label"] = label
    return item


class System2InputsDataModule(LMDataModule):
    """Serves a JSONL file of program inputs for `validate` (as "val") and `predict`/`test` (as "test").

    Args:
        path: the JSONL file of inputs.
        batch_size: inputs per step; the program batches each generation step over them (and their samples).
        **kwargs: see `LMDataModule` (tokenizer: the model's local tokenizer directory).
    """

    def __init__(self, path: str, batch_size: int = 64, **kwargs):
        super().__init__(batch_size=batch_size, **kwargs)
        self.path = path
        self.collate = as_list

    def load(self, split: str) -> list[dict[str, Any]] | None:
        if split == "train":
            return None  # inference only: `fit` is refused by LMDataModule.setup ("no training samples")
        return [program_input(record) for record in read_jsonl(self.path)]
