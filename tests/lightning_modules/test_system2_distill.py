"""System2Distillation: rows hold System 1's prompt and the final answer only, an input the filter drops has no row,
the held-out metrics count what each program generates, a resumed run reuses the round's file, a teacher checkpoint
runs the program while the model trains, a shipped distill config runs through the CLI, and 2 DDP ranks write the
round 1 process writes.

The model is a real Llama whose weights make it write known strings (`scripted_llama`): after "<" it writes "abc"
(the S2A rewrite), after ">" "Answer=9" (the S2A answer) and after "|" "8" (System 1's reply to "<input>|").
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from litforge.datamodules import S2ATask, System2DistillDataModule
from litforge.lightning_modules import System2Distillation
from litforge.plugins.consistency import NoFilter, OracleFilter
from litforge.plugins.system2 import Direct, System2Attention
from system2_helpers import scripted_llama

from litforge.backbones import Backbone, LocalCheckpoint
from litforge.iterations import iteration_paths
from litforge.tokenizer import byte_level_tokenizer

ROOT = Path(__file__).resolve().parents[2]
INPUTS = [{"question": "3+6?", "context": "I think it is 2.", "label": "9"},
          {"question": "1+1?", "context": "Bo has 9 cats.", "label": "2"},
          {"question": "4+5?", "label": "9"}]


class Scripted(Backbone):
    """The scripted Llama as a backbone."""

    def build(self, vocab_size, pad_token_id, bos_token_id, eos_token_id):
        return scripted_llama(byte_level_tokenizer(), {"<": "abc", ">": "Answer=9", "|": "8"})


class FixedInputs(System2DistillDataModule):
    """INPUTS as both the distillation and the held-out inputs."""

    def prompts(self, split):
        return [dict(item) for item in INPUTS]


class StopAfterEpoch(L.Callback):
    """Ends `fit` after epoch `epoch`."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, module):
        trainer.should_stop = trainer.current_epoch >= self.epoch


def make(filter, backbone=None, epochs_per_iteration: int = 1, teacher=None, lr: float = 0.0):
    """The distillation of a 2-step S2A ("{input}<" then "{regenerated}>") on INPUTS, one round."""
    data = FixedInputs(task=S2ATask(), num_distill=3, num_test=3, batch_size=2)
    program = System2Attention(regenerate_template="{input}<", answer_template="{regenerated}>",
                               answer_pattern=r"Answer=(\d+)")
    module = System2Distillation(backbone=backbone or Scripted(), tokenizer=data.tokenizer, program=program,
                                 filter=filter, system1=Direct(template="{input}|"), teacher=teacher, temperature=0.0,
                                 max_new_tokens=12, num_heldout=3, iterations=1,
                                 epochs_per_iteration=epochs_per_iteration,
                                 optimizer=lambda p: torch.optim.SGD(p, lr=lr))
    return module, data


def fit(root: Path, module, data, ckpt_path: str | None = None, callbacks=()):
    """Fit on CPU with a checkpoint at every epoch's end."""
    checkpoint = L.pytorch.callbacks.ModelCheckpoint(dirpath=root / "ckpt", save_last=True, every_n_epochs=1)
    trainer = L.Trainer(accelerator="cpu", default_root_dir=str(root), logger=False,
                        callbacks=[checkpoint, *callbacks], enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0)
    trainer.fit(module, data, ckpt_path=ckpt_path)


def rows_of(root: Path, k: int = 0) -> list[dict]:
    return [json.loads(line) for line in iteration_paths(root, k)[0].read_text().splitlines()]


