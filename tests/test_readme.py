"""README as a contract: every command README shows, and the command on each config's first line, runs as written.

The fast tests read README's `bash` blocks and the configs' first lines and check that every command is part of one
pipeline below and names files that exist. The slow tests run each pipeline, at the configs' shipped lengths, in a
scratch copy of the repository, in README's order. Set LITFORGE_README_TIMES=path to have each command's wall time
appended there as JSON lines (the table in the closing notes comes from it).

Substitutions, the only departures from "as written": the multi-node command runs both nodes on 127.0.0.1 with a
free port (README's 10.0.0.1 is an example address) and half the cores each, and `configs/strategy/fsdp_gpu.yaml` is parsed, not run, on a
machine without a GPU.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import torch

from helpers import REPO

README = REPO / "README.md"
SETUP_BLOCKS = 2  # the quick start and the test command: the first two blocks, run by CI itself

# Each pipeline is the README commands (and config first lines) that name one of its prefixes, run in README order.
PIPELINES = {
    "quickstart": ("configs/quickstart.yaml", "runs/quickstart", "configs/strategy/", "configs/logger/",
                   "configs/optim/", "configs/data/", "runs/data_ultrafeedback", "litforge compare", " --help"),
    "cope": ("configs/cope/",),
    "reverse": ("configs/reverse/",),
    "preference": ("configs/sft/", "configs/dpo_nll/", "configs/cringe/"),
    "iterative_rpo": ("configs/iterative_rpo/",),
    "self_reward": ("configs/self_reward/",),
    "lift_dpo": ("configs/lift_dpo/",),
    "btx": ("configs/btx/",),
    "system2": ("configs/system2/",),
    "toolverifier": ("configs/toolverifier/",),
}
NEEDS_GPU = ("configs/strategy/fsdp_gpu.yaml",)


def bash_blocks(text: str) -> list[str]:
    """The bodies of the ```bash blocks of a markdown text, in order."""
    return re.findall(r"^```bash\n(.*?)^```", text, flags=re.S | re.M)


def commands_of(block: str) -> list[str]:
    """The commands of a shell block: comments dropped, continuation lines joined, `&&` chains split."""
    joined = re.sub(r"\s*\\\n\s*", " ", block)
    commands = []
    for line in joined.splitlines():
        line = strip_comment(line).strip()
        commands += [part.strip() for part in line.split("&&") if part.strip()]
    return commands


def strip_comment(line: str) -> str:
    """A shell line without its trailing `# comment` (a `#` inside quotes stays)."""
    quote = None
    for index, char in enumerate(line):
        if char in "'\"" and quote in (None, char):
            quote = None if quote == char else char
        elif char == "#" and quote is None and (index == 0 or line[index - 1].isspace()):
            return line[:index]
    return line


def readme_commands() -> list[str]:
    """Every command of README's bash blocks in order, less the installs and the test command (CI runs those)."""
    blocks = bash_blocks(README.read_text(encoding="utf-8"))
    quick_start = [command for command in commands_of(blocks[0]) if not command.startswith("pip ")]
    return quick_start + [command for block in blocks[SETUP_BLOCKS:] for command in commands_of(block)]


def config_files() -> list[Path]:
    """Every shipped YAML config."""
    return sorted((REPO / "configs").rglob("*.yaml"))


def config_commands(path: Path) -> list[str]:
    """The command(s) on a config's first line (`# litforge ... (note)`), the note in parentheses dropped."""
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# "), f"{path}: the first line must be a comment giving the command that runs it"
    text = re.sub(r"\s{2,}\(.*\)\s*$", "", first[2:])
    return commands_of(text)


def pipeline_of(command: str, previous: str | None) -> str:
    """The pipeline a command belongs to: the first whose prefix it names, else that of the command before it."""
    for name, prefixes in PIPELINES.items():
        if any(prefix in command for prefix in prefixes):
            return name
    assert previous is not None, f"README command belongs to no pipeline in tests/test_readme.py: {command}"
    return previous


def plan() -> dict[str, list[str]]:
    """Each pipeline's commands: README's, in README order, then config first lines README does not show."""
    ordered = readme_commands()
    for path in config_files():
        ordered += [command for command in config_commands(path) if command not in ordered]
    pipelines: dict[str, list[str]] = {name: [] for name in PIPELINES}
    previous = None
    for command in ordered:
        previous = pipeline_of(command, previous)
        pipelines[previous].append(command)
    return pipelines


