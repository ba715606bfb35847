"""A reward model as judge: a Hugging Face sequence-classification checkpoint scores prompt + response."""

from __future__ import annotations

from pathlib import Path

import torch
from litforge.plugins.judges.base import Judge
from transformers import AutoModelForSequenceClassification

from litforge.errors import CheckpointError, require
from litforge.tokenizer import load_tokenizer


class RewardModelJudge(Judge):
    """The reward is the checkpoint's logit `label` on the text `template.format(prompt=..., response=...)`.

    Loaded from a local directory written by `save_pretrained` (nothing is downloaded); its own tokenizer is used
    when the directory has one, else litforge's byte-level tokenizer.

    Args:
        path: directory with config.json and the weights of an `AutoModelForSequenceClassification` model.
        label: which output logit is the reward (0 for a one-logit reward model).
        template: how prompt and response are joined into the scored text.
        batch_size: texts per forward pass.
        max_length: texts are cut to this many tokens (from the left, so the response end is kept).
        trust_remote_code: run code shipped with the checkpoint (off unless asked).
    """

    def __init__(self, path: str, label: int = 0, template: str = "{prompt}\n{response}", batch_size: int = 32,
                 max_length: int = 512, trust_remote_code: bool = False):
        require(label >= 0, "label", f"must be >= 0, got {label}")
        require(batch_size >= 1, "batch_size", f"must be >= 1, got {batch_size}")
        require(max_length >= 1, "max_length", f"must be >= 1, got {max_length}")
        directory = Path(path)
        if not (directory / "config.json").is_file():
            raise CheckpointError(directory, "has no config.json; RewardModelJudge needs a save_pretrained directory")
        self.model = AutoModelForSequenceClassification.from_pretrained(
            directory, local_files_only=True, trust_remote_code=trust_remote_code).eval()
        require(label < self.model.config.num_labels, "label",
                f"must be below the model's {self.model.config.num_labels} outputs, got {label}")
        has_tokenizer = any((directory / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json"))
        self.tokenizer = load_tokenizer(directory if has_tokenizer else None, trust_remote_code)
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.label, self.template = label, template
        self.batch_size, self.max_length = batch_size, max_length

    @torch.no_grad()
    def score(self, prompts, responses, references=None):
        texts = [self.template.format(prompt=p, response=r) for p, r in zip(prompts, responses)]
        device = next(self.model.parameters()).device
        scores: list[float | None] = []
        for start in range(0, len(texts), self.batch_size):
            rows = [self.tokenizer(text, add_special_tokens=True)["input_ids"][-self.max_length:]
                    for text in texts[start:start + self.batch_size]]
            width = max(len(row) for row in rows)
            pad = self.tokenizer.pad_token_id
            # right padding: sequence-classification heads read the last non-pad token
            ids = torch.tensor([row + [pad] * (width - len(row)) for row in rows], device=device)
            mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in rows], device=device)
            logits = self.model(input_ids=ids, attention_mask=mask).logits  # (batch, num_labels)
            scores.extend(logits[:, self.label].float().tolist())
        return scores
