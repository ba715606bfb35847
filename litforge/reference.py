"""Where a preference objective's reference log-probs come from; YAML picks one by class_path.

- `FrozenCopy`: a frozen deep copy of the policy, run beside it every step (saved in the checkpoint).
- `PrecomputedReference`: one no-grad pass over every split before the first step, cached in memory and on disk
  under the run directory; later epochs (and a resumed run) reuse it. No second model in memory.
- `AdaptersDisabled`: with a LoRA policy, the reference is the base model with the adapters switched off.

Reference forwards run under `torch.inference_mode` (no autograd bookkeeping at all) over the same shared-prompt
rows as the policy (`PreferenceModule.pair_logprobs`).

Each supports `reanchor(module)`: make the reference equal the current policy (iterative methods call it at every
iteration boundary) and forget any cached log-probs.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from lightning import LightningModule
from torch.utils.data import DataLoader

from litforge.data import atomic_path


class ReferenceSource:
    """Supplies reference log-probs (log pi_ref(chosen|x), log pi_ref(rejected|x)) for a batch of pairs.

    `module` is the preference objective (lightning_modules/preference.py): its `model` and `pair_logprobs` are used.
    """

    def attach(self, module: LightningModule) -> None:
        """Called once the policy is built (in `configure_model`)."""

    def logprobs(self, module: LightningModule, batch: dict[str, Any], key: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Reference (chosen, rejected) sequence log-probs, each (B,); `key` names the split ("train", "val0")."""
        raise NotImplementedError

    def reanchor(self, module: LightningModule) -> None:
        """Make the reference equal to the current policy and invalidate cached log-probs."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must remember about the source (beyond module weights)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict()` output."""


class FrozenCopy(ReferenceSource):
    """A frozen deep copy of the policy, registered as `module.reference_model` (so it moves and is checkpointed)."""

    def attach(self, module):
        if getattr(module, "reference_model", None) is None:
            module.reference_model = freeze(copy.deepcopy(module.model))

    def logprobs(self, module, batch, key):
        module.reference_model.eval()  # Lightning puts every submodule in train mode at the start of fit
        with torch.inference_mode():
            out = module.pair_logprobs(module.reference_model, batch)
        return out.chosen.clone(), out.rejected.clone()  # clones are ordinary tensors, usable next to the policy's

    def reanchor(self, module):
        module.reference_model.load_state_dict(module.model.state_dict())
        freeze(module.reference_model)


class PrecomputedReference(ReferenceSource):
    """Reference log-probs computed once per dataset and reference (= the policy at that moment), then reused.

    The first lookup computes every split the trainer's datamodule has (train and each validation set, all of its
    samples in dataset order, whatever the training order and the rank) with the current policy, in eval mode,
    without gradients, and writes them to `<cache_dir>/<key>-anchor<n>-<data hash>.pt` (cache_dir defaults to
    `<run dir>/reference_logprobs`). A later lookup, a later epoch or a resumed run with the same data and anchor
    reads them back. `reanchor` clears the cache and moves to the next anchor number.

    Args:
        cache_dir: where the .pt files go (None: under the trainer's log directory).
    """

    def __init__(self, cache_dir: str | None = None):
        self.cache_dir = cache_dir
        self.anchor = 0
        self.table: dict[str, torch.Tensor] | None = None  # key -> (N, 2) chosen/rejected log-probs
        self.computed_pairs = 0  # pairs run through the model so far (tests check reuse with it)

    def logprobs(self, module, batch, key):
        if self.table is None or key not in self.table:
            self.table = self.precompute(module)
        values = self.table[key][batch["index"].cpu()].to(module.device)
        return values[:, 0], values[:, 1]

    def precompute(self, module: LightningModule) -> dict[str, torch.Tensor]:
        """Compute (or read from disk) the reference log-probs of every split, keyed like `logprobs`' `key`."""
        datamodule = module.trainer.datamodule
        loaders = {"train": datamodule.train_dataloader()}
        val = datamodule.val_dataloader()
        for index, loader in enumerate(val if isinstance(val, list) else [val]):
            loaders[f"val{index}"] = loader
        folder = Path(self.cache_dir or Path(module.trainer.log_dir or module.trainer.default_root_dir)
                      / "reference_logprobs")
        table = {}
        for key, loader in loaders.items():
            path = folder / f"{key}-anchor{self.anchor}-{data_hash(loader.dataset)}.pt"
            if path.is_file():
                table[key] = torch.load(path, weights_only=True)
                continue
            table[key] = self.compute(module, in_order(loader))
            with atomic_path(path) as tmp:
                torch.save(table[key], tmp)
        return table

    def compute(self, module: LightningModule, loader) -> torch.Tensor:
        """One no-grad pass of the policy over a loader: (N, 2) log-probs in dataset order."""
        values = torch.zeros(len(loader.dataset), 2)
        training = module.model.training
        module.model.eval()
        with torch.inference_mode():
            for batch in loader:
                batch = {k: v.to(module.device) if torch.is_tensor(v) else v for k, v in batch.items()}
                out = module.pair_logprobs(module.model, batch)
                values[batch["index"].cpu()] = torch.stack([out.chosen, out.rejected], -1).float().cpu()
                self.computed_pairs += len(batch["index"])
        module.model.train(training)
        return values

    def reanchor(self, module):
        self.table = None
        self.anchor += 1

    def state_dict(self):
        return {"anchor": self.anchor, "table": self.table}  # a resumed run may log (and cache) in a new version dir

    def load_state_dict(self, state):
        self.anchor = state.get("anchor", 0)
        self.table = state.get("table")


class AdaptersDisabled(ReferenceSource):
    """With a LoRA policy (peft), the reference is the base model: the same forward with adapters switched off.

    `reanchor` merges each adapter's update into its base weight and zeroes the adapter's B matrix, so policy and
    reference both equal the current policy and training continues with fresh (zero) adapters.
    """

    def attach(self, module):
        if not hasattr(module.model, "disable_adapter"):
            raise ValueError("AdaptersDisabled needs a LoRA policy: set `lora:` on the preference module")

    def logprobs(self, module, batch, key):
        with torch.inference_mode(), module.model.disable_adapter():
            out = module.pair_logprobs(module.model, batch)
        return out.chosen.clone(), out.rejected.clone()

    def reanchor(self, module):
        from peft.tuners.lora import LoraLayer

        with torch.no_grad():
            for layer in module.model.modules():
                if isinstance(layer, LoraLayer):
                    for name in layer.active_adapters:
                        if name in layer.lora_B:
                            layer.get_base_layer().weight += layer.get_delta_weight(name)
                            layer.lora_B[name].weight.zero_()


def in_order(loader: DataLoader) -> DataLoader:
    """A loader's samples in dataset order, neither shuffled nor sharded (a later lookup may ask for any of them)."""
    return DataLoader(loader.dataset, batch_size=loader.batch_size or 1, collate_fn=loader.collate_fn)


def freeze(model: torch.nn.Module) -> torch.nn.Module:
    """Eval mode, no gradients."""
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def data_hash(samples) -> str:
    """A short hash of a split's token ids, so a cache file is only reused for the same data."""
    digest = hashlib.sha1()
    for sample in samples:
        digest.update(json.dumps([sample.get("chosen_input_ids"), sample.get("rejected_input_ids"),
                                  sample.get("chosen_labels"), sample.get("rejected_labels")]).encode())
    return digest.hexdigest()[:12]
