"""``tuneforge compare``: real searches of several algorithms, one experiment, one report."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tuneforge.errors import ConfigError
from tuneforge.platform.cli import main
from tuneforge.platform.compare import compare
from tuneforge.platform.planning import SearchOptions


def test_compare_runs_every_algorithm_and_seed_and_reports(ray_local, tracking_uri, tmp_path: Path) -> None:
    options = SearchOptions(tracking_uri=tracking_uri, storage=tmp_path / "ray", max_concurrent=2)
    seen = []
    result = compare("branin", algos=["random", "bayes"], budget=8, seeds=2, options=options,
                     out_dir=tmp_path / "report", on_search=lambda r, i, n: seen.append((i, n)))
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert [len(r.trials) for r in result.searches] == [8, 8, 8, 8]

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("branin-compare")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("tuneforge.role") == "search"]
    assert len(parents) == 4 and len(runs) == 4 + 4 * 8 + 1
    assert {r.data.tags["tuneforge.comparison"] for r in parents} == {result.comparison_id}
    assert sorted((r.data.params["algo"], r.data.params["seed"]) for r in parents) == \
        [("bayes", "0"), ("bayes", "1"), ("random", "0"), ("random", "1")]
    assert all(r.data.metrics["searcher_seconds_per_suggestion"] >= 0 for r in parents)

    [comparison] = [r for r in runs if r.data.tags.get("tuneforge.role") == "comparison"]
    assert {a.path for a in client.list_artifacts(comparison.info.run_id)} >= \
        {"report.html", "comparison.png", "comparison.csv", "comparison.md"}
    table = list(csv.DictReader(io.StringIO((result.report_dir / "comparison.csv").read_text())))
    assert [row["algorithm"] for row in table] == ["bayes", "random"]
    assert all(row["searches"] == "2" and float(row["seconds per suggestion"]) >= 0 for row in table)
    page = (result.report_dir / "report.html").read_text()
    assert "Algorithms compared" in page and page.count("<h2>Search ") == 4


def test_a_bad_algorithm_stops_the_comparison_before_anything_runs(tracking_uri, tmp_path: Path) -> None:
    options = SearchOptions(tracking_uri=tracking_uri, storage=tmp_path / "ray")
    with pytest.raises(ConfigError, match="--algo: unknown algorithm 'hyperband'"):
        compare("branin", algos=["random", "hyperband"], budget=5, seeds=1, options=options)
    with pytest.raises(ConfigError, match="--seeds: expected at least 1"):
        compare("branin", algos=["random"], budget=5, seeds=0, options=options)
    assert not Path(tracking_uri.removeprefix("sqlite:///")).exists() and not (tmp_path / "ray").exists()


def test_the_cli_prints_the_comparison_table(ray_local, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["compare", "hartmann3", "--algos", "random,optuna-tpe", "--budget", "5", "--seeds", "1"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Comparing random, optuna-tpe on hartmann3: 1 seeds x 5 trials each" in out
    assert "| algorithm | searches |" in out and "| optuna-tpe | 1 |" in out and "| random | 1 |" in out
    assert len(list((tmp_path / "reports").iterdir())) == 1
    home = Path(os.environ["TUNEFORGE_HOME"])  # the default store, the same from any folder
    assert (home / "mlflow.db").is_file() and not (tmp_path / "mlflow.db").exists()


def test_the_cli_refuses_a_bad_algorithm_in_one_line_before_its_header(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["compare", "branin", "--algos", "random,annealing", "--trials", "5"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == (
        "error: --algos: unknown algorithm 'annealing'; valid: grid, random, bayes, optuna-tpe, optuna-gp\n")
    assert list(tmp_path.iterdir()) == []


def test_compare_runs_with_the_garbage_collector_on(ray_local, tmp_path, monkeypatch) -> None:
    """Only ``search`` pauses the collector for its start-up; a comparison's searches run with it on."""
    import gc

    import tuneforge.platform.compare as comparing

    states, real_search = [], comparing.search

    def search(*args, **kwargs):
        states.append(gc.isenabled())
        return real_search(*args, **kwargs)

    monkeypatch.setattr(comparing, "search", search)
    monkeypatch.chdir(tmp_path)
    assert main(["compare", "branin", "--algos", "random", "--trials", "2", "--seeds", "1"]) == 0
    assert states == [True]
