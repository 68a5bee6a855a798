"""In a real (headless Debian) Chromium: the MLflow UI of ``tuneforge server`` shows a search's
parent and child runs, and the report's pictures render. Screenshots go to ``ci-artifacts/``."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import tuneforge
from tests.conftest import needs
from tests.platform.test_server import start_server, stop_server
from tuneforge.dashboards import REPORT_ARTIFACT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = Path(os.environ.get("TUNEFORGE_CI_ARTIFACTS", Path(__file__).parents[2] / "ci-artifacts"))
# The flags this machine's closed network wants (no background connections, no QUIC).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
N_TRIALS = 8  # enough for the report's importances


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    """One headless Chromium for the module (it takes seconds to start)."""
    needs(Path(CHROMIUM).is_file(), "Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def browser(chromium) -> Iterator[object]:
    """A fresh page of the module's Chromium for each test."""
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    yield page
    page.close()


@pytest.fixture(scope="module")
def recorded(ray_local, tmp_path_factory: pytest.TempPathFactory):
    """One search for both tests (each reads it; the report adds an artifact, no run)."""
    folder = tmp_path_factory.mktemp("recorded")
    store = f"sqlite:///{folder / 'mlflow.db'}"
    result = tuneforge.search("svc-wine", trials=N_TRIALS, seed=5, tracking_uri=store,
                              storage=folder / "ray")
    return result, store


def test_mlflow_ui_shows_the_search_and_its_trials(recorded, browser, tmp_path: Path) -> None:
    result, store = recorded
    url, server = start_server(tmp_path, "--backend-store-uri", store)
    try:
        page = browser
        # The "Model training" view (MLflow 3.17 opens an experiment in its GenAI view without it)
        page.goto(f"{url}/#/experiments/{result.experiment_id}/runs?workflowType=machine_learning",
                  wait_until="load")
        parent_name = Path(result.experiment_path).name
        page.get_by_text(parent_name).wait_for(timeout=60_000)
        page.get_by_text(f"{1 + N_TRIALS} matching runs").wait_for(timeout=30_000)
        parent_row = page.locator("[role=row]", has_text=parent_name).first
        parent_row.locator("button[data-component-id*='runnamecellrenderer']").click()
        children = page.locator("[role=row]", has_text=re.compile(r"trial \d+: "))  # trial 3: C=...
        children.nth(N_TRIALS - 1).wait_for(timeout=30_000)
        assert children.count() == N_TRIALS
        shown = "\n".join(children.all_inner_texts())
        assert all(trial.name in shown for trial in result.trials), shown
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "mlflow-ui-search.png"))
    finally:
        stop_server(server)


def test_the_printed_link_opens_on_the_trials_ranked_by_their_metric(recorded, browser,
                                                                     tmp_path: Path) -> None:
    from tuneforge.dashboards.mlflow_ui import trials_url

    result, store = recorded
    url, server = start_server(tmp_path, "--tracking-uri", store)
    try:
        page = browser
        page.goto(trials_url(url, result.experiment_id, result.parent_run_id), wait_until="load")
        rows = page.locator("[role=row]", has_text=re.compile(r"trial \d+: "))  # no click: the first screen
        rows.nth(N_TRIALS - 1).wait_for(timeout=60_000)
        assert rows.count() == N_TRIALS, "the search's trials, not its collapsed parent"
        header = page.locator("[role=columnheader]").all_inner_texts()
        assert any(result.metric in text for text in header), header
        assert any("svc__C" in text for text in header), header  # a searched param's column
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "mlflow-ui-trials.png"))
        texts = rows.all_inner_texts()
        assert result.best.name in texts[0], f"ranked best first: {texts[0]}"
        cells = page.locator(f"[role=gridcell][col-id*='{result.metric}']").all_inner_texts()
        assert len(cells) >= N_TRIALS and re.fullmatch(r"0\.9\d*", cells[0].strip()), cells
        assert page.get_by_text("Detect Issues").count() == 0, "the Model training view, not GenAI's"
        assert page.get_by_text(f"{N_TRIALS} matching runs").count() == 1
        page.goto(trials_url(url, result.experiment_id, result.parent_run_id, charts=True), wait_until="load")
        page.get_by_text(result.metric).first.wait_for(timeout=60_000)
        page.screenshot(path=str(SCREENSHOTS / "mlflow-ui-charts.png"))
    finally:
        stop_server(server)


