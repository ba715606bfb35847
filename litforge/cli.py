"""The `litforge` command: LightningCLI for fit/validate/test/predict, plus export beside it."""

from __future__ import annotations

import argparse
import contextlib
import difflib
import inspect
import itertools
import logging
import re
import shutil
import sys
import warnings
from pathlib import Path

import lightning as L
import yaml
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities import rank_zero_info

from litforge.callbacks import default_progress_bar
from litforge.checkpoint import check_checkpoint
from litforge.errors import ConfigError, UserError
from litforge.runtime import malloc_choice


class LoggedConfigCallback(SaveConfigCallback):
    """Saves config.yaml in the log directory and also hands the whole resolved config to the logger (wandb, CSV)."""

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if trainer.logger is not None:
            trainer.logger.log_hyperparams(_plain(self.config.as_dict()))


class LitforgeCLI(LightningCLI):
    """LightningCLI with litforge's run conventions, decided here once for every config and overlay.

    - The tokenizer is linked from the datamodule to the model, so their vocabularies agree.
    - An integer `trainer.val_check_interval` counts training batches across epochs (Lightning's
      `check_val_every_n_epoch: null`), so the cadence never depends on how many batches an epoch has per process;
      a float keeps its per-epoch meaning.
    - A CSVLogger flushes at the trainer's `log_every_n_steps` unless its config sets another cadence.
    - Progress is `ProgressLine` when stdout is not a terminal and `StepProgressBar` when it is, unless
      `trainer.callbacks` names a progress bar or `trainer.enable_progress_bar` is false.
    - `--ckpt_path` is checked before anything is written; `--ckpt_path last` with nothing saved yet starts fresh
      and says so.
    - A fit that fails before its first step removes the logger run it created.
    - "Seed set to N" is said once the config's classes are built, so that a config error stays one line.
    """

    def _set_seed(self) -> None:
        seed_logger = logging.getLogger("lightning.fabric.utilities.seed")
        level = seed_logger.level
        seed_logger.setLevel(logging.WARNING)
        try:
            super()._set_seed()
        finally:
            seed_logger.setLevel(level)

    def after_instantiate_classes(self) -> None:
        super().after_instantiate_classes()
        config = self.config[self.subcommand] if self.subcommand else self.config
        seed = config.get("seed_everything")
        if seed is not False and seed is not None:
            rank_zero_info(f"Seed set to {seed}")

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.tokenizer", "model.init_args.tokenizer", apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        config = self.config.get(self.subcommand, self.config) if self.subcommand else self.config
        trainer = config.get("trainer", {})
        accumulate = trainer.get("accumulate_grad_batches")
        if isinstance(accumulate, int) and accumulate < 1:  # Lightning divides by it at the first step
            raise ConfigError("trainer.accumulate_grad_batches", f"must be at least 1, got {accumulate}")
        interval = trainer.get("val_check_interval")
        if isinstance(interval, int) and not isinstance(interval, bool):
            trainer["check_val_every_n_epoch"] = None
        logger = trainer.get("logger")
        for entry in logger if isinstance(logger, list) else [logger]:
            if not hasattr(entry, "get") or entry.get("init_args") is None:  # `logger: false`, or no arguments
                continue
            init_args, class_path = entry["init_args"], str(entry.get("class_path", ""))
            if "Wandb" in class_path and not init_args.get("group"):  # wandb runs are grouped by objective
                init_args["group"] = str(config["model"]["class_path"]).rsplit(".", 1)[-1]
            if class_path.endswith("CSVLogger") and init_args.get("flush_logs_every_n_steps") in (None, _CSV_FLUSH):
                init_args["flush_logs_every_n_steps"] = trainer.get("log_every_n_steps") or 50

    def instantiate_trainer(self, **kwargs) -> L.Trainer:
        callbacks = self._get(self.config_init, "trainer", default={}).get("callbacks") or []
        callbacks = list(callbacks) if isinstance(callbacks, list) else [callbacks]
        enabled = self._get(self.config_init, "trainer", default={}).get("enable_progress_bar") is not False
        if enabled and not any(isinstance(callback, ProgressBar) for callback in callbacks):
            callbacks.append(default_progress_bar())
        try:
            return super().instantiate_trainer(callbacks=callbacks, **kwargs)
        except (MisconfigurationException, ValueError) as error:  # the Trainer's own argument checks
            raise ConfigError("trainer", str(error)) from error

    def _check_data(self, stage: str) -> None:
        # load (and so validate) the data before the Trainer writes anything: bad input leaves no run directory
        if hasattr(self.datamodule, "splits"):
            self.datamodule.setup(stage)

    def parse_arguments(self, parser, args) -> None:
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        path = self.config[subcommand].get("ckpt_path") if subcommand else None
        # before LightningCLI reads the checkpoint's hyperparameters, and so before anything is written
        if path is not None and path not in ("last", "best", "hpc") and not str(path).startswith("registry:"):
            check_checkpoint(path, resume=subcommand == "fit")

    def _last_or_fresh(self) -> None:
        """`--ckpt_path last` with no last checkpoint yet (a requeued job's first run): start fresh, in one line."""
        config = self.config_init[self.subcommand]
        if config.get("ckpt_path") != "last":
            return
        found = set()
        for callback in self.trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint):
                found |= callback._find_last_checkpoints(self.trainer)
        for path in found:
            check_checkpoint(path)
        if not found:
            if self.trainer.is_global_zero:
                print("litforge: --ckpt_path last: no checkpoint saved yet; starting from the beginning", flush=True)
            config["ckpt_path"] = None

    def before_fit(self) -> None:
        self._last_or_fresh()
        self._check_data("fit")

    def before_validate(self) -> None:
        self._check_data("validate")

    def before_test(self) -> None:
        self._check_data("test")

    def fit(self, **kwargs) -> None:
        """`trainer.fit`; a run that fails before its first step leaves no empty logger run behind."""
        try:
            self.trainer.fit(**kwargs)
        except BaseException:
            if self.trainer.global_step == 0:
                remove_logger_runs(self.trainer)
            raise


