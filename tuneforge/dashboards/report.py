"""The report: one self-contained, interactive HTML page per MLflow experiment.

Per search (``_figures``, plotly): the best so far against wall time and the gain over the
starting point; for per-epoch trainables the learning curve of every trial (stopped trials
marked where they stopped); Optuna's optimisation history, parallel coordinates, slice, contour,
parameter importances (PED-ANOVA and fANOVA) and empirical distribution, drawn from an in-memory
study of the search's trials; the top trials linked to their MLflow runs; and the best trial's
pictures and tables (its family's: the ViT's confusion matrix, a GAN's samples of each epoch
under a slider, DARTS' cells and architecture weights, the Transformer's decoded words). Across
the searches of the experiment (the same space, by tuneforge's convention): the algorithms'
best-so-far curves and a table of final bests, their spread, and the trials each needed to reach
a common target. plotly.js and the pictures are inside the page: the one file
is the whole report, and it opens with no network. ``tuneforge compare`` adds its picture and
table beside the page (:func:`build_comparison_report`).
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import logging
import math
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tuneforge._tracking_uri import check_tracking_uri, resolve_tracking_uri
from tuneforge.dashboards import _figures, mlflow_ui
from tuneforge.dashboards._data import SearchData, best_so_far, load_searches
from tuneforge.dashboards._plots import comparison_png
from tuneforge.schema import Metrics, TrialStatus

__all__ = ["AlgorithmSummary", "build_comparison_report", "build_report", "param_importances",
           "summarise_algorithms"]

logger = logging.getLogger(__name__)

_REPORT_FILE = "report.html"
REPORT_ARTIFACT = "report/index.html"
"""Where a search's parent run keeps its report: MLflow's artifact view shows it."""
_COMPARISON_PNG, _COMPARISON_CSV, _COMPARISON_MD = "comparison.png", "comparison.csv", "comparison.md"
_TOP_TRIALS = 10


@dataclass(frozen=True)
class AlgorithmSummary:
    """How one algorithm did over its searches of the same space."""

    algo: str
    n_searches: int
    final_best_mean: float
    final_best_std: float
    trials_to_target: float | None
    """Median over its searches of the trials needed to reach the target; None if fewer than
    half of them reached it."""
    curves: np.ndarray
    """Best so far, shape (n_searches, n_trials), NaN-padded."""
    seconds_per_suggestion: float | None = None
    """Mean over its searches of the time the algorithm took per suggestion, where recorded."""


def _curves(searches: Sequence[SearchData]) -> np.ndarray:
    length = max(len(s.trials) for s in searches)
    rows = [best_so_far(s.values(), s.mode) for s in searches]
    return np.array([np.pad(r, (0, length - len(r)), constant_values=np.nan) for r in rows])


def _trials_to_reach(curve: np.ndarray, target: float, mode: str) -> int | None:
    reached = curve >= target if mode == "max" else curve <= target
    return int(np.argmax(reached)) + 1 if reached.any() else None


def summarise_algorithms(searches: Sequence[SearchData]) -> tuple[list[AlgorithmSummary], float]:
    """Per algorithm: final best (mean, std), trials to reach the target, best-so-far curves.

    The target is the median over all searches of their final best, so it is reached by about
    half of them and "trials to target" says which algorithms get there sooner.
    """
    mode = searches[0].mode
    finals = {s.run_id: best_so_far(s.values(), mode)[-1] for s in searches if len(s.trials)}
    target = float(np.nanmedian(list(finals.values())))
    summaries = []
    for algo in sorted({s.algo for s in searches}):
        own = [s for s in searches if s.algo == algo and s.trials]
        curves = _curves(own)
        finals_of = np.array([finals[s.run_id] for s in own])
        reached = [_trials_to_reach(curve, target, mode) for curve in curves]
        hits = [n for n in reached if n is not None]
        timings = [s.metrics[Metrics.SECONDS_PER_SUGGESTION] for s in own
                   if Metrics.SECONDS_PER_SUGGESTION in s.metrics]
        summaries.append(AlgorithmSummary(
            algo=algo, n_searches=len(own), final_best_mean=float(np.nanmean(finals_of)),
            final_best_std=float(np.nanstd(finals_of)),
            trials_to_target=float(np.median(hits)) if len(hits) * 2 >= len(own) else None,
            curves=curves, seconds_per_suggestion=float(np.mean(timings)) if timings else None))
    return summaries, target


def param_importances(search: SearchData) -> dict[str, dict[str, float]]:
    """Each param's importance (shares summing to 1) by PED-ANOVA and by fANOVA, from Optuna,
    keyed by the evaluator's name; empty with too few scored trials or no recorded space."""
    return _figures.importances(_figures.study_of(search))


