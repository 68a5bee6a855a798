"""The DARTS families as trainables, through the CLI: a real ``--smoke`` supernet search of
``darts-digits`` on the session's local Ray into a real MLflow store (per-epoch metrics, the
derived genotype, its cells and the alphas' heat maps, the logged supernet), then ``tuneforge
darts retrain`` of that search (the derived genotype beside random ones, trained from scratch as
``darts-net`` trials, and their comparison on the retrain's parent run); and the refusals of a
run that is not a DARTS search's and of data-parallel DARTS trials.

One search and one retrain (a Ray search each, minutes on a busy CPU) serve every test of the
module: the module-scoped fixture ``searched`` reads the session's smoke search (``smoke_search``,
which the trainable contract reads too) and runs the retrain."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mlflow import MlflowClient

from tests.conftest import isolated_environment, needs_graphviz, parent_and_children
from tuneforge.dashboards import REPORT_ARTIFACT
from tuneforge.platform import cluster
from tuneforge.platform.cli import main
from tuneforge.platform.darts_retrain import _find_source
from tuneforge.schema import Tags, TrialStatus
from tuneforge.trainables.darts.genotypes import Genotype
from tuneforge.trainables.darts.operations import PRIMITIVES
from tuneforge.trainables.darts.trainable import DARTS, DARTS_NET, SearchSettings, resolve_genotype

SEARCH_METRICS = ("val_accuracy", "arch_loss", "train_loss", "val_loss")
RETRAIN_EXPERIMENT = "darts-digits-retrain"
GENOTYPE_NAMES = {"derived", "random-1", "random-2"}


@dataclass(frozen=True)
class Searched:
    """The search and its retrain: the store, the search's result, and the retrain command's exit
    code and output."""

    folder: Path
    tracking_uri: str
    search: Any
    retrain_code: int
    retrain_out: str
    retrain_err: str

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(self.tracking_uri)


def _main(argv: list[str]) -> tuple[int, str, str]:
    """``tuneforge ARGV...`` in-process: its exit code, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exited:  # argparse's errors
            code = exited.code
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def searched(smoke_search, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Searched]:
    """The session's ``--smoke`` search of darts-digits (``smoke_search``: 2 random trials, seed 0,
    which the trainable contract reads too), then ``tuneforge darts retrain PARENT_RUN --smoke
    --random 2`` into its store, from a fresh folder."""
    search = smoke_search("darts-digits")
    folder = tmp_path_factory.mktemp("darts")
    with isolated_environment() as patch:
        patch.chdir(folder)
        parent, _ = parent_and_children(search.tracking_uri, "darts-digits")
        retrain_code, retrain_out, retrain_err = _main(
            ["darts", "retrain", parent.info.run_id, "--smoke", "--random", "2",
             "--tracking-uri", search.tracking_uri, "--storage", str(folder / "ray")])
    yield Searched(folder, search.tracking_uri, search.result, retrain_code, retrain_out, retrain_err)


def _artifacts(client: MlflowClient, run_id: str, path: str = "") -> set[str]:
    return {a.path for a in client.list_artifacts(run_id, path)}


def _json_artifact(client: MlflowClient, run_id: str, path: str, folder: Path) -> object:
    folder.mkdir(parents=True, exist_ok=True)
    return json.loads(Path(client.download_artifacts(run_id, path, str(folder))).read_text())


