"""The CoPE task DataModules: seeded, named validation sets, JSONL round trip, settings checked, the CLI end to end."""

from __future__ import annotations

import pytest
from litforge.datamodules.cope_data import CountingDataModule, FlipFlopDataModule, SelectiveCopyDataModule

from litforge.cli import run_lightning
from litforge.data import read_jsonl
from litforge.errors import ConfigError


def test_datamodules_are_seeded_and_name_their_sets(tmp_path):
    flip = FlipFlopDataModule(num_train=20, num_val=5)
    assert flip.examples("val").keys() == {"in_dist", "ood_sparse", "ood_dense"}
    assert flip.examples("train") == FlipFlopDataModule(num_train=20, num_val=5).examples("train")
    assert flip.examples("val") != flip.examples("test")
    copy = SelectiveCopyDataModule(num_train=10, num_val=5)
    assert {len(e["prompt"]) for e in copy.examples("val")["ood_sparse"]} == {65}
    paths = CountingDataModule(num_vars=3, num_train=10, num_val=4).write_jsonl(tmp_path)
    rows = read_jsonl(tmp_path / "val_in_dist.jsonl")
    assert len(paths) == 3 and len(rows) == 4 and set(rows[0]) == {"prompt", "response"}


def test_too_long_examples_are_refused():
    with pytest.raises(ValueError, match="max_length"):
        CountingDataModule(max_statements=100, min_statements=100, max_length=64, num_train=2).load("train")


@pytest.mark.slow
def test_cli_fits_and_logs_errors_per_set(tmp_path):
    run_lightning(["fit", "--config", "configs/cope/flipflop.yaml", "--trainer.max_steps=4",
                   "--trainer.val_check_interval=4", f"--trainer.default_root_dir={tmp_path}",
                   f"--trainer.logger.init_args.save_dir={tmp_path}",
                   f"--trainer.callbacks.init_args.dirpath={tmp_path}",
                   "--trainer.enable_progress_bar=false", "--data.init_args.num_train=40",
                   "--data.init_args.num_val=8", "--model.init_args.backbone.init_args.hidden_size=32"])
    header = next((tmp_path / "csv").rglob("metrics.csv")).read_text().splitlines()[0]
    for name in ("in_dist", "ood_sparse", "ood_dense"):
        assert f"val_{name}/error" in header
    assert (tmp_path / "last.ckpt").is_file()


BAD_SETTINGS = [
    (CountingDataModule, {"num_vars": 9}, "num_vars"),
    (CountingDataModule, {"min_statements": 10, "max_statements": 5}, "max_statements"),
    (FlipFlopDataModule, {"length": 1}, "length"),
    (FlipFlopDataModule, {"p_ignore_sparse": 1.2}, "p_ignore_sparse"),
    (SelectiveCopyDataModule, {"num_tokens": 0}, "num_tokens"),
    (SelectiveCopyDataModule, {"num_tokens": 20, "length_dense": 16}, "length_dense"),
    (CountingDataModule, {"max_length": 8}, "max_length"),
]


@pytest.mark.parametrize("cls, kwargs, field", BAD_SETTINGS, ids=[f"{c.__name__}-{f}" for c, _, f in BAD_SETTINGS])
def test_bad_settings_are_config_errors_naming_the_field(cls, kwargs, field):
    with pytest.raises(ConfigError, match=f"^{field}: ") as caught:
        cls(**kwargs).setup("fit")  # some settings only show when the task is generated, still before training
    assert caught.value.field == field