# -- HTML ----------------------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: .9em; }
th, td { border: 1px solid #ddd; padding: .3em .6em; text-align: left; }
th { background: #f4f4f4; } img { max-width: 100%; display: block; margin: .8em 0; }
.meta { color: #666; font-size: .9em; } .plot { margin: 1em 0; }
.slides input { width: 60%; } .slides .caption { color: #666; font-size: .9em; margin-left: 1em; }
"""
_SLIDES_JS = """
function tuneforgeSlide(input) {
  const box = input.closest('.slides');
  const [path, src] = JSON.parse(box.querySelector('script').textContent)[input.value];
  box.querySelector('img').src = src;
  box.querySelector('.caption').textContent = path;
}
"""
_PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}


def _plot(figure: object) -> str:
    """A plotly figure as a div of the page (plotly.js is in the page's head, once)."""
    return "<div class='plot'>" + figure.to_html(full_html=False, include_plotlyjs=False,
                                                 config=_PLOTLY_CONFIG) + "</div>"


def _data_uri(png: bytes) -> str:
    return f"data:image/png;base64,{base64.b64encode(png).decode()}"


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="{_data_uri(png)}">'


def _pictures(folder: str, pictures: Sequence[tuple[str, bytes]]) -> str:
    """A folder's pictures: the one, or the newest under a slider that goes back through the
    others (a GAN's samples of each epoch)."""
    path, newest = pictures[-1]
    if len(pictures) == 1:
        return f"<h3>Best trial: {html.escape(path)}</h3>" + _img(newest, path)
    frames = json.dumps([[p, _data_uri(png)] for p, png in pictures]).replace("</", "<\\/")
    return (f"<h3>Best trial: {html.escape(folder)} ({len(pictures)} pictures)</h3>"
            f"<div class='slides'>{_img(newest, path)}"
            f"<input type='range' min='0' max='{len(pictures) - 1}' value='{len(pictures) - 1}' "
            f"aria-label='{html.escape(folder)}' oninput='tuneforgeSlide(this)'>"
            f"<span class='caption'>{html.escape(path)}</span>"
            f"<script type='application/json'>{frames}</script></div>")


def _csv_table(path: str, rows: Sequence[Sequence[str]]) -> str:
    """A trial's CSV artifact (header first) as a table under its path."""
    return (f"<h3>Best trial: {html.escape(path)}</h3>"
            + _table(rows[0], ([html.escape(cell) for cell in row] for row in rows[1:])))


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Cells are HTML already (escape text before)."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return "—" if not math.isfinite(value) else f"{value:.4g}"
    return html.escape(str(value))


def _run_link(ui: str, search: SearchData, run_id: str, text: str) -> str:
    return _link(mlflow_ui.run_url(ui, search.experiment_id, run_id), text)


def _trials_links(ui: str, search: SearchData) -> str:
    """Links to the search's trials in the MLflow UI: ranked in a table, and in its charts."""
    table = mlflow_ui.trials_url(ui, search.experiment_id, search.run_id)
    charts = mlflow_ui.trials_url(ui, search.experiment_id, search.run_id, charts=True)
    return f"{_link(table, 'the trials, ranked')}, {_link(charts, 'their charts')}"


def _link(url: str, text: str) -> str:
    return f'<a href="{html.escape(url)}">{html.escape(text)}</a>'


def _comparison_section(searches: Sequence[SearchData]) -> str:
    summaries, target = summarise_algorithms(searches)
    metric, mode = searches[0].metric, searches[0].mode
    rows = [[html.escape(s.algo), str(s.n_searches), _fmt(s.final_best_mean), _fmt(s.final_best_std),
             _fmt(s.trials_to_target) if s.trials_to_target is not None else "not reached by half",
             _fmt(s.seconds_per_suggestion) if s.seconds_per_suggestion is not None else "—"]
            for s in summaries]
    return (f"<h2>Algorithms compared</h2><p>{len(searches)} searches of {html.escape(metric)} "
            f"({mode}). Target: {_fmt(target)}, the median final best.</p>"
            + _plot(_figures.comparison({s.algo: s.curves for s in summaries}, metric))
            + _table(["algorithm", "searches", f"final best {metric} (mean)", "std",
                      "trials to target (median)", "seconds per suggestion"], rows))


def _trial_counts(search: SearchData) -> str:
    """``20 trials (12 stopped early, 1 failed, 87 epochs in all)``: what a scheduler saved."""
    stopped = sum(t.stopped for t in search.trials)
    failed = sum(t.status == TrialStatus.FAILED.value for t in search.trials)
    details = [f"{stopped} stopped early"] if stopped else []
    details += [f"{failed} failed"] if failed else []
    total = search.metrics.get(Metrics.TOTAL_ITERATIONS)
    if stopped and total is not None:
        details.append(f"{total:.0f} epochs in all")
    return f"{len(search.trials)} trials" + (f" ({', '.join(details)})" if details else "")


def _against_start(search: SearchData) -> str:
    """``, the default config 0.9807 (gain +0.0021)``: the best against the starting point."""
    start, gain = search.metrics.get(Metrics.START_SCORE), search.metrics.get(Metrics.GAIN_OVER_START)
    if search.start_point is None or start is None or gain is None:
        return ""
    return f", {html.escape(search.start_point)} {_fmt(start)} (gain {gain:+.4g})"


def _search_section(search: SearchData, ui: str) -> str:
    best = search.best()
    best_text = _fmt(best.metrics[search.metric]) if best else "—"
    title = (f"<h2>Search {_run_link(ui, search, search.run_id, search.run_name)}</h2>"
             f"<p class='meta'>algorithm {html.escape(search.algo)}, seed {html.escape(search.seed)}, "
             f"{_trial_counts(search)}, status {html.escape(search.status)}; "
             f"best {html.escape(search.metric)} {best_text}{_against_start(search)}</p>"
             f"<p class='meta'>In the MLflow UI: {_trials_links(ui, search)}</p>")
    if search.status == "INTERRUPTED" and search.results:
        title += (f"<p class='meta'>Interrupted; continue it with <code>tuneforge resume "
                  f"{html.escape(search.results)}</code></p>")
    if best is None:
        return title + "<p>No trial reported the metric.</p>"
    names = list(search.space.param_names if search.space else best.params)
    study = _figures.study_of(search)
    shares = _figures.importances(study)
    top = [[str(rank), _run_link(ui, search, t.run_id, t.label), _fmt(t.metrics[search.metric]),
            *(_fmt(t.params.get(n)) for n in names)]
           for rank, t in enumerate(search.ranked()[:_TOP_TRIALS], 1)]
    parts = [title, _plot(_figures.best_over_time(search))]
    if any(len(t.curve) > 1 for t in search.trials):
        parts.append(_plot(_figures.learning_curves(search)))
    parts += [_plot(figure) for figure in _figures.optuna_figures(search, study, shares)]
    if shares:
        parts.append(_table(["param", *(f"{name} importance" for name in shares)],
                            [[html.escape(n), *(_fmt(v.get(n)) for v in shares.values())]
                             for n in next(iter(shares.values()))]))
    parts.append(_table(["rank", "trial (MLflow run)", search.metric, *names], top))
    parts += [_pictures(folder, pictures) for folder, pictures in search.best_files.pictures.items()]
    parts += [_csv_table(path, rows) for path, rows in search.best_files.tables.values() if rows]
    return "".join(parts)


def render(experiment: str, searches: Sequence[SearchData], *, tracking_uri: str, ui: str) -> str:
    """The report's HTML for ``searches`` (oldest first) of ``experiment``."""
    sections = [_comparison_section(searches)] if len(searches) > 1 else []
    sections += [_search_section(s, ui) for s in reversed(searches)]
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>tuneforge report: "
            f"{html.escape(experiment)}</title><style>{_STYLE}</style>"
            f"<script>{_plotly_js()}</script><script>{_SLIDES_JS}</script></head><body>"
            f"<h1>tuneforge report: {html.escape(experiment)}</h1>"
            f"<p class='meta'>{len(searches)} search(es) from {html.escape(tracking_uri)}, "
            f"made {time.strftime('%Y-%m-%d %H:%M:%S')}. Links open the MLflow UI at {html.escape(ui)}.</p>"
            + "".join(sections) + "</body></html>")


def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def build_report(experiment: str, *, tracking_uri: str | None = None, out_dir: str | Path | None = None,
                 ui_url: str | None = None, run_ids: Sequence[str] = (), log_to_mlflow: bool = True) -> Path:
    """Write ``<out_dir>/report.html`` for ``experiment`` and return its path.

    ``run_ids`` limits it to those searches (parent runs). The report is also logged to the
    newest search's parent run, as ``report/index.html``. Opens nothing.
    """
    uri, searches = _load_checked(experiment, tracking_uri, run_ids)
    path = _write_report(experiment, searches, tracking_uri=uri,
                         folder=Path(out_dir or Path.cwd() / "reports" / experiment), ui_url=ui_url)
    if log_to_mlflow:
        log_report(path, searches[-1].run_id, uri)
    return path


def log_report(path: Path, run_id: str, tracking_uri: str) -> None:
    """Log the report file ``path`` to the run ``run_id`` as ``report/index.html``."""
    from mlflow import MlflowClient

    folder, name = REPORT_ARTIFACT.split("/")
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / name
        copy.write_bytes(path.read_bytes())
        MlflowClient(tracking_uri).log_artifact(run_id, str(copy), artifact_path=folder)


def _load_checked(experiment: str, tracking_uri: str | None,
                  run_ids: Sequence[str]) -> tuple[str, list[SearchData]]:
    """The store's URI (resolved, and checked before MLflow opens it) and the searches read
    from it, oldest first; ConfigError for a store or an experiment that is not there."""
    uri = resolve_tracking_uri(tracking_uri)
    check_tracking_uri(uri)
    return uri, load_searches(experiment, uri, run_ids=run_ids)


def _write_report(experiment: str, searches: Sequence[SearchData], *, tracking_uri: str, folder: Path,
                  ui_url: str | None) -> Path:
    """Write ``<folder>/report.html`` (the folder is made if missing) and return its path."""
    ui = mlflow_ui.ui_url(tracking_uri, ui_url)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / _REPORT_FILE
    path.write_text(render(experiment, searches, tracking_uri=tracking_uri, ui=ui))
    return path


def build_comparison_report(experiment: str, run_ids: Sequence[str], *, tracking_uri: str,
                            out_dir: str | Path) -> Path:
    """Write the comparison of the searches ``run_ids`` (parent runs of ``experiment``: several
    algorithms, each over a few seeds, all of one space) into ``out_dir``; return that folder.

    ``tuneforge compare`` calls it once, after its last search. It writes four files, and logs
    none of them to MLflow (the caller does, where it wants them):

    - ``report.html``: :func:`build_report`'s page of those searches;
    - ``comparison.png``: each algorithm's best-so-far curves;
    - ``comparison.csv`` and ``comparison.md``: one row per algorithm (searches, final best mean
      and std, the median trials to reach the median final best, seconds per suggestion), as
      :func:`summarise_algorithms` gives them. Empty cells are ``—`` in Markdown, empty in CSV.

    Two algorithms of two seeds each make 4 searches, 2 rows. ConfigError, nothing written, for
    a store that cannot be used or an experiment that holds none of ``run_ids``.
    """
    uri, searches = _load_checked(experiment, tracking_uri, run_ids)
    folder = Path(out_dir)
    _write_report(experiment, searches, tracking_uri=uri, folder=folder, ui_url=None)
    summaries, target = summarise_algorithms(searches)
    metric = searches[0].metric
    (folder / _COMPARISON_PNG).write_bytes(comparison_png({s.algo: s.curves for s in summaries}, metric))
    rows = [{"algorithm": s.algo, "searches": s.n_searches,
             f"final best {metric} (mean)": s.final_best_mean, "std": s.final_best_std,
             f"trials to reach {target:.6g} (median)": s.trials_to_target,
             "seconds per suggestion": s.seconds_per_suggestion} for s in summaries]
    (folder / _COMPARISON_CSV).write_text(_csv(rows))
    (folder / _COMPARISON_MD).write_text(_markdown(rows))
    return folder


def _csv(rows: list[dict[str, object]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _markdown(rows: list[dict[str, object]]) -> str:
    def cell(value: object) -> str:
        if value is None:
            return "—"
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(row[key]) for key in header) + " |" for row in rows]
    return "\n".join(lines) + "\n"