def _text_artifact(client: MlflowClient, run_id: str, path: str, folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    return Path(client.download_artifacts(run_id, path, str(folder))).read_text()


def _check_genotype(value: object) -> Genotype:
    """A valid genotype of 4 nodes: two distinct inputs per node, never ``none``."""
    genotype = Genotype.from_dict(value)
    assert genotype.steps == 4
    for cell in (genotype.normal, genotype.reduce):
        assert len(cell) == 8 and all(op in PRIMITIVES and op != "none" for op, _ in cell)
        for node in range(4):
            assert cell[2 * node][1] != cell[2 * node + 1][1], f"node {node} takes one input twice"
    return genotype


# -- checks before a search -------------------------------------------------------------------


def test_the_search_settings_default_to_the_papers() -> None:
    assert SearchSettings() == SearchSettings(order=1, hvp="finite_difference", arch_lr=3e-4,
                                              arch_weight_decay=1e-3, lr_min=1e-3, momentum=0.9,
                                              auxiliary_weight=0.4, train_images=None)
    assert not DARTS.data_parallel and DARTS_NET.data_parallel
    assert {"order", "hvp", "arch_lr", "dataset"} <= DARTS.config_keys()
    from tuneforge.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^hvp: 'hessian' is not allowed; it must be one of "
                                          r"finite_difference, exact$"):
        SearchSettings(hvp="hessian")
    assert {"genotype", "genotypes", "auxiliary", "drop_path"} <= DARTS_NET.config_keys()


def test_resolve_genotype_takes_a_name_a_named_mapping_or_a_genotype() -> None:
    from tuneforge.errors import ConfigError
    from tuneforge.trainables.darts.genotypes import DARTS_V1, DARTS_V2

    assert resolve_genotype({}) == DARTS_V2
    assert resolve_genotype({"genotype": "darts-v1"}) == DARTS_V1
    assert resolve_genotype({"genotype": "mine", "genotypes": {"mine": DARTS_V1.to_dict()}}) == DARTS_V1
    assert resolve_genotype({"genotype": DARTS_V1.to_dict()}) == DARTS_V1
    with pytest.raises(ConfigError, match="genotype: unknown genotype 'darts-v9'; valid: darts-v1, darts-v2"):
        resolve_genotype({"genotype": "darts-v9"})
    bad = DARTS_V1.to_dict()
    bad["normal"][0] = ["none", 0]
    with pytest.raises(ConfigError, match=r"genotype: normal\[0\]: unknown op 'none'"):
        resolve_genotype({"genotype": bad})


def test_the_retrain_space_grids_the_derived_and_distinct_random_genotypes_on_the_supernets_data() -> None:
    from tuneforge.trainables.darts.genotypes import DARTS_V1
    from tuneforge.trainables.darts.retrain import retrain_space

    supernet = {"dataset": '{"npz": "images.npz"}', "train_images": "200", "val_images": "None", "order": "2"}
    space = retrain_space(DARTS_V1.to_dict(), supernet, source_run_id="0123456789abcdef", n_random=3,
                          epochs=4, channels=8, layers=5, seed=1, train_images=64)
    assert (space.name, space.trainable, space.metric, space.mode) == (
        "darts-retrain-01234567", "darts-net", "val_accuracy", "max")
    assert space.param_names == ("genotype",)
    assert space.params[0].choices == ("derived", "random-1", "random-2", "random-3")
    genotypes = space.config["genotypes"]
    assert genotypes["derived"] == DARTS_V1.to_dict()
    assert len({json.dumps(g) for g in genotypes.values()}) == 4, "the random genotypes are distinct"
    assert all(_check_genotype(genotypes[f"random-{k}"]) for k in (1, 2, 3))
    assert {k: v for k, v in space.config.items() if k != "genotypes"} == {
        "dataset": {"npz": "images.npz"}, "epochs": 4, "channels": 8, "layers": 5, "seed": 1,
        "train_images": 64}


def test_a_data_parallel_darts_search_is_refused_in_one_line_before_ray(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cluster, "_connect", lambda *a, **k: pytest.fail("Ray was started"))
    code, out, err = _main(["search", "darts-digits", "--smoke", "--workers-per-trial", "2",
                            "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"])
    lines = err.splitlines()
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("error: --workers-per-trial 2: trainable 'darts' runs each trial in one "
                               "process"), err
    assert "Traceback" not in out + err
    assert list(tmp_path.iterdir()) == [], "nothing created"


