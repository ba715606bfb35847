"""Self-rewarding's pieces: the judge-agreement metric, the configs' judge template matching the seed's EFT format,
and the seed's early stop at a validation exact-match rate (its solving-only validation split).

The true grade and the seed datamodule are tested in tests/datamodules/test_arithmetic.py and
test_arithmetic_data.py."""

from __future__ import annotations

import math

import pytest
import yaml
from litforge.cli import run_lightning
from litforge.datamodules import SelfRewardSeedDataModule
from litforge.datamodules.arithmetic import GRADE_TEMPLATE, grade_reply
from litforge.errors import ConfigError
from litforge.lightning_modules.iterative_preference import agreement, judge_agreement
from litforge.plugins.judges.base import Judge

from helpers import REPO, write_yaml


def test_agreement_on_fixed_scores():
    stats = agreement([5.0, 2.6667, 0.4, None, 4.0], [5, 3, 1, 2, 4])
    assert stats["judge_agreement"] == 3 / 5  # 5, round(2.67) = 3 and 4 agree; 0.4 -> 0 misses; no verdict misses
    assert stats["judge_mae"] == pytest.approx((0 + 0.3333 + 0.6 + 0) / 4, abs=1e-4)
    assert stats["judge_heldout_mean"] == pytest.approx((5 + 2.6667 + 0.4 + 4) / 4)
    assert stats["judge_heldout_failures"] == 1
    assert stats["judge_histogram"] == {"0": 1, "3": 1, "4": 1, "5": 1}
    assert stats["judge_mean_by_grade"]["1"] == 0.4 and math.isnan(stats["judge_mean_by_grade"]["2"])
    saturated = agreement([5.0] * 6, list(range(6)))
    assert saturated["judge_agreement"] == pytest.approx(1 / 6) and saturated["judge_histogram"] == {"5": 6}
    assert math.isnan(agreement([None], [3])["judge_mae"])


def test_judge_agreement_reads_the_judge_and_counts_its_failures():
    class Constant(Judge):
        def score(self, prompts, responses, references=None):
            self.failures += 1
            return [3.0 if r else None for r in responses]

    stats = judge_agreement(None, None, Constant(), ["q"] * 3, ["a", "", "b"], [3, 0, 5], [None] * 3)
    assert stats["judge_agreement"] == 1 / 3 and stats["judge_heldout_reply_failures"] == 1


def test_the_configs_judge_with_the_seed_s_eft_template():
    seed = yaml.safe_load((REPO / "configs/self_reward/seed.yaml").read_text())
    run = yaml.safe_load((REPO / "configs/self_reward/self_reward.yaml").read_text())
    judge = run["model"]["init_args"]["judge"]["init_args"]
    assert seed["data"]["init_args"]["template"] == judge["template"] == GRADE_TEMPLATE
    first_line = (REPO / "configs/self_reward/seed.yaml").read_text().splitlines()[0]
    assert first_line.split()[-1] == run["model"]["init_args"]["backbone"]["init_args"]["path"]  # exported there
    assert len(grade_reply([99, 99, 99], "198+99=297")) <= judge["max_new_tokens"]  # a whole reply fits
    assert seed["data"]["init_args"]["max_operand"] == run["data"]["init_args"]["max_operand"]  # the same task


@pytest.mark.parametrize("num_val_eft, grading", [(None, 5), (0, 0), (2, 2)])
def test_the_seed_validates_on_solving_and_num_val_eft_grading_examples(num_val_eft, grading):
    data = SelfRewardSeedDataModule(num_train=20, num_eft=10, num_val=5, num_val_eft=num_val_eft, num_test=0,
                                    max_operand=34)
    data.setup("fit")
    texts = [data.tokenizer.decode(s["input_ids"], skip_special_tokens=True) for s in data.splits["val"]]
    assert len(texts) == 5 + grading and sum(t.startswith("Grade 0-5: ") for t in texts) == grading
    assert len(data.splits["train"]) == 30


def test_a_negative_num_val_eft_is_a_config_error():
    with pytest.raises(ConfigError, match="^num_val_eft: "):
        SelfRewardSeedDataModule(num_val_eft=-1)


@pytest.mark.slow
def test_the_seed_config_stops_when_validation_exact_match_reaches_its_threshold(tmp_path):
    shipped = yaml.safe_load((REPO / "configs/self_reward/seed.yaml").read_text())["trainer"]["callbacks"]
    callbacks = [dict(c, init_args=dict(c["init_args"])) for c in shipped]
    callbacks[0]["init_args"]["dirpath"] = str(tmp_path / "checkpoints")
    assert callbacks[1]["init_args"]["monitor"] == "val/exact_match"
    callbacks[1]["init_args"]["stopping_threshold"] = -1.0  # every rate is above it: stop at the first check
    override = write_yaml(tmp_path / "override.yaml", {"trainer": {"callbacks": callbacks}})
    cli = run_lightning([
        "fit", "--config", str(REPO / "configs/self_reward/seed.yaml"), "--config", str(override),
        "--model.init_args.backbone.init_args.hidden_size=32", "--model.init_args.backbone.init_args.num_hidden_layers=1",
        "--data.init_args.num_train=16", "--data.init_args.num_eft=16", "--data.init_args.num_val=8",
        "--data.init_args.batch_size=8", "--trainer.val_check_interval=2", "--trainer.max_steps=8",
        f"--trainer.default_root_dir={tmp_path}", f"--trainer.logger.init_args.save_dir={tmp_path}",
        "--trainer.enable_progress_bar=false"])
    assert cli.trainer.global_step == 2 and cli.trainer.should_stop
    assert 0.0 <= float(cli.trainer.callback_metrics["val/exact_match"]) <= 1.0
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()  # what README's export reads
