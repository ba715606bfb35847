"""Length-instructed DPO (LIFT-DPO; Yuan et al. 2024, "Following Length Constraints in Instructions").

LIFT-DPO is the preference family's DPO trained on length-instructed data: the training pairs come from
`LengthInstructedDataModule` (original pairs plus copies whose prompt states a word limit, relabelled so that the
response within the limit wins). This module adds what the paper measures: on the datamodule's "length" validation
set (prompts with word limits) it generates greedily and logs the violation rate (share of responses over their
limit), mean words per limit and mean words; with a judge it also logs the length-instructed win rate, where a
response over its limit counts as a loss.

Departures from the paper:
    1. Validation decodes greedily (`max_new_tokens` bounds a response); the paper samples from 70B models.
    2. The length-instructed win rate needs a judge: against a prompt's baseline response ("output" field, as
       AlpacaEval-LI has) the verdict is win/tie/loss by the judge's two scores; without a baseline the judge's own
       score (in [0, 1]) is the verdict. The paper uses GPT-4 pairwise judgements against a baseline.
    3. Under DDP each rank generates for its shard of the length set and a distributed sampler's padding repeat is
       left out, so the rates are the whole set's. Under FSDP2 generation would need every rank in step at every
       token, which greedy decoding of different prompts does not keep: validate length sets with DDP.
"""

from __future__ import annotations

from typing import Any

import torch
from litforge.lightning_modules.dpo_nll import DPONLL
from litforge.lightning_modules.set_metrics import PerSetMetrics, kept_rows, select_rows
from litforge.plugins.judges.base import Judge

from litforge.errors import require
from litforge.generation import generate
from litforge.length import count_words, length_instructed_win_rate, violation_rate, words_per_limit


class LiftDPO(PerSetMetrics, DPONLL):
    """DPO (or DPO+NLL) on LIFT pairs; validation generates on length-instructed prompts and reports violations.

    Args:
        max_new_tokens: longest response generated for a length-instructed validation prompt.
        judge: scores responses for the length-instructed win rate (None: no win rate).
        **kwargs: see `DPONLL` (beta, alpha: 0 is plain DPO) and `PreferenceModule`.
    """

    plugin_fields = ("judge",)

    def __init__(self, max_new_tokens: int = 128, judge: Judge | None = None, **kwargs):
        require(max_new_tokens >= 1, "max_new_tokens", f"must be >= 1, got {max_new_tokens}")
        super().__init__(**kwargs)
        self.max_new_tokens = max_new_tokens
        self.judge = judge

    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = 0):
        if "max_len" not in batch:
            return super().validation_step(batch, batch_idx, dataloader_idx)
        rows = len(batch["prompt"])
        keep = kept_rows(self, batch_idx, dataloader_idx, rows)  # a distributed sampler's repeat counts once
        if len(keep) == 0:
            return
        batch = select_rows(batch, keep, rows) if len(keep) < rows else batch
        prompts, limits = batch["prompt"], batch["max_len"].tolist()
        responses = [texts[0] for texts in generate(self.model, self.tokenizer, prompts, temperature=0,
                                                    max_new_tokens=self.max_new_tokens).texts]
        count = len(responses)  # the batch's rates are means: weighted by its size
        self.log_per_set("violation_rate", torch.tensor(violation_rate(responses, limits), device=self.device),
                         dataloader_idx, weight=count, prog_bar=True)
        self.log_per_set("words_per_limit", torch.tensor(words_per_limit(responses, limits), device=self.device),
                         dataloader_idx, weight=count)
        self.log_per_set("words", torch.tensor([count_words(r) for r in responses], dtype=torch.float,
                                               device=self.device), dataloader_idx)
        if self.judge is not None:
            verdicts = self.verdicts(prompts, responses, batch.get("output"))
            scored = [i for i, v in enumerate(verdicts) if v is not None or count_words(responses[i]) > limits[i]]
            if scored:
                rate = length_instructed_win_rate([responses[i] for i in scored], [limits[i] for i in scored],
                                                  [verdicts[i] for i in scored])
                self.log_per_set("li_win_rate", torch.tensor(rate, device=self.device), dataloader_idx,
                                 weight=len(scored))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.judge is not None:  # its counters (LLMJudge seeds each call with them) go on after a resume
            checkpoint["judges"] = {"judge": self.judge.state_dict()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        if self.judge is not None and "judge" in checkpoint.get("judges", {}):
            self.judge.load_state_dict(checkpoint["judges"]["judge"])

    def verdicts(self, prompts: list[str], responses: list[str], baselines: list[str | None] | None
                 ) -> list[float | None]:
        """Judge verdicts in [0, 1] per response: win/tie/loss against its baseline where there is one, else the
        judge's own score (clipped to [0, 1]); None where the judge gave no verdict."""
        self.judge.use_policy(self.model, self.tokenizer)
        scores = self.judge.score(prompts, responses)
        baselines = baselines or [None] * len(prompts)
        against = [i for i, baseline in enumerate(baselines) if isinstance(baseline, str)]
        baseline_scores = dict(zip(against, self.judge.score([prompts[i] for i in against],
                                                             [baselines[i] for i in against]))) if against else {}
        verdicts = []
        for i, score in enumerate(scores):
            if score is None or i in baseline_scores and baseline_scores[i] is None:
                verdicts.append(None)
            elif i in baseline_scores:
                verdicts.append(1.0 if score > baseline_scores[i] else 0.5 if score == baseline_scores[i] else 0.0)
            else:
                verdicts.append(min(1.0, max(0.0, float(score))))
        return verdicts