# -- the supernet search ----------------------------------------------------------------------


def test_the_smoke_search_finishes_two_trials(searched: Searched) -> None:
    assert searched.search.status is TrialStatus.FINISHED
    assert len(searched.search.trials) == 2
    assert all(np.isfinite(t.metrics["val_accuracy"]) for t in searched.search.trials), "both scored"
    parent, children = parent_and_children(searched.tracking_uri, "darts-digits")
    assert len(children) == 2 and {c.info.status for c in children} == {"FINISHED"}
    assert parent.info.status == "FINISHED" and parent.data.params["trainable"] == "darts"


def test_each_supernet_trial_reports_every_metric_at_each_epoch(searched: Searched) -> None:
    client = searched.client
    _, children = parent_and_children(searched.tracking_uri, "darts-digits")
    for child in children:
        for metric in SEARCH_METRICS:
            history = client.get_metric_history(child.info.run_id, metric)
            assert sorted(m.step for m in history) == [1, 2], metric
        values = child.data.metrics
        assert 0 <= values["val_accuracy"] <= 1
        assert all(values[name] > 0 for name in ("arch_loss", "train_loss", "val_loss"))


def test_each_supernet_trial_logs_its_genotype_cells_alphas_and_model(searched: Searched, tmp_path) -> None:
    needs_graphviz()
    client = searched.client
    _, children = parent_and_children(searched.tracking_uri, "darts-digits")
    for child in children:
        run_id = child.info.run_id
        assert _artifacts(client, run_id) == {"genotype.json", "cells.png", "alphas", "model"}
        assert _artifacts(client, run_id, "alphas") == {"alphas/epoch-0001.png", "alphas/epoch-0002.png"}
        assert "model/MLmodel" in _artifacts(client, run_id, "model")
        _check_genotype(_json_artifact(client, run_id, "genotype.json", tmp_path / run_id))
        png = Path(client.download_artifacts(run_id, "cells.png", str(tmp_path / run_id)))
        assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    # The report the search logged shows the best trial's cells and its weights of each epoch.
    parent, _ = parent_and_children(searched.tracking_uri, "darts-digits")
    page = Path(client.download_artifacts(parent.info.run_id, REPORT_ARTIFACT, str(tmp_path))).read_text()
    assert "<h3>Best trial: cells.png</h3>" in page and "<h3>Best trial: alphas (2 pictures)</h3>" in page


def test_each_supernet_trial_records_what_retrain_reads_back(searched: Searched) -> None:
    _, children = parent_and_children(searched.tracking_uri, "darts-digits")
    for child in children:
        params = child.data.params
        assert params["dataset"] == "digits"
        assert params["stem_stride"] == "1" and params["train_images"] == "None"
        assert params["order"] in {"1", "2"} and params["channels"] in {"8", "12"}


def test_the_logged_supernet_classifies_raw_images(searched: Searched) -> None:
    import mlflow
    import torch

    parent, _ = parent_and_children(searched.tracking_uri, "darts-digits")
    mlflow.set_tracking_uri(searched.tracking_uri)
    model = mlflow.pytorch.load_model(parent.data.tags["tuneforge.best_model_uri"])
    with torch.no_grad():
        logits = model(torch.rand(3, 1, 8, 8))  # an exported program: already in eval mode
    assert logits.shape == (3, 10) and torch.isfinite(logits).all()


# -- the retrain ------------------------------------------------------------------------------


def _retrain_runs(searched: Searched):
    parent, children = parent_and_children(searched.tracking_uri, RETRAIN_EXPERIMENT)
    return parent, {child.data.params["genotype"]: child for child in children}


