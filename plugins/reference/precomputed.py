"""Reference log-probs computed once per dataset and anchor, cached in memory and on disk: no second model."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from lightning import LightningModule
from litforge.plugins.reference.base import ReferenceSource, reference_mode
from torch.utils.data import DataLoader

from litforge.data import atomic_path
from litforge.errors import ConfigError


class PrecomputedReference(ReferenceSource):
    """Reference log-probs computed once per dataset and reference (= the policy at that moment), then reused.

    The first lookup computes every split the trainer's datamodule has (train and each validation set, all of its
    samples in dataset order, whatever the training order and the rank) with the current policy, in eval mode,
    without gradients, and writes them to `<cache_dir>/<key>-anchor<n>-<data hash>.pt` (cache_dir defaults to
    `<run dir>/reference_logprobs`). A later lookup, a later epoch or a resumed run with the same data and anchor
    reads them back. `reanchor` clears the cache and moves to the next anchor number.

    Several ranks: every rank holds the whole table (all samples in dataset order, so any shard can look up any
    pair), computed by all ranks together in step or read by all of them: a file is read only when every rank finds
    it, else every rank computes (a sharded forward needs them all) and rank 0 writes it. The table does not depend on
    the number of ranks, so a checkpoint's table serves a resumed run on any number of ranks.

    Args:
        cache_dir: where the .pt files go (None: under the trainer's log directory).
    """

    def __init__(self, cache_dir: str | None = None):
        self.cache_dir = cache_dir
        self.anchor = 0
        self.table: dict[str, torch.Tensor] | None = None  # key -> (N, 2) chosen/rejected log-probs

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
        for key, loader in loaders.items():
            if not hasattr(loader.dataset, "__len__"):
                raise ConfigError("reference", f"PrecomputedReference needs a {key} split with a length, and a "
                                               "streamed split has none: use FrozenCopy with streaming: true")
        folder = Path(self.cache_dir or Path(module.trainer.log_dir or module.trainer.default_root_dir)
                      / "reference_logprobs")
        table = {}
        for key, loader in loaders.items():
            path = folder / f"{key}-anchor{self.anchor}-{data_hash(loader.dataset)}.pt"
            if module.trainer.strategy.reduce_boolean_decision(path.is_file(), all=True):  # every rank reads it
                table[key] = torch.load(path, weights_only=True)
                continue
            table[key] = self.compute(module, in_order(loader))
            if module.trainer.is_global_zero:
                with atomic_path(path) as tmp:
                    torch.save(table[key], tmp)
        module.trainer.strategy.barrier("reference-logprobs")
        return table

    def compute(self, module: LightningModule, loader) -> torch.Tensor:
        """One no-grad pass of the policy over a loader: (N, 2) log-probs in dataset order."""
        values = torch.zeros(len(loader.dataset), 2)
        training = module.model.training
        module.model.eval()
        with reference_mode(module.model):
            for batch in loader:
                batch = {k: v.to(module.device) if torch.is_tensor(v) else v for k, v in batch.items()}
                out = module.pair_logprobs(module.model, batch)
                values[batch["index"].cpu()] = torch.stack([out.chosen, out.rejected], -1).float().cpu()
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


def in_order(loader: DataLoader) -> DataLoader:
    """A loader's samples in dataset order, neither shuffled nor sharded (a later lookup may ask for any of them)."""
    size = loader.batch_size or getattr(loader.sampler, "batch_size", None) or 1  # a grouped loader batches by sampler
    return DataLoader(loader.dataset, batch_size=size, collate_fn=loader.collate_fn)


def data_hash(samples) -> str:
    """A short hash of a split's token ids, so a cache file is only reused for the same data."""
    digest = hashlib.sha1()
    for sample in samples:
        digest.update(json.dumps([sample.get("chosen_input_ids"), sample.get("rejected_input_ids"),
                                  sample.get("chosen_labels"), sample.get("rejected_labels")]).encode())
    return digest.hexdigest()[:12]
