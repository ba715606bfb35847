"""The `litforge` command: LightningCLI for fit/validate/test/predict, plus export beside it."""

from __future__ import annotations

import argparse
import sys

import lightning as L
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback

from litforge.data import DataError
from litforge.runtime import malloc_choice


class LoggedConfigCallback(SaveConfigCallback):
    """Saves config.yaml in the log directory and also hands the whole resolved config to the logger (wandb, CSV)."""

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if trainer.logger is not None:
            trainer.logger.log_hyperparams(_plain(self.config.as_dict()))


class LitforgeCLI(LightningCLI):
    """LightningCLI with the tokenizer linked from the datamodule to the model, so their vocabularies agree."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.tokenizer", "model.init_args.tokenizer", apply_on="instantiate")

    def _check_data(self, stage: str) -> None:
        # load (and so validate) the data before the Trainer writes anything: bad input leaves no run directory
        if hasattr(self.datamodule, "splits"):
            self.datamodule.setup(stage)

    def before_fit(self) -> None:
        self._check_data("fit")

    def before_validate(self) -> None:
        self._check_data("validate")

    def before_test(self) -> None:
        self._check_data("test")

    def before_instantiate_classes(self) -> None:
        # wandb runs are grouped by objective unless the config names a group
        config = self.config.get(self.subcommand, self.config) if self.subcommand else self.config
        logger = config.get("trainer", {}).get("logger")
        for entry in logger if isinstance(logger, list) else [logger]:
            if hasattr(entry, "get") and "Wandb" in str(entry.get("class_path", "")):  # not `logger: false`
                init_args = entry.get("init_args")
                if init_args is not None and not init_args.get("group"):
                    init_args["group"] = str(config["model"]["class_path"]).rsplit(".", 1)[-1]


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
    import litforge.datamodules
    import litforge.lightning_modules
    import litforge.plugins


def run_lightning(args: list[str] | None = None) -> LitforgeCLI:
    """Run fit/validate/test/predict through LightningCLI (subclass mode for model and data)."""
    _import_plugins()
    return LitforgeCLI(L.LightningModule, L.LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
                       save_config_callback=LoggedConfigCallback, save_config_kwargs={"overwrite": True}, args=args,
                       auto_configure_optimizers=False)


def export_command(args: list[str]) -> None:
    """`litforge export CKPT OUT_DIR`: write a Hugging Face directory from a litforge checkpoint."""
    from litforge.checkpoint import export

    parser = argparse.ArgumentParser(prog="litforge export", description=export_command.__doc__)
    parser.add_argument("checkpoint", help="a .ckpt written by `litforge fit`")
    parser.add_argument("out_dir", help="new directory for config.json, model.safetensors and the tokenizer")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None,
                        help="cast the weights before saving (default: keep fp32)")
    options = parser.parse_args(args)
    path = export(options.checkpoint, options.out_dir, options.dtype)
    print(f"exported {options.checkpoint} -> {path}")


def merge_command(args: list[str]) -> None:
    """`litforge merge`: merge trained branches (BTX, sparse upcycling, BTM) into one Hugging Face checkpoint."""
    from litforge.merge import merge_command as run_merge

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
    try:
        malloc_choice()  # a misspelt LITFORGE_MALLOC stops here, before anything is built
    except ValueError as error:
        print(f"litforge: error: {error}", file=sys.stderr)
        sys.exit(2)
    try:
        if argv and argv[0] in COMMANDS:
            COMMANDS[argv[0]](argv[1:])
        else:
            if argv[:1] in (["-h"], ["--help"]):
                print("litforge extra commands: " + ", ".join(f"litforge {name} --help" for name in COMMANDS) + "\n")
            run_lightning(None if from_shell else argv)
    except (DataError, FileNotFoundError, FileExistsError) as error:
        print(f"litforge: error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
