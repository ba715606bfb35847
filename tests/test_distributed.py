"""Scaling by config overlay only: DDP and FSDP2 on 2 CPU processes, two simulated nodes, and exact resumption."""

import socket
import subprocess
import sys

import pytest
import torch

from helpers import REPO, run_litforge, tiny_run_config, write_yaml

pytestmark = pytest.mark.slow


def weights(folder, rank):
    state = torch.load(folder / f"rank{rank}.pt")
    return state.pop("__sharded__").item(), state


def initial_weights():
    from litforge.backbones import TinyModel

    spec = tiny_run_config(REPO)["model"]["init_args"]["backbone"]["init_args"]
    return TinyModel(**spec).build(259, 258, 256, 257).state_dict()


@pytest.mark.parametrize("overlay, sharded", [("ddp", False), ("fsdp", True)])
def test_two_cpu_processes_end_with_the_same_trained_weights(tmp_path, overlay, sharded):
    config = write_yaml(tmp_path / "run.yaml", tiny_run_config(tmp_path))
    run_litforge(["fit", "--config", str(config), "--config", f"configs/strategy/{overlay}.yaml"])
    was_sharded0, rank0 = weights(tmp_path / "weights", 0)
    was_sharded1, rank1 = weights(tmp_path / "weights", 1)
    assert was_sharded0 == was_sharded1 == sharded
    assert all(torch.equal(rank0[name], rank1[name]) for name in rank0)
    start = initial_weights()
    assert not torch.equal(rank0["lm_head.weight"], start["lm_head.weight"])  # it trained
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()


def test_two_nodes_on_one_machine(tmp_path):
    config = write_yaml(tmp_path / "run.yaml", tiny_run_config(tmp_path))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    common = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "PYTHONPATH": str(REPO / "tests"),
              "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    import os

    command = [sys.executable, "-m", "litforge.cli", "fit", "--config", str(config),
               "--config", "configs/strategy/multinode.yaml", "--trainer.accelerator=cpu"]
    nodes = [subprocess.Popen(command, cwd=REPO, env={**os.environ, **common, "NODE_RANK": str(rank)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in (0, 1)]
    outputs = [node.communicate(timeout=300) for node in nodes]
    for node, (_, err) in zip(nodes, outputs):
        assert node.returncode == 0, err[-3000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in outputs[1][1]
    _, rank0 = weights(tmp_path / "weights", 0)
    _, rank1 = weights(tmp_path / "weights", 1)
    assert all(torch.equal(rank0[name], rank1[name]) for name in rank0)


def test_resuming_mid_run_gives_the_same_final_weights(tmp_path):
    def config(root, epochs):
        run = tiny_run_config(root, max_steps=-1, max_epochs=epochs, limit_train_batches=4)
        run["trainer"]["val_check_interval"] = None
        run["model"]["init_args"]["scheduler"] = {"class_path": "litforge.optim.WarmupCosine",
                                                  "init_args": {"warmup_steps": 2, "total_steps": 8}}
        return write_yaml(root / f"run{epochs}.yaml", run)

    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    straight.mkdir(), interrupted.mkdir()
    run_litforge(["fit", "--config", str(config(straight, 2))])
    run_litforge(["fit", "--config", str(config(interrupted, 1))])
    middle = interrupted / "middle.ckpt"
    (interrupted / "checkpoints" / "last.ckpt").rename(middle)
    run_litforge(["fit", "--config", str(config(interrupted, 2)), "--ckpt_path", str(middle)])
    _, expected = weights(straight / "weights", 0)
    _, resumed = weights(interrupted / "weights", 0)
    assert all(torch.equal(expected[name], resumed[name]) for name in expected)
    after_one_epoch = torch.load(middle, weights_only=True)["state_dict"]
    assert not torch.equal(expected["lm_head.weight"], after_one_epoch["model.lm_head.weight"])  # epoch 2 ran
