"""Rows through Hugging Face `datasets`: every file kind and layout, column mapping, chat templates, the tokenized cache,
bad rows named by split, index and column, and streaming with an exact resume."""

import json
import os

import datasets
import lightning
import pytest
from litforge.datamodules import JSONLPreferenceDataModule, SFTDataModule, TextDataModule
from torch.utils.data import IterableDataset

from litforge.data import IGNORE_INDEX, DataError
from litforge.errors import ConfigError
from litforge.tokenizer import byte_level_tokenizer

CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
          "'<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def write(path, rows):
    """`rows` in the file kind its suffix names (a folder: save_to_disk of a DatasetDict of them)."""
    path = str(path)
    if path.endswith(".jsonl"):
        with open(path, "w") as handle:
            handle.writelines(json.dumps(row) + "\n" for row in rows)
    elif path.endswith(".json"):
        with open(path, "w") as handle:
            json.dump(rows, handle)
    elif path.endswith(".parquet"):
        datasets.Dataset.from_list(rows).to_parquet(path)
    elif path.endswith(".csv"):
        datasets.Dataset.from_list(rows).to_csv(path, index=False)
    else:
        datasets.DatasetDict({"train": datasets.Dataset.from_list(rows),
                              "test": datasets.Dataset.from_list(rows[:1])}).save_to_disk(path)
    return path


def labelled(tokenizer, labels):
    """The text the loss is taken on."""
    return tokenizer.decode([token for token in labels if token != IGNORE_INDEX])


QA = [{"question": "2+2=", "answer": "4"}, {"question": "hi", "answer": "yo"}]


@pytest.mark.parametrize("name", ["s.parquet", "s.csv", "s.json", "saved"])
def test_sft_reads_every_file_kind_through_the_column_mapping_as_jsonl_does(tmp_path, name):
    expected = SFTDataModule(train_path=write(tmp_path / "s.jsonl", [{"prompt": r["question"], "response": r["answer"]}
                                                                      for r in QA]), max_length=64)
    expected.setup("fit")
    data = SFTDataModule(train_path=write(tmp_path / name, QA), columns={"prompt": "question", "response": "answer"},
                         cache_dir=str(tmp_path / "cache"), max_length=64)
    data.setup("fit")
    assert isinstance(data.splits["train"], datasets.Dataset)
    assert list(data.splits["train"]) == expected.splits["train"]
    assert data.splits["train"][0]["labels"] == [IGNORE_INDEX] * 5 + [ord("4"), data.tokenizer.eos_token_id]
    batch = next(iter(data.train_dataloader()))
    assert batch["input_ids"].shape == (2, 7) and batch["attention_mask"].sum() == 7 + 6  # bos 2+2= 4 eos, bos hi yo eos


def test_splits_of_a_saved_dataset_default_by_name_and_map_by_yaml(tmp_path):
    path = write(tmp_path / "saved", QA)  # splits train (2 rows) and test (1 row)
    data = SFTDataModule(train_path=path, test_path=path, columns={"prompt": "question", "response": "answer"})
    data.setup("test")
    assert len(data.splits["test"]) == 1
    data = SFTDataModule(train_path=path, val_path=path, splits={"val": "test"},
                         columns={"prompt": "question", "response": "answer"})
    data.setup("fit")
    assert (len(data.splits["train"]), len(data.splits["val"])) == (2, 1)
    with pytest.raises(DataError, match=r"has splits \['train', 'test'\], none named validation or val"):
        SFTDataModule(train_path=path, val_path=path, columns={"prompt": "question", "response": "answer"}).setup("fit")
    with pytest.raises(DataError, match=r"has no split 'dev' \(it has \['train', 'test'\]\)"):
        SFTDataModule(train_path=path, splits={"train": "dev"}).setup("fit")
    with pytest.raises(ConfigError, match="splits"):
        SFTDataModule(train_path=path, splits={"validation": "test"})


def test_slices_of_one_file_serve_train_and_val(tmp_path):
    path = write(tmp_path / "s.parquet", QA * 5)
    data = SFTDataModule(train_path=path, val_path=path, splits={"train": "train[:8]", "val": "train[8:]"},
                         columns={"prompt": "question", "response": "answer"}, cache_dir=str(tmp_path / "c"))
    data.setup("fit")
    assert (len(data.splits["train"]), len(data.splits["val"])) == (8, 2)