def test_the_retrain_trains_the_derived_and_two_random_genotypes(searched: Searched) -> None:
    assert searched.retrain_code == 0, searched.retrain_out + searched.retrain_err
    parent, children = parent_and_children(searched.tracking_uri, RETRAIN_EXPERIMENT)
    assert len(children) == 3
    assert {c.data.params["genotype"] for c in children} == GENOTYPE_NAMES
    assert {c.info.status for c in children} == {"FINISHED"}
    assert parent.data.params["trainable"] == "darts-net" and parent.data.params["algo"] == "grid"
    source, _ = parent_and_children(searched.tracking_uri, "darts-digits")
    best = source.data.tags[Tags.BEST_RUN_ID]
    assert parent.data.tags["tuneforge.darts.source_run_id"] == best, "the search's best trial"
    assert parent.data.params["config.dataset"] == "digits"


def test_each_retrained_network_reports_its_test_accuracy_and_size_and_logs_its_genotype(
        searched: Searched, tmp_path) -> None:
    client = searched.client
    parent, runs = _retrain_runs(searched)
    named = json.loads(parent.data.params["config.genotypes"])
    assert set(named) == GENOTYPE_NAMES
    for name, child in runs.items():
        run_id = child.info.run_id
        values = child.data.metrics
        assert 0 <= values["test_accuracy"] <= 1 and values["n_params"] > 1000
        cells = {"cells.png"} if shutil.which("dot") else set()  # Graphviz draws them (test_models)
        assert _artifacts(client, run_id) == {"genotype.json", "confusion_matrix", "model"} | cells
        assert "model/MLmodel" in _artifacts(client, run_id, "model")
        genotype = _json_artifact(client, run_id, "genotype.json", tmp_path / run_id)
        assert _check_genotype(genotype) == Genotype.from_dict(named[name])
    assert len({json.dumps(g, sort_keys=True) for g in named.values()}) == 3, "three different genotypes"
    assert len({runs[name].data.metrics["n_params"] for name in GENOTYPE_NAMES}) > 1, "different sizes"


def test_the_derived_genotype_is_the_source_trials(searched: Searched, tmp_path) -> None:
    client = searched.client
    source, _ = parent_and_children(searched.tracking_uri, "darts-digits")
    best = source.data.tags[Tags.BEST_RUN_ID]
    _, runs = _retrain_runs(searched)
    derived = _json_artifact(client, runs["derived"].info.run_id, "genotype.json", tmp_path / "derived")
    assert derived == _json_artifact(client, best, "genotype.json", tmp_path / "source")


def test_the_comparison_is_logged_on_the_retrains_parent_run(searched: Searched, tmp_path) -> None:
    client = searched.client
    parent, runs = _retrain_runs(searched)
    run_id = parent.info.run_id
    assert {"comparison.csv", "comparison.md"} <= _artifacts(client, run_id)
    metrics = parent.data.metrics
    accuracy = {name: child.data.metrics["test_accuracy"] for name, child in runs.items()}
    assert metrics["derived_test_accuracy"] == pytest.approx(accuracy["derived"])
    randoms = [accuracy["random-1"], accuracy["random-2"]]
    assert metrics["random_test_accuracy_mean"] == pytest.approx(statistics.fmean(randoms))
    assert metrics["random_test_accuracy_std"] == pytest.approx(statistics.stdev(randoms))
    assert metrics["derived_n_params"] == runs["derived"].data.metrics["n_params"]
    assert metrics["random_n_params_mean"] == pytest.approx(
        statistics.fmean(runs[name].data.metrics["n_params"] for name in ("random-1", "random-2")))
    assert metrics["n_random_measured"] == 2
    rows = list(csv.DictReader(io.StringIO(_text_artifact(client, run_id, "comparison.csv", tmp_path))))
    assert [row["genotype"] for row in rows] == ["derived", "random-1", "random-2"]
    assert {row["run_id"] for row in rows} == {child.info.run_id for child in runs.values()}
    table = _text_artifact(client, run_id, "comparison.md", tmp_path / "md")
    assert table.startswith("| genotype | test accuracy | val accuracy | parameters | status |")
    assert "random genotypes (2): test accuracy" in table and "derived genotype: test accuracy" in table