def test_the_mlflow_ui_shows_the_logged_report_in_its_artifact_view(recorded, browser,
                                                                     tmp_path: Path) -> None:
    """The parent run's artifact view draws report/index.html (MLflow's sandboxed frame runs
    its scripts): every plot rendered inside the MLflow UI."""
    from tuneforge.dashboards.mlflow_ui import run_url

    result, store = recorded
    url, server = start_server(tmp_path, "--tracking-uri", store)
    try:
        page = browser
        run_page = run_url(url, result.experiment_id, result.parent_run_id)
        page.goto(run_page.replace("?", f"/artifacts/{REPORT_ARTIFACT}?"), wait_until="load")
        report = page.frame_locator("iframe.mlflow-html-iframe")
        plots = report.locator(".js-plotly-plot")
        plots.nth(6).wait_for(timeout=60_000)
        assert plots.count() == 7
        assert report.locator(f"text={result.best.trial_id}").count() >= 1
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "mlflow-ui-report.png"))
    finally:
        stop_server(server)


def _watch(page) -> list[str]:
    """What a self-contained page must not do, as it happens: console errors, uncaught
    exceptions, requests beyond the file itself and its data: URIs."""
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("request", lambda request: None if request.url.startswith(("file:", "data:"))
            else problems.append(f"request {request.url}"))
    return problems


def _logged_report(store: str, parent_run_id: str, folder: Path) -> Path:
    from mlflow import MlflowClient

    return Path(MlflowClient(store).download_artifacts(parent_run_id, REPORT_ARTIFACT, str(folder)))


def test_the_report_s_plots_render_and_hover_offline(recorded, browser, tmp_path: Path) -> None:
    """The report the search logged to its parent run: every plot drawn, a hover names the trial
    and its params, nothing fetched, no console error."""
    result, store = recorded
    page = browser
    problems = _watch(page)
    page.goto(_logged_report(store, result.parent_run_id, tmp_path).as_uri(), wait_until="load")
    plots = page.locator(".js-plotly-plot")
    # best over time; Optuna's history, parallel coordinates, slice, contour, importances, EDF
    assert plots.count() == 7
    sizes = plots.evaluate_all("ps => ps.map(p => p.querySelector('.main-svg').getBoundingClientRect()"
                               ".height)")
    assert all(height > 200 for height in sizes), sizes
    titles = plots.evaluate_all("ps => ps.map(p => p.layout.title.text)")
    assert titles[0] == "Best cv_accuracy so far against wall time" and "Hyperparameter importances" in titles
    points = plots.first.locator(".scatterlayer .trace").first.locator(".point")
    assert points.count() == N_TRIALS
    points.last.hover(force=True)  # the last trial to end: no other point is drawn over it
    label = page.locator(".hoverlayer .hovertext").first
    label.wait_for(timeout=5_000)
    text = label.text_content()
    named = [t for t in result.trials if t.trial_id in text]
    assert len(named) == 1, text  # the trial, as the CLI names it, and its params
    assert all(f"{name}: " in text for name in named[0].params), text
    best = result.best
    assert page.get_by_role("link", name=best.trial_id).count() == 1, "the top trials, linked to MLflow"
    assert problems == []
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "report.png"), full_page=True)


def test_the_report_of_a_vit_search_has_learning_curves_and_a_picture_slider(smoke_search, browser,
                                                                              tmp_path: Path) -> None:
    search = smoke_search("vit-digits")
    page = browser
    problems = _watch(page)
    report = _logged_report(search.tracking_uri, search.result.parent_run_id, tmp_path)
    page.goto(report.as_uri(), wait_until="load")
    titles = page.locator(".js-plotly-plot").evaluate_all("ps => ps.map(p => p.layout.title.text)")
    assert any(title.startswith("Learning curves") for title in titles), titles
    slider = page.locator(".slides input[type=range]")
    assert slider.count() == 1, "the confusion matrix of each epoch"
    caption = page.locator(".slides .caption")
    assert caption.inner_text() == "confusion_matrix/epoch-0002.png"
    newest = page.locator(".slides img").get_attribute("src")
    slider.fill("0")
    assert caption.inner_text() == "confusion_matrix/epoch-0001.png"
    assert page.locator(".slides img").get_attribute("src") != newest
    assert problems == []