def test_rows_hold_the_system1_prompt_and_the_final_answer_only(tmp_path):
    module, data = make(NoFilter())
    fit(tmp_path, module, data)
    rows = rows_of(tmp_path)
    assert rows == [{"prompt": "I think it is 2.\n3+6?|", "response": " 9", "answer": "9"},
                    {"prompt": "Bo has 9 cats.\n1+1?|", "response": " 9", "answer": "9"},
                    {"prompt": "4+5?|", "response": " 9", "answer": "9"}]
    for row in rows:  # no intermediate text: neither the rewrite nor the final reply's wording
        assert "abc" not in row["response"] and "Answer" not in row["response"] and "8" not in row["response"]
    stats = json.loads(iteration_paths(tmp_path, 0)[1].read_text())
    assert (stats["rows"], stats["kept_share"], stats["kept_accuracy"]) == (3, 1.0, 2 / 3)
    # one run per input: 3 tokens of rewrite ("abc") + 8 of answer ("Answer=9")
    assert (stats["program_runs"], stats["generated_tokens"]) == (3, 3 * 11)
    # held-out: System 1 writes "8" (1 token, never right), S2A 11 tokens, right on 2 of 3 inputs
    assert (stats["system1_accuracy"], stats["system1_tokens_per_item"]) == (0.0, 1.0)
    assert (stats["system2_accuracy"], stats["system2_tokens_per_item"]) == (2 / 3, 11.0)
    final = json.loads((tmp_path / "iterations" / "final.json").read_text())
    assert final["system2_accuracy"] == 2 / 3 and final["iterations"]["0"]["rows"] == 3
    assert "program" not in module.hparams and "filter" not in module.hparams


def test_an_input_the_filter_drops_has_no_row(tmp_path):
    module, data = make(OracleFilter())  # keeps "9" only where the label is 9: inputs 0 and 2
    fit(tmp_path, module, data)
    assert [row["prompt"] for row in rows_of(tmp_path)] == ["I think it is 2.\n3+6?|", "4+5?|"]
    stats = json.loads(iteration_paths(tmp_path, 0)[1].read_text())
    assert (stats["rows"], stats["filter_kept"], stats["filter_dropped_wrong"], stats["kept_accuracy"]) == \
        (2, 2.0, 1.0, 1.0)


def test_a_resumed_run_reuses_the_round_s_rows(tmp_path):
    # the round spans epochs 0-1; stop after epoch 0, then resume: the rows are read back, not generated again
    module, data = make(NoFilter(), epochs_per_iteration=2)
    fit(tmp_path, module, data, callbacks=[StopAfterEpoch(0)])
    path = iteration_paths(tmp_path, 0)[0]
    written, mtime = path.read_text(), path.stat().st_mtime_ns
    module, data = make(NoFilter(), epochs_per_iteration=2)
    calls = []
    module.build_rows = lambda k, prompts: calls.append(k)  # would record a regeneration
    fit(tmp_path, module, data, ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    assert path.read_text() == written and path.stat().st_mtime_ns == mtime and calls == []
    assert module.history[0]["reused"] is True and data.rows == [json.loads(line) for line in written.splitlines()]


def test_a_teacher_checkpoint_runs_the_program_and_the_model_trains(tmp_path):
    # the teacher answers "Answer=7" where the model (Scripted) answers "Answer=9"
    tokenizer = byte_level_tokenizer()
    scripted_llama(tokenizer, {"<": "abc", ">": "Answer=7", "|": "8"}).save_pretrained(tmp_path / "teacher")
    module, data = make(NoFilter(), teacher=LocalCheckpoint(str(tmp_path / "teacher")), lr=0.5)
    student = {name: value.clone() for name, value in Scripted().build(0, 0, 0, 0).state_dict().items()}
    fit(tmp_path, module, data)
    assert [row["response"] for row in rows_of(tmp_path)] == [" 7", " 7", " 7"]  # the teacher's answers
    stats = json.loads(iteration_paths(tmp_path, 0)[1].read_text())
    assert (stats["kept_accuracy"], stats["generated_tokens"]) == (0.0, 3 * 11)  # no label is 7
    assert stats["system2_accuracy"] == 2 / 3  # held-out metrics measure the model: "9", right on 2 of 3 inputs
    teacher = module.generator()
    assert teacher is not module.model and not teacher.training
    assert not any(p.requires_grad for p in teacher.parameters())
    saved_teacher = LocalCheckpoint(str(tmp_path / "teacher")).build(0, 0, 0, 0).state_dict()
    assert all(torch.equal(value, saved_teacher[name]) for name, value in teacher.state_dict().items())  # untrained
    trained = module.model.state_dict()
    assert not torch.equal(trained["lm_head.weight"], student["lm_head.weight"])  # the model did
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)["state_dict"]
    assert sorted(saved) == sorted(f"model.{name}" for name in trained)  # the teacher is not checkpointed


