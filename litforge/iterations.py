"""The files of a generation-driven run: what each iteration built, kept under the run directory.

`iterations/iter_<k>.json` holds iteration k's statistics (written first) and `iterations/iter_<k>.jsonl` its rows
(written last; both atomically). An existing `iter_<k>.jsonl` means iteration k's data is finished: a resumed run
reads it instead of generating again. `iterations/final.json` summarises a finished run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from litforge.data import atomic_path, write_jsonl


def iteration_paths(run_dir: str | Path, k: int) -> tuple[Path, Path]:
    """(rows JSONL, statistics JSON) of iteration k."""
    folder = Path(run_dir) / "iterations"
    return folder / f"iter_{k}.jsonl", folder / f"iter_{k}.json"


def save_iteration(run_dir: str | Path, k: int, rows: list[dict], stats: dict) -> None:
    """Write iteration k's statistics, then its rows (both atomically; the rows file marks the data finished)."""
    rows_path, stats_path = iteration_paths(run_dir, k)
    write_json(stats_path, stats)
    write_jsonl(rows_path, rows)


def load_iteration(run_dir: str | Path, k: int) -> tuple[list[dict], dict] | None:
    """Iteration k's rows and statistics when its data is finished, else None."""
    rows_path, stats_path = iteration_paths(run_dir, k)
    if not rows_path.is_file():
        return None
    with rows_path.open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    stats = json.loads(stats_path.read_text()) if stats_path.is_file() else {}
    return rows, stats


def write_final(run_dir: str | Path, summary: dict) -> None:
    """Write `iterations/final.json` (atomically)."""
    write_json(Path(run_dir) / "iterations" / "final.json", summary)


def write_json(path: str | Path, value: Any) -> None:
    """Write one JSON document atomically."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(value, indent=1))