_CSV_FLUSH = inspect.signature(CSVLogger).parameters["flush_logs_every_n_steps"].default


def remove_logger_runs(trainer: L.Trainer) -> None:
    """Delete the run folders this process's loggers created (for a run that failed before its first step)."""
    if not trainer.is_global_zero:
        return
    for logger in trainer.loggers:
        experiment = getattr(logger, "_experiment", None)  # loggers create their run lazily: None = nothing written
        if experiment is None:
            continue
        if hasattr(experiment, "finish"):  # a wandb run: close it, then remove its folder
            folder = Path(experiment.dir).parent
            experiment.finish(exit_code=1)
            latest = folder.parent / "latest-run"
            if latest.is_symlink() and latest.resolve() == folder.resolve():
                latest.unlink()
        else:
            folder = Path(logger.log_dir)
            if (folder / "metrics.csv").exists():  # metrics of an earlier run: not ours to delete
                continue
        shutil.rmtree(folder, ignore_errors=True)


def _plain(value):
    """Config values as JSON-friendly types (class paths and numbers stay, objects become their repr)."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def _import_plugins() -> None:
    """Import the packages whose classes YAML names by short name (class_path: CausalLM)."""
    import litforge.datamodules  # noqa: F401
    import litforge.lightning_modules  # noqa: F401
    import litforge.plugins  # noqa: F401


def run_lightning(args: list[str] | None = None) -> LitforgeCLI:
    """Run fit/validate/test/predict through LightningCLI (subclass mode for model and data)."""
    _import_plugins()
    return LitforgeCLI(L.LightningModule, L.LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
                       save_config_callback=LoggedConfigCallback, save_config_kwargs={"overwrite": True}, args=args,
                       auto_configure_optimizers=False, parser_kwargs={"exit_on_error": False})


def leave_process_group() -> None:
    """After a successful run, let every rank arrive before any tears the process group down: a rank that leaves
    while another still holds its gloo connections can abort that one at exit ("terminate called without an active
    exception", seen about once in 25 DDP predict runs where rank 0 writes the predictions alone)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def class_help(argv: list[str]) -> bool:
    """`fit --model CausalLM --data SFTDataModule --help`: print the arguments of the classes named, as
    `--model.help CausalLM` and `--data.help SFTDataModule` do; False when the command line asks for something else."""
    named = [(flag, value) for flag, value in itertools.pairwise(argv[1:])
             if flag in ("--model", "--data") and not value.startswith("-")]
    if not named or not {"-h", "--help"} & set(argv):
        return False
    for flag, value in named:
        with contextlib.suppress(SystemExit):  # jsonargparse exits after printing a help
            run_lightning([argv[0], f"{flag}.help", value])
    return True


def check_config_files(argv: list[str]) -> None:
    """Raise UserError for a `--config` file that is empty, not YAML, or not a mapping of sections."""
    paths = [value for flag, value in itertools.pairwise(argv) if flag in ("--config", "-c")]
    paths += [arg.split("=", 1)[1] for arg in argv if arg.startswith("--config=")]
    for path in map(Path, paths):
        if path.is_dir():
            raise UserError(f"--config {path}: is a directory, not a config file")
        if not path.is_file():  # jsonargparse also takes a config given inline, as a YAML string
            continue
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
        except UnicodeDecodeError as error:
            raise UserError(f"--config {path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
        except yaml.YAMLError as error:
            raise UserError(f"--config {path}: not valid YAML: {_squash(str(error))}") from None
        if data is None:
            raise UserError(f"--config {path}: the file is empty (it should hold trainer:, model: and data:)")
        if not isinstance(data, dict):
            raise UserError(f"--config {path}: a config file holds a mapping of sections (trainer:, model:, data:), "
                            f"not a {type(data).__name__}")


def user_error(error: BaseException) -> str | None:
    """The one line to show for an error the user caused, or None for a litforge bug (which keeps its traceback)."""
    seen: BaseException | None = error
    while seen is not None:  # jsonargparse wraps what an `__init__` raises while instantiating the config's classes
        if isinstance(seen, (UserError, FileNotFoundError, FileExistsError)):
            return _squash(str(seen))
        if isinstance(seen, MisconfigurationException):
            return _squash(str(seen))
        seen = seen.__cause__
    if isinstance(error, argparse.ArgumentError):  # the config does not parse: say where and why, in one line
        return _parse_error(str(error))
    return None


def _parse_error(message: str) -> str:
    """jsonargparse's multi-line parse error as `key.path: reason`, with the closest names for an unknown class."""
    keys = re.findall(r'Parser key "([^"]+)"', message)
    where = ".".join(keys) + ": " if keys else ""
    unknown = (re.search(r"dot import path string: '?(?P<name>[\w.]+)", message)
               or re.search(r"module '(?P<module>[\w.]+)' has no attribute '(?P<name>\w+)'", message)
               or re.search(r"No module named '(?P<name>[\w.]+)'", message))
    if unknown:
        name = unknown["name"] if "module" not in unknown.groupdict() else f"{unknown['module']}.{unknown['name']}"
        close = difflib.get_close_matches(name.rsplit(".", 1)[-1], _litforge_class_names(), n=3, cutoff=0.6)
        hint = f"; closest litforge names: {', '.join(close)}" if close else ""
        return f"{where}unknown class_path {name!r}{hint}"
    skip = ("Parser key", "Does not validate", "Subtypes:", "Errors:", "Given value", "Problem with given class_path",
            "Expected a <class 'NoneType'>", "tip:")
    lines = [line.strip(" -") for line in message.splitlines()]
    reasons = [line for line in lines if line and not line.startswith(skip)]
    return where + _squash(reasons[0] if reasons else message)


def _litforge_class_names() -> list[str]:
    """Names of the classes litforge defines (objectives, datamodules, plugins, backbones, callbacks)."""
    return sorted({name for module_name, module in list(sys.modules.items()) if module_name.startswith("litforge")
                   for name, value in vars(module).items()
                   if inspect.isclass(value) and value.__module__ == module_name and not name.startswith("_")})


def _squash(text: str) -> str:
    return " ".join(text.split())


def quiet_known_noise() -> None:
    """Silence, on purpose and only here, messages that say nothing about the user's run."""
    # raised inside Lightning's own pytree helper, not by anything a user or litforge does
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning)
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_no_adverts)
    # bitsandbytes on a CPU with AVX512-BF16 asks for an optional hub kernel at import; it runs without it
    logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(_no_kernel_hint)