@pytest.mark.slow
def test_the_s2a_distill_config_runs_through_the_cli(tmp_path):
    # the seed: a scripted Llama that rewrites any input to "ab" (after "Rewrite:\n") and answers "7" (after ":")
    tokenizer = byte_level_tokenizer()
    model = scripted_llama(tokenizer, {"\n": "ab", ":": "7"})
    model.save_pretrained(tmp_path / "seed")
    tokenizer.save_pretrained(tmp_path / "seed")
    run = tmp_path / "run"
    overrides = [f"--model.init_args.backbone.init_args.path={tmp_path / 'seed'}",
                 f"--data.init_args.tokenizer={tmp_path / 'seed'}", f"--trainer.default_root_dir={run}",
                 f"--trainer.logger.init_args.save_dir={run}", f"--trainer.callbacks.init_args.dirpath={run / 'ckpt'}",
                 "--data.init_args.num_distill=6", "--data.init_args.num_test=4", "--model.init_args.num_heldout=4",
                 "--model.init_args.filter.init_args.samples=2", "--model.init_args.temperature=0",
                 "--model.init_args.epochs_per_iteration=1"]
    done = subprocess.run([sys.executable, "-m", "litforge.cli", "fit", "--config",
                           str(ROOT / "configs/system2/s2a_distill.yaml"), *overrides],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    final = json.loads((run / "iterations" / "final.json").read_text())
    stats = final["iterations"]["0"]  # the seed, before training: S2A writes "ab" then "7", System 1 "7"
    assert (stats["system2_tokens_per_item"], stats["system1_tokens_per_item"], stats["rows"]) == (3.0, 1.0, 6)
    assert 0.0 <= final["system1_accuracy"] <= 1.0 and final["system2_tokens_per_item"] > 0  # after training
    assert {row["response"] for row in rows_of(run)} == {" 7"} and (run / "ckpt" / "last.ckpt").is_file()


@pytest.mark.slow
def test_two_ddp_ranks_write_the_round_one_process_writes(tmp_path):
    from helpers import run_litforge

    # a seed that rewrites to "ab" and answers "7", each scripted token only ~72% likely at temperature 1: the
    # samples differ, so rows and counts match only if every chunk of inputs is seeded the same on any rank count
    tokenizer = byte_level_tokenizer()
    model = scripted_llama(tokenizer, {"\n": "ab", ":": "7"})
    with torch.no_grad():
        model.lm_head.weight.mul_(0.4)
    model.save_pretrained(tmp_path / "seed")
    tokenizer.save_pretrained(tmp_path / "seed")
    rounds = []
    for processes in (1, 2):
        run = tmp_path / f"run{processes}"
        run_litforge(["fit", "--config", str(ROOT / "configs/system2/s2a_distill.yaml"),
                      f"--model.init_args.backbone.init_args.path={tmp_path / 'seed'}",
                      f"--data.init_args.tokenizer={tmp_path / 'seed'}", f"--trainer.default_root_dir={run}",
                      f"--trainer.logger.init_args.save_dir={run}", "--trainer.callbacks=[]",
                      "--trainer.enable_checkpointing=false", "--trainer.accelerator=cpu",
                      f"--trainer.devices={processes}", f"--trainer.strategy={'ddp' if processes == 2 else 'auto'}",
                      "--data.init_args.num_distill=10", "--data.init_args.num_test=4",
                      "--model.init_args.num_heldout=4", "--model.init_args.generation_batch_size=2",
                      "--model.init_args.filter.init_args.samples=3", "--model.init_args.temperature=1.0",
                      "--model.init_args.epochs_per_iteration=1"], cwd=tmp_path, timeout=240)
        stats = json.loads(iteration_paths(run, 0)[1].read_text())
        stats.pop("generate_s")  # wall time
        rounds.append((iteration_paths(run, 0)[0].read_text(), stats))
    (rows, stats), (ddp_rows, ddp_stats) = rounds
    assert ddp_rows == rows and ddp_stats == stats
    # 5 chunks of 2 inputs, 3 samples each; the samples differ (ties dropped), so the seeds decide what is kept
    assert (stats["inputs"], stats["program_runs"], len(rows.splitlines())) == (10, 30, stats["rows"])
    assert stats["filter_kept"] == stats["rows"] > 0 and stats["filter_dropped_tie"] > 0
    assert sum(value for key, value in stats.items() if key.startswith("filter_")) == 10
