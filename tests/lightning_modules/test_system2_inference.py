"""System2Inference: validate's accuracy / tokens / unparsable metrics and predict's rows on a scripted Llama, and one
end-to-end `litforge predict` of System 2 Attention on a saved instruct-style checkpoint with a chat template."""

from __future__ import annotations

import json

import lightning as L
import pytest
from helpers import run_litforge
from system2_helpers import scripted_llama

from litforge.datamodules import System2InputsDataModule
from litforge.errors import ConfigError
from litforge.lightning_modules import System2Inference
from litforge.plugins.system2 import Direct
from litforge.tokenizer import byte_level_tokenizer

INPUTS = [
    {"question": "2+7=", "label": "9"},  # the scripted model answers "Answer: 9" after "=": correct
    {"question": "4+4=", "label": 8},  # answered 9: wrong
    {"question": "what?", "label": "x"},  # "?" is followed by eos: unparsable, counted wrong
    {"question": "1+8="},  # no label: not in the accuracy
]


def module_and_data(tmp_path, tokenizer, **kwargs):
    path = tmp_path / "inputs.jsonl"
    path.write_text("".join(json.dumps(item) + "\n" for item in INPUTS))
    program = Direct(template="{question}", answer_pattern=r"Answer: (\d+)", reply_format="Answer: {answer}")
    module = System2Inference(program, tokenizer=tokenizer, **kwargs)
    module.model = scripted_llama(tokenizer, {"=": "Answer: 9"})
    return module, System2InputsDataModule(str(path), batch_size=3)


def trainer(tmp_path):
    return L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                     default_root_dir=tmp_path)


def test_validate_reports_accuracy_over_labelled_inputs_tokens_and_unparsable(tmp_path, tokenizer):
    module, data = module_and_data(tmp_path, tokenizer)
    [metrics] = trainer(tmp_path).validate(module, datamodule=data, verbose=False)
    assert metrics["val/accuracy"] == pytest.approx(1 / 3)
    assert metrics["val/unparsable"] == pytest.approx(1 / 4)
    assert metrics["val/tokens_per_item"] == pytest.approx((9 + 9 + 0 + 9) / 4)


def test_predict_prints_and_writes_one_row_per_input(tmp_path, tokenizer, capsys):
    module, data = module_and_data(tmp_path, tokenizer)
    trainer(tmp_path).predict(module, datamodule=data)
    rows = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert [(r["line"], r["answer"], r["tokens"], r.get("correct")) for r in rows] == [
        (1, "9", 9, True), (2, "9", 9, False), (3, None, 0, False), (4, "9", 9, None)]
    assert rows[0]["final"] == "Answer: 9" and rows[0]["steps"] == {}
    out = capsys.readouterr().out
    assert 'line 3: answer=null tokens=0 label="x"' in out
    assert "Direct: 4 inputs, 3 answered, 6.8 tokens per input, accuracy 0.333 over 3 labelled" in out


def test_with_samples_the_answer_is_their_majority_and_tokens_count_them_all(tmp_path, tokenizer):
    module, data = module_and_data(tmp_path, tokenizer, n=3, temperature=1.0, predictions_file=None)
    rows = [row for batch in trainer(tmp_path).predict(module, datamodule=data) for row in batch]
    assert [(r["answer"], r["sample_answers"], r["tokens"]) for r in rows] == [
        ("9", ["9"] * 3, 27), ("9", ["9"] * 3, 27), (None, [None] * 3, 0), ("9", ["9"] * 3, 27)]
    assert not (tmp_path / "predictions.jsonl").exists()


@pytest.mark.parametrize("kwargs, field", [({"n": 0}, "n"), ({"n": 4}, "temperature"),
                                           ({"temperature": -1.0}, "temperature"),
                                           ({"max_new_tokens": 0}, "max_new_tokens")])
def test_bad_sampling_settings_are_config_errors(kwargs, field):
    with pytest.raises(ConfigError, match=f"^{field}: ") as caught:
        System2Inference(Direct(), **kwargs)
    assert caught.value.field == field


CHAT_TEMPLATE = ("{{ bos_token }}{% for message in messages %}[{{ message['role'] }}] {{ message['content'] }}"
                 "{{ eos_token }}{% endfor %}{% if add_generation_prompt %}[assistant]@{% endif %}")


def instruct_checkpoint(folder):
    """An "instruct" checkpoint: after its chat template's generation prompt ("...@") it writes "Answer: 9"; after any
    raw prompt (S2A's templates end in a newline) it stops at once, so an answer proves the template was applied."""
    tokenizer = byte_level_tokenizer()
    tokenizer.chat_template = CHAT_TEMPLATE
    scripted_llama(tokenizer, {"@": "Answer: 9"}).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_the_shipped_s2a_predict_config_runs_on_a_local_chat_checkpoint(tmp_path):
    checkpoint = instruct_checkpoint(tmp_path / "instruct")
    run = tmp_path / "run"
    result = run_litforge(["predict", "--config", "configs/system2/s2a_predict.yaml",
                           f"--model.init_args.backbone.init_args.path={checkpoint}",
                           f"--data.init_args.tokenizer={checkpoint}", "--trainer.accelerator=cpu",
                           f"--trainer.default_root_dir={run}"])
    assert 'line 2: answer="9" tokens=18 label="8"' in result.stdout
    assert "System2Attention: 4 inputs, 4 answered, 18.0 tokens per input, accuracy 0.000 over 3 labelled" \
        in result.stdout
    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    assert [row["line"] for row in rows] == [1, 2, 3, 4]
    assert (rows[0]["answer"], rows[0]["steps"], rows[0]["final"]) == ("9", {"regenerate": "Answer: 9"}, "Answer: 9")


@pytest.mark.slow
def test_predict_under_ddp_writes_each_input_once_in_file_order(tmp_path):
    # 3 inputs on 2 ranks: the distributed sampler repeats line 1 on rank 1; predictions keep it once
    checkpoint = instruct_checkpoint(tmp_path / "instruct")
    inputs = tmp_path / "inputs.jsonl"
    inputs.write_text("".join(json.dumps({"question": f"q{i}", "label": "9"}) + "\n" for i in range(3)))
    run = tmp_path / "run"
    result = run_litforge(["predict", "--config", "configs/system2/s2a_predict.yaml",
                           f"--model.init_args.backbone.init_args.path={checkpoint}",
                           f"--data.init_args.tokenizer={checkpoint}", f"--data.init_args.path={inputs}",
                           "--data.init_args.batch_size=1", "--trainer.accelerator=cpu", "--trainer.devices=2",
                           "--trainer.strategy=ddp", f"--trainer.default_root_dir={run}"])
    assert "3 inputs, 3 answered, 18.0 tokens per input, accuracy 1.000 over 3 labelled" in result.stdout
    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    assert [row["line"] for row in rows] == [1, 2, 3]