def test_jsonl_rows_take_the_column_mapping_and_errors_name_the_users_field(tmp_path):
    path = write(tmp_path / "s.jsonl", [QA[0], {"question": "x", "answer": ""}])
    with pytest.raises(DataError, match=r"s.jsonl:2: field 'answer': is empty"):
        SFTDataModule(train_path=path, columns={"prompt": "question", "response": "answer"}).setup("fit")


def test_chat_messages_render_exactly_as_the_tokenizers_apply_chat_template(tmp_path):
    tokenizer = byte_level_tokenizer()
    tokenizer.chat_template = CHATML
    tokenizer.save_pretrained(tmp_path / "tok")
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
                {"role": "assistant", "content": "4"}]
    data = SFTDataModule(train_path=write(tmp_path / "m.parquet", [{"messages": messages}]),
                         tokenizer=str(tmp_path / "tok"), cache_dir=str(tmp_path / "cache"), max_length=128)
    data.setup("fit")
    sample = data.splits["train"][0]
    prompt = tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True, tokenize=True)
    prompt = prompt if isinstance(prompt, list) else prompt["input_ids"]  # transformers 5 returns an encoding
    end = tokenizer("<|im_end|>", add_special_tokens=False)["input_ids"]  # the template's turn end, then eos
    assert sample["input_ids"] == list(prompt) + [ord("4"), *end, tokenizer.eos_token_id]
    whole = tokenizer.apply_chat_template(messages, tokenize=False)
    assert whole.startswith(tokenizer.decode(sample["input_ids"][:-1]))  # the template's own rendering, to the turn end
    assert labelled(tokenizer, sample["labels"]) == "4<|im_end|><|eos|>"


ULTRAFEEDBACK = [{"prompt": "2+2?",
                  "chosen": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}],
                  "rejected": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "5"}]}]
