"""Shared fixtures: tiny models and tokenizers, offline environment, seeded everything."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Under pytest-xdist (README's `-n auto`) each worker gets its share of the cores, and so do the processes it starts
# (CLI runs, DDP ranks): tests running side by side then never oversubscribe the machine.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    _share = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(_share)

import pytest
import torch

from litforge.backbones import TinyModel
from litforge.tokenizer import byte_level_tokenizer


if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def tokenizer():
    """The byte-level tokenizer (vocab 259)."""
    return byte_level_tokenizer()


@pytest.fixture
def tiny_backbone():
    """A 2-layer, 32-wide Llama spec: builds in milliseconds."""
    return TinyModel(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                     max_position_embeddings=128)


@pytest.fixture
def tiny_model(tiny_backbone, tokenizer):
    """A built tiny Llama with the byte-level vocabulary."""
    return tiny_backbone.build(len(tokenizer), tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id)


TINY_MODEL_ARGS = [
    "--model.init_args.backbone.class_path=litforge.backbones.TinyModel",
    "--model.init_args.backbone.init_args.hidden_size=32",
    "--model.init_args.backbone.init_args.num_hidden_layers=2",
    "--model.init_args.backbone.init_args.num_attention_heads=2",
    "--model.init_args.backbone.init_args.intermediate_size=64",
]


LONGEST_FIRST = ("test_pipeline_runs_as_written", "test_equivalence")


def pytest_collection_modifyitems(items):
    """Longest tests first (README pipelines, the strategy equivalence run, then the other slow ones). With README's
    `--dist worksteal` an idle worker takes queued tests from a busy one, so what is left at the end is short; under
    the default `load` schedule one worker kept most pipelines in its queue and finished them alone."""
    def rank(item) -> int:
        if any(name in item.nodeid for name in LONGEST_FIRST):
            return 0
        return 1 if item.get_closest_marker("slow") else 2
    items.sort(key=rank)