def test_the_retrain_prints_the_comparison_table(searched: Searched) -> None:
    out = searched.retrain_out
    parent, _ = _retrain_runs(searched)
    header = f"Derived vs random genotypes (same epochs, data and width; logged on run {parent.info.run_id})"
    assert header in out
    assert "| genotype | test accuracy | val accuracy | parameters | status |" in out
    for name in sorted(GENOTYPE_NAMES):
        assert f"| {name} | " in out and "| FINISHED |" in out
    assert "Traceback" not in out + searched.retrain_err


def test_a_trial_run_is_its_own_source_and_a_parent_run_gives_its_best_trial(searched: Searched) -> None:
    source, children = parent_and_children(searched.tracking_uri, "darts-digits")
    best = source.data.tags[Tags.BEST_RUN_ID]
    assert _find_source(source.info.run_id, searched.tracking_uri).run_id == best
    for child in children:
        found = _find_source(child.info.run_id, searched.tracking_uri)
        assert found.run_id == child.info.run_id and found.experiment == "darts-digits"
        assert found.params["dataset"] == "digits"


# -- the retrain's refusals -----------------------------------------------------------------------


def _experiments(tracking_uri: str) -> set[str]:
    return {e.name for e in MlflowClient(tracking_uri).search_experiments()}


def _refused(searched: Searched, run_id: str, monkeypatch) -> str:
    """``tuneforge darts retrain RUN_ID`` on the module's store: exit 2 with one ``error:`` line, no
    Ray started, no experiment created; the line."""
    monkeypatch.chdir(searched.folder)
    monkeypatch.setattr(cluster, "_connect", lambda *a, **k: pytest.fail("Ray was started"))
    before = _experiments(searched.tracking_uri)
    code, out, err = _main(["darts", "retrain", run_id, "--smoke", "--tracking-uri", searched.tracking_uri])
    lines = err.splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in out + err
    assert _experiments(searched.tracking_uri) == before, "no experiment created"
    return lines[0]


def test_retrain_of_an_unknown_run_is_refused_in_one_line(searched: Searched, monkeypatch) -> None:
    line = _refused(searched, "0123456789abcdef0123456789abcdef", monkeypatch)
    assert line == (f"error: run 0123456789abcdef0123456789abcdef: no such MLflow run in "
                    f"{searched.tracking_uri}")


def test_retrain_of_a_run_without_a_genotype_is_refused_in_one_line(searched: Searched, monkeypatch) -> None:
    client = searched.client
    experiment = client.create_experiment("not-darts")
    run = client.create_run(experiment)
    client.log_param(run.info.run_id, "dataset", "digits")
    client.set_terminated(run.info.run_id)
    line = _refused(searched, run.info.run_id, monkeypatch)
    assert line == (f"error: run {run.info.run_id}: it holds no genotype.json; give a darts supernet trial's "
                    "run or its search's parent run")


def test_retrain_with_no_random_genotype_is_refused_in_one_line(searched: Searched, monkeypatch) -> None:
    source, _ = parent_and_children(searched.tracking_uri, "darts-digits")
    monkeypatch.chdir(searched.folder)
    monkeypatch.setattr(cluster, "_connect", lambda *a, **k: pytest.fail("Ray was started"))
    code, _, err = _main(["darts", "retrain", source.info.run_id, "--random", "0",
                          "--tracking-uri", searched.tracking_uri])
    assert code == 2 and err == "error: --random: 0 is not allowed; it must be a positive integer\n"


def test_retrain_of_an_unknown_run_creates_no_store(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cluster, "_connect", lambda *a, **k: pytest.fail("Ray was started"))
    code, _, err = _main(["darts", "retrain", "0123456789abcdef0123456789abcdef",
                          "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"])
    assert code == 2 and err.startswith("error: run 0123456789abcdef0123456789abcdef: no such MLflow run")
    assert list(tmp_path.iterdir()) == [], "nothing created"
