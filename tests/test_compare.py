"""`litforge compare` over local CSV runs."""

import pytest

from litforge.compare import find_runs, read_run, table
from litforge.cli import main


def write_run(folder, rows):
    folder.mkdir(parents=True)
    (folder / "metrics.csv").write_text("epoch,step,train/loss,val/loss\n" + "\n".join(rows) + "\n")


def test_table_shows_final_values_and_plot_is_written(tmp_path, capsys):
    write_run(tmp_path / "a" / "version_0", ["0,9,2.5,", "0,9,,2.0", "0,19,1.5,", "0,19,,1.25"])
    write_run(tmp_path / "b" / "version_0", ["0,9,3.0,", "0,9,,2.75"])
    runs = {str(f): read_run(f) for f in find_runs(tmp_path)}
    assert runs[str(tmp_path / "a" / "version_0")]["val/loss"] == [(9, 2.0), (19, 1.25)]
    text = table(runs, ["val/loss", "train/loss"])
    lines = text.splitlines()
    assert lines[0].split() == ["run", "val/loss", "train/loss"]
    assert lines[2].split()[1:] == ["1.25", "1.5"] and lines[3].split()[1:] == ["2.75", "3"]
    main(["compare", str(tmp_path), "--plot", str(tmp_path / "plot.png")])
    assert (tmp_path / "plot.png").read_bytes()[:4] == b"\x89PNG"
    assert "1.25" in capsys.readouterr().out


def test_a_metric_no_run_has_exits_2_listing_the_metrics_present(tmp_path, capsys):
    write_run(tmp_path / "a" / "version_0", ["0,9,2.5,", "0,9,,2.0"])
    with pytest.raises(SystemExit) as stop:
        main(["compare", str(tmp_path), "--metric", "val/losss", "--plot", str(tmp_path / "plot.png")])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err == "litforge: error: no run has 'val/losss'; metrics present: train/loss, val/loss\n"
    assert not (tmp_path / "plot.png").exists()