HH = [{"chosen": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: 2+2?\n\nAssistant: 4",
       "rejected": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: 2+2?\n\nAssistant: five"}]


@pytest.mark.parametrize("name", ["p.parquet", "p.json", "saved"])
def test_ultrafeedback_conversations_share_their_turns_as_the_prompt(tmp_path, name):
    data = JSONLPreferenceDataModule(train_path=write(tmp_path / name, ULTRAFEEDBACK), max_length=64,
                                     cache_dir=str(tmp_path / "cache"))
    data.setup("fit")
    sample = data.splits["train"][0]
    tok = data.tokenizer
    prompt = tok.apply_chat_template([{"role": "user", "content": "2+2?"}], add_generation_prompt=True,
                                     tokenize=False)
    assert tok.decode(sample["chosen_input_ids"]) == prompt + "4<|eos|>"
    assert tok.decode(sample["rejected_input_ids"]) == prompt + "5<|eos|>"
    assert labelled(tok, sample["chosen_labels"]) == "4<|eos|>" and sample["index"] == 0
    batch = data.collate([sample])
    assert batch["input_ids"].shape[0] == 2 and batch["index"].tolist() == [0]


def test_hh_transcripts_split_at_the_last_assistant_turn(tmp_path):
    data = JSONLPreferenceDataModule(train_path=write(tmp_path / "hh.jsonl", HH), max_length=128)
    data.setup("fit")
    sample = data.splits["train"][0]
    tok = data.tokenizer
    prefix = "<|bos|>\n\nHuman: hi\n\nAssistant: hello\n\nHuman: 2+2?\n\nAssistant:"
    assert tok.decode(sample["chosen_input_ids"]) == prefix + " 4<|eos|>"
    assert labelled(tok, sample["rejected_labels"]) == " five<|eos|>"
    pairs = JSONLPreferenceDataModule(train_path=write(tmp_path / "hh.csv", HH)).pairs("train")
    assert pairs == [{"prompt": prefix[7:], "chosen": " 4", "rejected": " five"}]


def test_plain_pairs_from_csv_with_mapped_columns_match_jsonl(tmp_path):
    rows = [{"q": "1+1=", "good": "2", "bad": "three"}, {"q": "hi", "good": "hello", "bad": "go"}]
    jsonl = JSONLPreferenceDataModule(train_path=write(tmp_path / "p.jsonl", [
        {"prompt": r["q"], "chosen": r["good"], "rejected": r["bad"]} for r in rows]), max_length=32)
    csv = JSONLPreferenceDataModule(train_path=write(tmp_path / "p.csv", rows), max_length=32,
                                    columns={"prompt": "q", "chosen": "good", "rejected": "bad"},
                                    cache_dir=str(tmp_path / "cache"))
    jsonl.setup("fit"), csv.setup("fit")
    assert list(csv.splits["train"]) == jsonl.splits["train"]


@pytest.mark.parametrize("rows, message", [
    ([QA[0], {"question": "x", "answer": "  "}], r"s.parquet: split 'train', index 1: column 'answer': is empty"),
    ([QA[0], {"question": "x", "answer": None}], r"index 1: column 'answer': expected str, got NoneType"),
])
def test_a_bad_row_names_its_split_index_and_column(tmp_path, rows, message):
    data = SFTDataModule(train_path=write(tmp_path / "s.parquet", rows), cache_dir=str(tmp_path / "cache"),
                         columns={"prompt": "question", "response": "answer"})
    with pytest.raises(DataError, match=message) as caught:
        data.setup("fit")
    assert (caught.value.split, caught.value.index, caught.value.field) == ("train", 1, "answer")


def test_bad_preference_rows_name_the_turn(tmp_path):
    rejected = [{"role": "user", "content": "3+3?"}, {"role": "assistant", "content": "5"}]
    path = write(tmp_path / "p.parquet", ULTRAFEEDBACK + [ULTRAFEEDBACK[0] | {"rejected": rejected}])
    with pytest.raises(DataError, match=r"split 'train', index 1: column 'rejected\[0\]': differs from chosen's"):
        JSONLPreferenceDataModule(train_path=path, cache_dir=str(tmp_path / "cache")).setup("fit")
    path = write(tmp_path / "hh.jsonl", [{"chosen": "no turns", "rejected": "b"}])
    with pytest.raises(DataError, match=r"hh.jsonl:1: field 'prompt': missing, and chosen has no"):
        JSONLPreferenceDataModule(train_path=path).setup("fit")


class CountingSFT(SFTDataModule):
    """Counts the rows it tokenizes."""

    encoded = 0

    def encode(self, record):
        CountingSFT.encoded += 1
        return super().encode(record)


def test_a_second_run_reads_the_tokenized_cache_instead_of_tokenizing(tmp_path):
    path = write(tmp_path / "s.parquet", QA * 3)
    settings = {"train_path": path, "columns": {"prompt": "question", "response": "answer"},
                "cache_dir": str(tmp_path / "cache"), "max_length": 64}
    first = CountingSFT(**settings)
    first.setup("fit")
    assert CountingSFT.encoded == 6
    files = first.splits["train"].cache_files
    stamps = {f["filename"]: os.stat(f["filename"]).st_mtime_ns for f in files}
    second = CountingSFT(**settings)
    second.setup("fit")
    assert CountingSFT.encoded == 6  # nothing tokenized again
    assert second.splits["train"].cache_files == files
    assert {f: os.stat(f).st_mtime_ns for f in stamps} == stamps
    assert list(second.splits["train"]) == list(first.splits["train"])
    CountingSFT(**settings | {"max_length": 63}).setup("fit")  # another setting: tokenized anew
    assert CountingSFT.encoded == 12
    assert len(list((tmp_path / "cache" / "tokenized").glob("*.arrow"))) == 2


def test_a_saved_dataset_keeps_its_folder_clean_when_given_a_cache_dir(tmp_path):
    path = write(tmp_path / "saved", QA)
    data = SFTDataModule(train_path=path, columns={"prompt": "question", "response": "answer"},
                         cache_dir=str(tmp_path / "cache"))
    data.setup("fit")
    assert [f["filename"] for f in data.splits["train"].cache_files] == [
        str(next((tmp_path / "cache" / "tokenized").glob("*.arrow")))]
    assert not list((tmp_path / "saved").rglob("cache-*"))


def test_text_from_parquet_packs_like_jsonl(tmp_path):
    rows = [{"body": "hello world " * 10}] * 5
    jsonl = TextDataModule(train_path=write(tmp_path / "t.jsonl", [{"text": r["body"]} for r in rows]), max_length=16)
    parquet = TextDataModule(train_path=write(tmp_path / "t.parquet", rows), columns={"text": "body"}, max_length=16,
                             cache_dir=str(tmp_path / "cache"))
    jsonl.setup("fit"), parquet.setup("fit")
    assert list(parquet.splits["train"]) == jsonl.splits["train"] and len(jsonl.splits["train"]) == 38
    with pytest.raises(DataError, match=r"split 'train': the whole file holds fewer than max_length=4096"):
        TextDataModule(train_path=write(tmp_path / "t.parquet", rows), columns={"text": "body"}, max_length=4096,
                       cache_dir=str(tmp_path / "cache")).setup("fit")


def test_missing_sources_and_an_offline_hub_are_named(tmp_path):
    with pytest.raises(DataError, match=r"nope.parquet: file not found"):
        SFTDataModule(train_path=str(tmp_path / "nope.parquet")).setup("fit")
    with pytest.raises(DataError, match=r"^owner/name: not a local file or folder, and the hub is offline"):
        SFTDataModule(train_path="owner/name", cache_dir=str(tmp_path / "cache")).setup("fit")
    with pytest.raises(DataError, match=r"is a directory with no data files"):
        SFTDataModule(train_path=str(tmp_path)).setup("fit")


def steps(data, loader, count=None):
    """The input ids of the batches training steps take from `loader`, as Lightning hands them over (one fetched
    ahead, each passed through the datamodule's `on_before_batch_transfer` when its step takes it)."""
    taken, batches = [], iter(loader)
    ahead = next(batches, None)
    while ahead is not None and (count is None or len(taken) < count):
        batch, ahead = ahead, next(batches, None)
        taken.append(data.on_before_batch_transfer(batch, 0)["input_ids"].tolist())
    return taken


def test_streaming_resumes_at_the_exact_next_batch(tmp_path):
    rows = [{"prompt": f"q{i}", "response": f"a{i}"} for i in range(10)]
    settings = {"train_path": write(tmp_path / "s.jsonl", rows), "streaming": True, "shuffle_buffer": 4,
                "batch_size": 3, "cache_dir": str(tmp_path / "cache"), "max_length": 32}
    data = SFTDataModule(**settings)
    data.setup("fit")
    assert isinstance(data.splits["train"], IterableDataset)
    loader = data.train_dataloader()
    epoch0 = steps(data, loader)
    assert loader.state_dict() == {"epoch": 1, "position": 0}  # consumed to its end: the next epoch is due
    epoch1 = steps(data, loader)
    assert [len(b) for b in epoch0] == [3, 3, 3, 1] and epoch0 != epoch1  # a new shuffle each epoch
    texts = sorted(data.tokenizer.decode(ids[1:3]) for batch in epoch0 for ids in batch)
    assert texts == sorted(f"q{i}" for i in range(10))
    again = SFTDataModule(**settings)
    again.setup("fit")
    interrupted = again.train_dataloader()
    assert steps(again, interrupted, count=2) == epoch0[:2]  # a third batch was fetched ahead, not trained
    state = interrupted.state_dict()
    assert state == {"epoch": 0, "position": 6}
    fresh = SFTDataModule(**settings)
    fresh.setup("fit")
    loader = fresh.train_dataloader()
    loader.load_state_dict(state)
    assert steps(fresh, loader) == epoch0[2:]
    assert steps(fresh, loader) == epoch1


def test_streaming_refuses_what_it_cannot_resume(tmp_path):
    data = SFTDataModule(train_path=write(tmp_path / "s.jsonl", QA), streaming=True, num_workers=1,
                         cache_dir=str(tmp_path / "cache"))
    data.setup("fit")
    with pytest.raises(ConfigError, match="num_workers"):
        data.train_dataloader()
    data.trainer = lightning.Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False)  # not launched
    with pytest.raises(ConfigError, match="streaming: a streamed split trains on one process only"):
        data.train_dataloader()


@pytest.mark.slow
def test_cli_fits_dpo_nll_on_a_parquet_preference_file(tmp_path):
    from helpers import run_litforge, tiny_run_config, write_yaml

    rows = [{"question": f"{a}+{a}=", "good": str(2 * a), "bad": str(2 * a + 1)} for a in range(12)]
    path = write(tmp_path / "pairs.parquet", rows)
    config = tiny_run_config(tmp_path / "run", max_steps=4)
    config["trainer"]["callbacks"] = config["trainer"]["callbacks"][:1]
    config["model"] = {"class_path": "DPONLL", "init_args": config["model"]["init_args"] | {
        "beta": 0.1, "alpha": 1.0, "reference": {"class_path": "PrecomputedReference"}}}
    config["data"] = {"class_path": "JSONLPreferenceDataModule", "init_args": {
        "train_path": path, "val_path": path, "splits": {"train": "train[:8]", "val": "train[8:]"},
        "columns": {"prompt": "question", "chosen": "good", "rejected": "bad"},
        "cache_dir": str(tmp_path / "cache"), "max_length": 32, "batch_size": 4}}
    result = run_litforge(["fit", "--config", str(write_yaml(tmp_path / "fit.yaml", config))])
    assert "tokenizing" in result.stderr
    metrics = (tmp_path / "run" / "csv" / "version_0" / "metrics.csv").read_text()
    assert "val/reward_accuracy" in metrics and "train/nll" in metrics
    assert len(list((tmp_path / "cache" / "tokenized").glob("*.arrow"))) == 2  # train and val, for the next run


def test_a_saved_dataset_without_splits_reads_as_the_split_it_serves(tmp_path):
    datasets.Dataset.from_list([QA[0], {"question": "x", "answer": None}]).save_to_disk(tmp_path / "one")
    with pytest.raises(DataError, match=r"one: split 'train', index 1: column 'answer': expected str, got NoneType"):
        SFTDataModule(train_path=str(tmp_path / "one"), columns={"prompt": "question", "response": "answer"}).setup(
            "fit")
    with pytest.raises(DataError, match=r"is one saved Dataset, without splits; leave splits.train out"):
        SFTDataModule(train_path=str(tmp_path / "one"), splits={"train": "train"}).setup("fit")


@pytest.mark.slow
def test_a_streamed_fit_killed_mid_epoch_or_at_its_end_resumes_exactly(tmp_path):
    from test_resume import CAUSAL_LM, assert_same_run, killed_and_resumed, straight

    rows = [{"prompt": f"{i}+{i}=", "response": str(2 * i)} for i in range(10)]
    path = write(tmp_path / "s.jsonl", rows)
    config = dict(CAUSAL_LM, max_steps=7, data={"class_path": "SFTDataModule", "init_args": {
        "train_path": path, "val_path": path, "streaming": True, "shuffle_buffer": 4, "batch_size": 3,
        "max_length": 32, "cache_dir": str(tmp_path / "cache")}})  # 4 batches per epoch
    expected = straight(tmp_path, config)
    for step in (2, 4):
        assert_same_run(expected, killed_and_resumed(tmp_path, f"killed{step}", step, config))


@pytest.mark.parametrize("build, rows, shape", [
    (JSONLPreferenceDataModule, HH * 4, (4, 61)),  # 2 pairs x chosen, rejected; bos + 54-char prompt + " five" + eos
    (TextDataModule, [{"text": "hello world " * 10}] * 5, (2, 16)),
])
def test_preference_and_text_modules_stream_too(tmp_path, build, rows, shape):
    # (a .jsonl file: datasets 5 sleeps 5 s at the end of a shuffled parquet stream, apache/arrow#45214)
    data = build(train_path=write(tmp_path / "rows.jsonl", rows), streaming=True, batch_size=2, max_length=16
                 if build is TextDataModule else 64, cache_dir=str(tmp_path / "cache"))
    data.setup("fit")
    batches = steps(data, data.train_dataloader())
    assert (len(batches[0]), len(batches[0][0])) == shape
    assert len(batches) == (2 if build is JSONLPreferenceDataModule else 19)  # 38 blocks of 16 tokens
