"""`litforge compare RUN...`: final metrics of several local runs as one table, and a PNG plot of their curves.

A run is a CSVLogger version directory (holding metrics.csv) or an offline wandb run directory (holding run-*.wandb);
a folder containing either somewhere below it is searched.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import struct
from pathlib import Path

from litforge.errors import UserError

Curves = dict[str, list[tuple[int, float]]]  # metric -> [(step, value)]


def find_runs(path: Path) -> list[Path]:
    """Run directories at or below `path` (CSV metrics.csv or offline wandb run-*.wandb)."""
    if (path / "metrics.csv").is_file() or any(path.glob("run-*.wandb")):
        return [path]
    found = {p.parent for p in path.rglob("metrics.csv")} | {p.parent for p in path.rglob("run-*.wandb")}
    return sorted(found)


def read_csv_run(folder: Path) -> Curves:
    """Curves from a CSVLogger metrics.csv."""
    curves: Curves = {}
    with (folder / "metrics.csv").open() as handle:
        for row in csv.DictReader(handle):
            step = int(float(row.get("step") or 0))
            for key, value in row.items():
                if key in ("step", "epoch") or value in ("", None):
                    continue
                curves.setdefault(key, []).append((step, float(value)))
    return curves


def wandb_records(path: Path):
    """The protobuf payloads of a .wandb file (a LevelDB-style log: 32 KiB blocks of checksummed chunks)."""
    data = path.read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a wandb run file")
    block, position, pending = 32768, 7, b""
    while position + 7 <= len(data):
        if block - position % block < 7:  # the tail of a block too short for a chunk header is padding
            position += block - position % block
            continue
        _, length, kind = struct.unpack("<IHB", data[position:position + 7])
        chunk = data[position + 7:position + 7 + length]
        position += 7 + length
        if kind == 1:
            yield chunk
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind == 4:
            yield pending + chunk


def read_wandb_run(folder: Path) -> Curves:
    """Curves from an offline wandb run's history records."""
    from wandb.proto import wandb_internal_pb2

    curves: Curves = {}
    for payload in wandb_records(next(folder.glob("run-*.wandb"))):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        if record.WhichOneof("record_type") != "history":
            continue
        items = {item.key or "/".join(item.nested_key): item.value_json for item in record.history.item}
        step = int(json.loads(items.get("trainer/global_step", items.get("_step", "0"))))
        for key, value in items.items():
            if key.startswith("_") or key in ("trainer/global_step", "epoch"):
                continue
            try:
                curves.setdefault(key, []).append((step, float(json.loads(value))))
            except (TypeError, ValueError):
                continue
    return curves


def read_run(folder: Path) -> Curves:
    """Curves of one run directory, whichever logger wrote it."""
    return read_csv_run(folder) if (folder / "metrics.csv").is_file() else read_wandb_run(folder)


def table(runs: dict[str, Curves], metrics: list[str] | None) -> str:
    """Final value of each metric (columns) for each run (rows), as aligned text."""
    names = metrics or sorted({key for curves in runs.values() for key in curves})
    header = ["run"] + names
    rows = [[run] + [_format(curves[name][-1][1]) if curves.get(name) else "-" for name in names]
            for run, curves in runs.items()]
    widths = [max(len(str(row[i])) for row in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)) for row in [header] + rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def plot(runs: dict[str, Curves], metric: str, out: Path) -> None:
    """Write a PNG of `metric` against step, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4))
    for run, curves in runs.items():
        if curves.get(metric):
            steps, values = zip(*curves[metric])
            axis.plot(steps, values, label=run, marker="." if len(steps) < 30 else None)
    axis.set_xlabel("step")
    axis.set_ylabel(metric)
    axis.legend(fontsize="small")
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=120)
    plt.close(figure)


def compare_command(args: list[str]) -> None:
    """`litforge compare RUN... [--metric M] [--plot OUT.png]`: compare local runs (CSV or offline wandb)."""
    parser = argparse.ArgumentParser(prog="litforge compare", description=compare_command.__doc__)
    parser.add_argument("runs", nargs="+", help="run directories, or folders holding them")
    parser.add_argument("--metric", action="append", help="metric(s) for the table; the first one is plotted")
    parser.add_argument("--plot", default="compare.png", help="where to write the PNG plot (default compare.png)")
    options = parser.parse_args(args)
    runs: dict[str, Curves] = {}
    for given in options.runs:
        folders = find_runs(Path(given))
        if not folders:
            raise UserError(f"{given}: no run found (no metrics.csv or run-*.wandb at or below it)")
        for folder in folders:
            runs[str(folder)] = read_run(folder)
    present = sorted({key for curves in runs.values() for key in curves})
    missing = [metric for metric in options.metric or [] if metric not in present]
    if missing:
        raise UserError(f"no run has {', '.join(map(repr, missing))}; metrics present: {', '.join(present) or 'none'}")
    print(table(runs, options.metric))
    metric = (options.metric or [_default_metric(present)])[0]
    if metric:
        plot(runs, metric, Path(options.plot))
        print(f"\nplot of {metric}: {options.plot}")


def _default_metric(present: list[str]) -> str | None:
    for preferred in ("val/loss", "train/loss"):
        if preferred in present:
            return preferred
    return present[0] if present else None


def _format(value: float) -> str:
    return f"{value:.4g}" if math.isfinite(value) else str(value)
