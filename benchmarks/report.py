"""The interactive report of a large search (issue 25; target: a 2,000-trial search's report
builds in under 15 s).

A random search of ``branin`` (``--trials`` trials, 2 at a time, seed 0) into a store of its own
(kept with ``--keep DIR``, and read again from there by a later run), then ``build_report`` of
that experiment timed ``--repeats`` times in this process (the first includes importing plotly
and Optuna's visualisations: reported apart), with the page's size, its plots and the time of
each part (reading MLflow, the figures, writing). Prints Markdown.

    .venv/bin/python benchmarks/report.py [--trials 2000] [--repeats 3] [--keep /tmp/report-bench]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from pathlib import Path

from _common import machine, search_in_folder, tracking_uri_in

TARGET_S = 15.0
PLOT_DIV = "class='plot'"


def _search(folder: Path, trials: int) -> None:
    if (folder / "done").exists():
        print(f"reusing the search in {folder}")
        return
    started = time.monotonic()
    result = search_in_folder("branin", folder, 1.0, algo="random", trials=trials, seed=0, max_concurrent=2,
                              progress=False, experiment="branin-report")
    print(f"search: {len(result.trials)} trials in {time.monotonic() - started:.0f} s")
    (folder / "done").write_text("")


def _parts(profile: cProfile.Profile) -> dict[str, float]:
    """Seconds spent in each part of build_report, from a profile of one call."""
    stats = pstats.Stats(profile)
    wanted = {"load_searches": "reading MLflow", "_search_section": "figures and page (per search)",
              "importances": "importances (PED-ANOVA, fANOVA)", "log_report": "logging to MLflow"}
    parts = {}
    for (_, _, function), row in stats.stats.items():  # type: ignore[attr-defined]
        if function in wanted:
            parts[wanted[function]] = parts.get(wanted[function], 0.0) + row[3]
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="folder for the search's store (reused if it is there)")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="tuneforge-report-bench-"))
    _search(folder, args.trials)
    started = time.monotonic()
    from tuneforge.dashboards import build_report

    imports_s = time.monotonic() - started
    times, parts, page = [], {}, None
    for repeat in range(args.repeats):
        profile = cProfile.Profile() if repeat == args.repeats - 1 else None
        started = time.monotonic()
        if profile:
            profile.enable()
        page = build_report("branin-report", tracking_uri=tracking_uri_in(folder), out_dir=folder / "report")
        if profile:
            profile.disable()
            parts = _parts(profile)
        times.append(time.monotonic() - started)
    text = page.read_text()
    print(f"## The report of a {args.trials}-trial search\n\n{machine('plotly', 'optuna', 'mlflow')}\n")
    print(f"Command: `.venv/bin/python benchmarks/report.py --trials {args.trials} "
          f"--repeats {args.repeats}`\n")
    print("| build | seconds |\n|---|---|")
    for index, seconds in enumerate(times, 1):
        first = " (the first: plotly and Optuna imported in it)" if index == 1 else ""
        print(f"| {index}{first} | {seconds:.1f} |")
    print(f"| imports of tuneforge.dashboards before them | {imports_s:.1f} |")
    print("\nLast build's parts (profiled, so a little slower): "
          + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in parts.items()))
    print(f"\nPage: {len(text) / 1e6:.1f} MB, {text.count(PLOT_DIV)} plots.")
    worst = max(times)
    print(f"\nTarget: a {args.trials}-trial search's report in under {TARGET_S:.0f} s: "
          f"{'PASS' if worst < TARGET_S else 'FAIL'} (slowest build {worst:.1f} s)")


if __name__ == "__main__":
    main()
