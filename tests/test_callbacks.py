"""litforge.callbacks: checkpoint names that mean what they say, progress a log file shows."""

import re

import lightning as L
import torch
from torch.utils.data import DataLoader

from litforge.callbacks import LastAndBestCheckpoint, ProgressLine, StepProgressBar, count_tokens


class Scripted(L.LightningModule):
    """A one-parameter model whose validation score follows a script, so the best step is known in advance."""

    def __init__(self, scores=(0.0,)):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.scores, self.validations = list(scores), 0

    def training_step(self, batch, batch_idx):
        return (self.weight - batch["input_ids"].float().mean()).pow(2).sum()

    def validation_step(self, batch, batch_idx):
        self.log("val/score", self.scores[self.validations])

    def on_validation_epoch_end(self):
        self.validations += not self.trainer.sanity_checking

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def loader(batches=4):
    rows = [{"input_ids": torch.arange(6), "attention_mask": torch.tensor([1, 1, 1, 1, 0, 0])}] * (2 * batches)
    return DataLoader(rows, batch_size=2)


def trainer(max_steps, callbacks, **kwargs):
    return L.Trainer(accelerator="cpu", max_steps=max_steps, callbacks=callbacks, logger=False,
                     enable_model_summary=False, num_sanity_val_steps=0, **{"enable_progress_bar": False, **kwargs})


def step_of(path):
    return torch.load(path, weights_only=False)["global_step"]


def test_last_is_the_final_step_and_best_is_the_monitored_best(tmp_path):
    checkpoint = LastAndBestCheckpoint(str(tmp_path), monitor="val/score", every_n_train_steps=3)
    trainer(9, [checkpoint], val_check_interval=3, check_val_every_n_epoch=None, limit_val_batches=1).fit(
        Scripted(scores=[3.0, 1.0, 2.0]), loader(4), loader(1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.ckpt", "last.ckpt"]  # no staging file left
    assert step_of(tmp_path / "last.ckpt") == 9
    assert step_of(tmp_path / "best.ckpt") == 6  # the second validation scored lowest


class LastSeen(L.Callback):
    """Records, after each step, which step last.ckpt holds (it runs before checkpoint callbacks)."""

    def __init__(self, path):
        self.path, self.seen = path, {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.seen[trainer.global_step] = step_of(self.path) if self.path.exists() else None


def test_last_is_written_every_n_steps_and_at_the_end_without_validation(tmp_path):
    probe = LastSeen(tmp_path / "last.ckpt")
    trainer(5, [probe, LastAndBestCheckpoint(str(tmp_path), every_n_train_steps=2)], limit_val_batches=0).fit(
        Scripted(), loader(4))
    assert probe.seen == {1: None, 2: None, 3: 2, 4: 2, 5: 4}
    assert step_of(tmp_path / "last.ckpt") == 5


def test_progress_line_prints_steps_loss_throughput_eta_and_validation(capsys):
    trainer(6, [ProgressLine(every_n_steps=2)], enable_progress_bar=True, val_check_interval=3,
            check_val_every_n_epoch=None, limit_val_batches=1).fit(Scripted(scores=[2.5, 1.5]), loader(4), loader(1))
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("  ")[0] for line in lines] == ["step 2/6", "step 3/6", "step 4/6", "step 6/6", "step 6/6",
                                                       "done: step 6/6 in 0:00:00"]
    assert re.fullmatch(r"step 2/6  epoch 0  loss \S+  tokens/s [\d,]+  elapsed 0:00:0\d  eta 0:00:0\d", lines[0])
    assert lines[1] == "step 3/6  val/score 2.5" and lines[4] == "step 6/6  val/score 1.5"
    assert "epoch 1" in lines[3]  # 4 batches an epoch: the count runs on across epochs


class BarState(L.Callback):
    """Records the rich bar's train task (total, completed, description) after each step."""

    def __init__(self, bar):
        self.bar, self.seen = bar, []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        task = self.bar.progress.tasks[self.bar.train_progress_bar_id]
        self.seen.append((task.total, task.completed, task.description.strip()))


def test_step_progress_bar_counts_the_runs_steps_across_epochs():
    bar = StepProgressBar()
    state = BarState(bar)
    trainer(6, [bar, state], enable_progress_bar=True, limit_val_batches=0).fit(Scripted(), loader(4))
    assert [seen[:2] for seen in state.seen] == [(6, step) for step in range(1, 7)]
    assert state.seen[-1][2] == "Epoch 1"  # not "Epoch 1/-2"


def test_count_tokens_prefers_attention_masks():
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert count_tokens({"input_ids": torch.zeros(2, 3), "attention_mask": mask}) == 3
    assert count_tokens({"chosen_input_ids": torch.zeros(2, 3), "rejected_input_ids": torch.zeros(2, 4)}) == 14
    assert count_tokens([torch.zeros(3)]) == 0