def test_readme_starts_with_the_two_setup_commands():
    blocks = bash_blocks(README.read_text(encoding="utf-8"))
    install, tests = (commands_of(block) for block in blocks[:SETUP_BLOCKS])
    assert install == ["pip install torch==2.13.0", "pip install -e .", "litforge fit --config configs/quickstart.yaml"]
    assert tests[:2] == ["pip install torch==2.13.0", 'pip install -e ".[dev]"']
    ci = (REPO / ".ci" / "run").read_text()
    assert tests[2] in ci, ".ci/run must run README's test command as written"


def test_every_command_is_in_a_pipeline_and_names_existing_files():
    pipelines = plan()
    assert all(pipelines.values()), f"a pipeline has no command: {[n for n, c in pipelines.items() if not c]}"
    for commands in pipelines.values():
        for command in commands:
            for config in re.findall(r"--config (\S+)", command):
                assert (REPO / config).is_file(), f"{command}: {config} does not exist"


def test_every_config_names_itself_on_its_first_line():
    for path in config_files():
        relative = str(path.relative_to(REPO))
        assert any(relative in command for command in config_commands(path)), f"{relative}: first line {path}"


def test_command_parsing():
    block = "# a comment\nlitforge fit --config a.yaml && litforge export x y   # also b.yaml\n" \
            "MASTER_PORT=1 NODE_RANK=0 \\\n  litforge fit --config c.yaml\npython -c \"print('#1')\"\n"
    assert commands_of(block) == ["litforge fit --config a.yaml", "litforge export x y",
                                  "MASTER_PORT=1 NODE_RANK=0 litforge fit --config c.yaml", "python -c \"print('#1')\""]


# -- running the pipelines ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """A copy of the repository's files (tracked and untracked-not-ignored), with no runs/ in it."""
    root = tmp_path_factory.mktemp("readme") / "repo"
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.splitlines()
    for name in listed:
        source = REPO / name
        if source.is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name)
    return root


def environment() -> dict[str, str]:
    """The environment of every README command: offline hub and wandb, as in CI."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "TOKENIZERS_PARALLELISM": "false"}


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_command(command: str, cwd: Path) -> float:
    """Run one README command in `cwd` as written (both nodes of a multi-node command); its wall time."""
    start = time.perf_counter()
    words = shlex.split(command)
    env = environment()
    if any(word.startswith("NODE_RANK=") for word in words):
        # both "nodes" share this machine's cores: one thread each, where a real node would use all of its own
        threads = str(max(1, (os.cpu_count() or 2) // 2))
        assignments = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "OMP_NUM_THREADS": threads}
        rest = [word for word in words if not re.match(r"^(MASTER_ADDR|MASTER_PORT|NODE_RANK)=", word)]
        nodes = [subprocess.Popen(rest, cwd=cwd, env={**env, **assignments, "NODE_RANK": str(rank)},
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for rank in (0, 1)]
        outputs = [node.communicate(timeout=900)[0] for node in nodes]
        for node, output in zip(nodes, outputs):
            assert node.returncode == 0, f"{command} (node {nodes.index(node)}) failed:\n{output[-4000:]}"
    else:
        result = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True,
                                timeout=1800)
        assert result.returncode == 0, f"{command} failed ({result.returncode}):\n{result.stderr[-4000:]}"
    seconds = time.perf_counter() - start
    if os.environ.get("LITFORGE_README_TIMES"):
        with open(os.environ["LITFORGE_README_TIMES"], "a") as handle:
            handle.write(json.dumps({"command": command, "seconds": round(seconds, 1)}) + "\n")
    return seconds


@pytest.mark.slow
@pytest.mark.parametrize("pipeline", list(PIPELINES))
def test_pipeline_runs_as_written(pipeline, scratch):
    for command in plan()[pipeline]:
        if any(config in command for config in NEEDS_GPU) and not torch.cuda.is_available():
            parse_only = command + " --print_config"
            subprocess.run(["bash", "-c", parse_only], cwd=scratch, env=environment(), check=True,
                           capture_output=True)
            continue
        run_command(command, scratch)