def _no_kernel_hint(record: logging.LogRecord) -> bool:
    """False for bitsandbytes' note that the optional `kernels` package is missing for its CPU 4-bit matmul."""
    return not str(record.msg).startswith("Failed to load CPU gemm_4bit_forward")


def _no_adverts(record: logging.LogRecord) -> bool:
    """False for Lightning's tips advertising its cloud products (litlogger, litmodels)."""
    return not str(record.msg).startswith("💡 Tip")


def export_command(args: list[str]) -> None:
    """`litforge export CKPT OUT_DIR`: write a Hugging Face directory from a litforge checkpoint (LoRA adapters merged
    into the base weights unless --adapters-only)."""
    from litforge.checkpoint import export

    parser = argparse.ArgumentParser(prog="litforge export", description=export_command.__doc__)
    parser.add_argument("checkpoint", help="a .ckpt written by `litforge fit`")
    parser.add_argument("out_dir", help="new directory for config.json, model.safetensors and the tokenizer")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None,
                        help="cast the weights before saving (default: keep fp32)")
    parser.add_argument("--adapters-only", action="store_true",
                        help="a LoRA policy: write the peft adapter alone (PeftModel.from_pretrained on its base), "
                             "not the base with the adapters merged")
    options = parser.parse_args(args)
    path = export(options.checkpoint, options.out_dir, options.dtype, adapters_only=options.adapters_only)
    print(f"exported {options.checkpoint} -> {path}")


def merge_command(args: list[str]) -> None:
    """`litforge merge`: merge trained branches (BTX, sparse upcycling, BTM) into one Hugging Face checkpoint."""
    from litforge.plugins.moe.merge import merge_command as run_merge

    run_merge(args)


def compare_command(args: list[str]) -> None:
    """`litforge compare RUN...`: final metrics of local runs as a table, and a PNG plot."""
    from litforge.compare import compare_command as run

    run(args)


COMMANDS = {"export": export_command, "merge": merge_command, "compare": compare_command}


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `litforge` console script."""
    from_shell = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    quiet_known_noise()
    try:
        malloc_choice()  # a misspelt LITFORGE_MALLOC stops here, before anything is built
    except ValueError as error:
        print(f"litforge: error: {error}", file=sys.stderr)
        sys.exit(2)
    try:
        if argv and argv[0] in COMMANDS:
            COMMANDS[argv[0]](argv[1:])
        else:
            if class_help(argv):
                return
            if argv[:1] in (["-h"], ["--help"]):
                print("litforge extra commands: " + ", ".join(f"litforge {name} --help" for name in COMMANDS) + "\n")
            check_config_files(argv)
            run_lightning(None if from_shell else argv)
            leave_process_group()
    except Exception as error:
        message = user_error(error)
        if message is None:
            raise
        print(f"litforge: error: {message}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
