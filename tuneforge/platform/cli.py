"""The ``tuneforge`` command: a thin shell over :func:`tuneforge.search` and the space model.

A search (and ``tuneforge resume``) exits 0 when a trial scored, and 1 when every trial
failed or none reported a finite metric (the parent run FAILED). Bad input prints one
``error: ...`` line and exits with 2. An interrupted search records what finished, prints the
``tuneforge resume`` command that continues it, and exits with 130 (Ctrl-C) or 143 (SIGTERM).
It prints summaries and errors; a search's live progress is printed by
:mod:`~tuneforge.platform.progress` (for ``tuneforge.search(progress=True)`` too), and
``tuneforge server`` beyond loopback asks for its password on the terminal
(:mod:`~tuneforge.platform.server`). No other module writes to the terminal: they log.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn, get_args, get_type_hints

from tuneforge._checks import did_you_mean
from tuneforge.errors import EXIT_INTERRUPTED, EXIT_TERMINATED, ConfigError, StoreError
from tuneforge.schema import TrialStatus

if TYPE_CHECKING:
    from tuneforge.platform._options import SearchOptions

__all__ = ["main"]

EXIT_NO_SCORE = 1
"""Every trial ended and none scored (each failed, or none reported a finite metric)."""
EXIT_BAD_INPUT = 2
_TOP_TRIALS = 5


def _fmt(value: Any) -> str:
    from tuneforge.platform.progress import format_value

    return format_value(value)


def _params_text(params: dict[str, Any]) -> str:
    return " ".join(f"{name}={_fmt(value)}" for name, value in params.items())


# -- search ------------------------------------------------------------------------------------


class _Progress:
    """The search's progress (:class:`~tuneforge.platform.progress.SearchProgress`); the
    start-up's paused garbage collector resumes when the trials start."""

    def __init__(self) -> None:
        from tuneforge.platform.progress import SearchProgress

        self.printer = SearchProgress()

    def __call__(self, event: Any) -> None:
        from tuneforge.platform.events import RayLost, SearchStarted

        if isinstance(event, RayLost):  # the runner ends the process next, with EXIT_TERMINATED
            print(f"\nerror: this search's Ray lost {event.what}; the search stopped", file=sys.stderr)
            _interrupts.terminated = True
            _interrupts.exit_code()
            return
        if isinstance(event, SearchStarted):
            _end_startup()
            _interrupts.watch(event.experiment_path)
        self.printer(event)


class _Interrupts:
    """Ctrl-C and SIGTERM during a search: the first asks Ray Tune to stop (it saves the
    experiment, the runner records what finished), a second Ctrl-C stops at once. Either way
    the search's ``tuneforge resume`` command is printed, in place of Ray's hint."""

    def __init__(self) -> None:
        self.terminated = False
        self.experiment_path: str | None = None

    def watch(self, experiment_path: str | None = None) -> None:
        """Handle SIGTERM from now on (again after Ray's start, which installs its own)."""
        if experiment_path:
            self.experiment_path = experiment_path
        signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        self.terminated = True
        handler = signal.getsignal(signal.SIGINT)  # Tune's, while it runs: a graceful stop
        if callable(handler) and handler is not signal.default_int_handler:
            handler(signal.SIGINT, frame)
        else:
            raise KeyboardInterrupt

    def exit_code(self) -> int:
        """Print how to continue; the exit code of an interrupted search."""
        from tuneforge.platform.resume import resume_command

        if self.experiment_path:
            print(f"\ninterrupted: finished trials are recorded in MLflow; continue with:\n  "
                  f"{resume_command(self.experiment_path)}", file=sys.stderr)
        else:
            print("\ninterrupted before the search started: nothing was recorded", file=sys.stderr)
        return EXIT_TERMINATED if self.terminated else EXIT_INTERRUPTED


_interrupts = _Interrupts()


def _print_summary(result: Any) -> None:
    from tuneforge.dashboards.mlflow_ui import trials_url, ui_url
    from tuneforge.platform.runner import SCORED

    ranked = result.ranked()
    n_failed = sum(t.status is TrialStatus.FAILED for t in result.trials)
    n_stopped = sum(t.status is TrialStatus.STOPPED for t in result.trials)
    n_unscored = sum(t.status in SCORED for t in result.trials) - len(ranked)
    unscored = f", {n_unscored} without a score (a NaN or infinite {result.metric})" if n_unscored else ""
    print(f"\nSearch {result.status.lower()}: {len(result.trials)} trials, {len(ranked)} scored, "
          f"{n_stopped} stopped early, {n_failed} failed{unscored}.")
    if result.stopped_because:
        print(f"Stopped early: {result.stopped_because}.")
    if result.smoke:
        print("Smoke search: two epochs a trial on a small subset check that the set-up runs end to end; "
              "its scores say nothing of the configs and choose no model. Drop --smoke for a real search.")
    if ranked:
        names = list(ranked[0].params)
        header = ["rank", "trial", result.metric, *names]
        rows = [[str(i + 1), t.trial_id, _fmt(t.metrics[result.metric]),
                 *(_fmt(t.params[n]) for n in names)] for i, t in enumerate(ranked[:_TOP_TRIALS])]
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        print(f"\nTop {len(rows)} trials by {result.metric} ({result.mode}):")
        for row in [header, *rows]:
            print("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        best = result.best
        print(f"\nBest {result.metric}: {_fmt(result.best_score)}  (trial {best.trial_id}, "
              f"MLflow run {best.run_id})")
        print(f"Best config: {_params_text(result.best_config)}")
        if result.gain is not None:
            print(f"Against the start: {result.gain.text()}")
        if result.model_uri:
            print(f"Best model:  {result.model_uri}  (mlflow.pyfunc.load_model or the family's flavour)")
    print(f"Parent run: {result.parent_run_id} in experiment {result.experiment!r}")
    print("\nLook further:")
    ui = ui_url(result.tracking_uri)
    if not result.tracking_uri.startswith(("http://", "https://")):
        print(f"  tuneforge server --tracking-uri {result.tracking_uri}   (the MLflow UI, then open:)")
    print(f"  MLflow UI, the trials ranked: {trials_url(ui, result.experiment_id, result.parent_run_id)}")
    print(f"  their charts:                 "
          f"{trials_url(ui, result.experiment_id, result.parent_run_id, charts=True)}")
    if result.cluster.is_local:
        print(f"  Ray results: {result.experiment_path} (the local Ray and its dashboard stopped "
              "with the search)")
    else:
        print(f"  Ray dashboard: {result.cluster.dashboard_url}")


def _search(args: argparse.Namespace) -> int:
    from tuneforge.platform.runner import search

    options = _search_options(args)
    _begin_startup()  # the progress printer ends the pause when the trials start
    return _exit_code(search(args.space, options, on_event=_Progress()))


def _exit_code(result: Any) -> int:
    _print_summary(result)
    if result.status is TrialStatus.FAILED:
        return EXIT_NO_SCORE
    return 0 if result.status is TrialStatus.FINISHED else _interrupts.exit_code()


# -- resume and runs ----------------------------------------------------------------------------


def _resume(args: argparse.Namespace) -> int:
    from tuneforge.platform.runner import resume

    _begin_startup()
    return _exit_code(resume(args.target, tracking_uri=args.tracking_uri, address=args.address,
                             on_event=_Progress()))


def _runs(args: argparse.Namespace) -> int:
    from tuneforge.dashboards.mlflow_ui import trials_url, ui_url
    from tuneforge.platform.resume import list_searches, resume_command
    from tuneforge.platform.tracking import resolve_tracking_uri

    tracking_uri = resolve_tracking_uri(args.tracking_uri)
    ui = ui_url(tracking_uri)
    runs = list_searches(args.experiment, tracking_uri)
    if not runs:
        print(f"no searches in experiment {args.experiment!r}")
        return 0
    width = max(len(run.name) for run in runs)
    print(f"{'search':<{width}}  {'status':<11}  trials  started              run id")
    for run in runs:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.started_at))
        print(f"{run.name:<{width}}  {run.status:<11}  {run.n_trials:>6}  {started}  {run.run_id}")
        print(f"{'':<{width}}  trials in the MLflow UI: {trials_url(ui, run.experiment_id, run.run_id)}")
        if run.interrupted and run.results:
            print(f"{'':<{width}}  continue with: {resume_command(run.results)}")
    if not tracking_uri.startswith(("http://", "https://")):
        print(f"(the MLflow UI: tuneforge server --tracking-uri {tracking_uri})")
    return 0


# -- spaces and show ---------------------------------------------------------------------------


def _spaces(args: argparse.Namespace) -> int:
    from tuneforge.search_spaces import bundled_spaces, load_space

    for name, path in sorted(bundled_spaces().items()):
        space = load_space(path)
        print(f"{name:<20} {space.trainable:<10} {space.mode} {space.metric:<16} "
              f"{len(space.params)} params, {space.n_dims} dims  {space.description}")
    return 0


def _show(args: argparse.Namespace) -> int:
    from tuneforge.platform.schedulers import epochs_line
    from tuneforge.search_spaces import grid_size, load_space, to_grid

    space = load_space(args.space)
    print(f"{space.name}: {space.description}".rstrip(": "))
    print(f"  source:    {space.source}")
    print(f"  trainable: {space.trainable}")
    print(f"  metric:    {space.metric} ({space.mode})")
    for key, value in space.config.items():
        print(f"  config.{key}: {value}")
    grid = to_grid(space, args.grid_points)
    width = max(len(name) for name in space.param_names)
    for param in space.params:
        print(f"  param {param.name:<{width}}  {param.describe()}  grid: {len(grid[param.name])} values")
    if space.max_epochs or space.grace_period:
        print(f"  epochs:    {epochs_line(space)}")
    if space.start_from:
        print(f"  start_from: {len(space.start_from)} point(s), after the family's default config")
    if space.trial_minutes:
        print(f"  one trial: about {space.trial_minutes:g} min on a 2-CPU machine (the default config, "
              "measured; the space file says how); larger configs take longer")
    print(f"  unit-cube dimensions: {space.n_dims}")
    print(f"  grid size (--grid-points {args.grid_points}): {grid_size(space, args.grid_points)}")
    return 0


# -- server -----------------------------------------------------------------------------------


def _server(args: argparse.Namespace) -> int:
    from tuneforge.dashboards.mlflow_ui import trials_url
    from tuneforge.platform import server
    from tuneforge.platform.resume import newest_search

    config = server.ServerConfig(backend_store_uri=args.backend_store_uri, host=args.host, port=args.port,
                                 artifacts_destination=args.artifacts_destination, workers=args.workers,
                                 insecure=args.insecure)
    command, store = server.server_command(config)
    environment = dict(os.environ)
    if config.needs_auth:
        environment.update(server.auth_environment(store, server.read_admin_password()))
    print(f"MLflow tracking server and UI at {config.url}, store {store}")
    if config.needs_auth:
        print(f"  basic auth: user {server.ADMIN_USERNAME}, the password of ${server.PASSWORD_VARIABLE}; "
              "drivers set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD")
    elif not config.is_loopback:
        print(f"warning: --insecure: no authentication; anyone who reaches {config.host}:{config.port} "
              "can read and change every run in the store", file=sys.stderr)
    print(f"  log searches to it:  tuneforge search SPACE --tracking-uri {config.url}")
    newest = newest_search(store)
    if newest is not None:
        print(f"  the newest search, {newest.name}, its trials: "
              f"{trials_url(config.url, newest.experiment_id, newest.run_id)}")
    if config.host == "127.0.0.1":
        print(f"  from another machine: ssh -L {config.port}:127.0.0.1:{config.port} THIS_HOST, "
              f"then open {config.url}")
    sys.stdout.flush()
    if args.stop_with_ray:
        print(f"  stops when the Ray cluster at {args.stop_with_ray} stops", flush=True)
        return server.serve_while_ray_runs(command, args.stop_with_ray, env=environment)
    os.execve(command[0], command, environment)
    return 0  # not reached: the process is now the MLflow server


# -- compare ----------------------------------------------------------------------------------


def _compare(args: argparse.Namespace) -> int:
    from tuneforge.platform.compare import compare
    from tuneforge.platform.planning import SearchOptions
    from tuneforge.platform.searchers import check_algorithm

    options = SearchOptions(max_concurrent=args.max_concurrent, experiment=args.experiment,
                            tracking_uri=args.tracking_uri, address=args.address,
                            cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
                            smoke=args.smoke, storage=args.storage)
    started = time.monotonic()

    def on_search(result: Any, index: int, total: int) -> None:
        best = f"{result.metric}={_fmt(result.best_score)}" if result.best else "no result"
        name = result.experiment_path.rsplit("/", 1)[-1]
        print(f"[{index:>{len(str(total))}}/{total}] {name}  best {best}  "
              f"({time.monotonic() - started:.0f} s since the start)", flush=True)

    algos = [name.strip() for name in args.algos.split(",") if name.strip()]
    for algo in algos:
        check_algorithm(algo, "--algos")
    print(f"Comparing {', '.join(algos)} on {args.space}: {args.seeds} seeds x {args.trials} trials each")
    result = compare(args.space, algos=algos, budget=args.trials, seeds=args.seeds, options=options,
                     out_dir=args.out, on_search=on_search)
    print()
    print((result.report_dir / "comparison.md").read_text())
    print(f"Report: {result.report_dir / 'report.html'} (picture comparison.png, table comparison.csv); "
          f"logged to MLflow run {result.run_id}")
    return 0


# -- darts ------------------------------------------------------------------------------------


def _darts_retrain(args: argparse.Namespace) -> int:
    from tuneforge.platform.darts_retrain import retrain
    from tuneforge.platform.planning import SearchOptions

    options = SearchOptions(max_concurrent=args.max_concurrent, experiment=args.experiment,
                            tracking_uri=args.tracking_uri, address=args.address,
                            cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
                            storage=args.storage, smoke=args.smoke)
    _begin_startup()
    result = retrain(args.run_id, n_random=args.random, epochs=args.epochs, channels=args.channels,
                     layers=args.layers, seed=args.seed, train_images=args.train_images, options=options,
                     on_event=_Progress())
    code = _exit_code(result.search)
    print(f"\nDerived vs random genotypes (same epochs, data and width; logged on run "
          f"{result.search.parent_run_id}):\n")
    print(result.markdown)
    return code


# -- report -----------------------------------------------------------------------------------


def _report(args: argparse.Namespace) -> int:
    from tuneforge.dashboards import build_report

    path = build_report(args.experiment, tracking_uri=args.tracking_uri, out_dir=args.out,
                        ui_url=args.ui_url)
    print(f"Report: {path}  (also logged to the newest search's MLflow parent run, as report/index.html)")
    return 0


# -- the parser --------------------------------------------------------------------------------


class _OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors (``--trials abc``, a missing argument) are one line,
    ``error: tuneforge search: ...``, and exit 2, like every other bad input; ``--help`` still
    prints the usage."""

    commands: argparse._SubParsersAction | None = None
    """The subcommands' parsers (the top-level parser's), to name a mistyped flag's command."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"error: {self.prog}: {message} (see {self.prog} --help)\n")

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> argparse.Namespace:
        """argparse's, but an unknown flag is refused by its command's parser, with the closest
        flag it has: "unrecognized arguments: --trails 3; did you mean '--trials'?"."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            choices = self.commands.choices if self.commands else {}
            command = choices.get(getattr(parsed, "command", None), self)
            flag = next((extra.split("=")[0] for extra in extras if extra.startswith("-")), "")
            hint = did_you_mean(flag, command._option_string_actions) if flag else ""
            command.error(f"unrecognized arguments: {' '.join(extras)}{hint}")
        return parsed


_Commands = argparse._SubParsersAction
"""What ``add_subparsers`` returns, to which each command adds its parser."""
_SPACE_HELP = "a space YAML file or the name of a bundled space"


def _parser() -> argparse.ArgumentParser:
    from tuneforge import __version__

    parser = _OneLineParser(prog="tuneforge", description="Ray Tune searches, tracked in MLflow.")
    parser.add_argument("--version", action="version", version=f"tuneforge {__version__}")
    commands = parser.commands = parser.add_subparsers(dest="command", required=True)
    for add_command in _COMMANDS:
        add_command(commands)
    return parser


def _add_search(commands: _Commands) -> None:
    run = commands.add_parser("search", help="run a search on a space",
                              description="Run a search on Ray Tune, recorded in MLflow.",
                              epilog="examples: tuneforge search rf-digits --trials 20; tuneforge search "
                                     "vit-digits --smoke --trials 4; tuneforge search vit-mnist --algo bayes "
                                     "--time-budget 30m")
    run.add_argument("space", help=_SPACE_HELP)
    _add_option_flags(run)
    run.set_defaults(handler=_search)


def _add_option_flags(parser: argparse.ArgumentParser) -> None:
    """A flag for each :class:`SearchOptions` field that is one: ``--max-concurrent`` for
    ``max_concurrent``, with the field's help and metavar (its metadata), default and type."""
    from tuneforge.platform._options import FLAG, SearchOptions, flag_fields

    types = get_type_hints(SearchOptions)
    for option in flag_fields():
        parser.add_argument(f"--{option.name.replace('_', '-')}", default=option.default,
                            **_reading(types[option.name]), **option.metadata[FLAG])


def _reading(hint: Any) -> dict[str, Any]:
    """How argparse reads a value of type ``hint``: a bool's flag is a switch, ``int | None``'s
    value an int, ``str | Path | None``'s the text as given."""
    kind = next(member for member in get_args(hint) or (hint,) if member is not type(None))
    if kind is bool:
        return {"action": "store_true"}
    return {} if kind is str else {"type": kind}


def _search_options(args: argparse.Namespace) -> SearchOptions:
    """The :class:`SearchOptions` of ``tuneforge search``'s flags."""
    from tuneforge.platform._options import SearchOptions, flag_fields

    return SearchOptions(**{option.name: getattr(args, option.name) for option in flag_fields()})


def _add_resume(commands: _Commands) -> None:
    resuming = commands.add_parser(
        "resume", help="continue an interrupted search",
        description="Continue an interrupted search (its driver killed, Ctrl-C, a reboot) through Ray "
                    "Tune's Tuner.restore: ended trials are kept, running ones resume from their last "
                    "checkpoint, the restored search algorithm suggests the rest; the same MLflow parent "
                    "run and child runs continue.",
        epilog="example: tuneforge resume vit-mnist (the experiment's newest interrupted search)")
    resuming.add_argument("target", help="the search's Ray results folder (ray_results/<space>-<algo>-"
                                          "<time>), or its MLflow experiment (its newest interrupted search)")
    resuming.add_argument("--tracking-uri", help="MLflow store, when TARGET is an experiment (default: "
                                                 "as searches)")
    resuming.add_argument("--address", help="Ray cluster (default: the search's, else a local Ray)")
    resuming.set_defaults(handler=_resume)


def _add_runs(commands: _Commands) -> None:
    runs = commands.add_parser("runs", help="list an experiment's searches, their status and how to "
                                            "continue an interrupted one",
                               description="List an experiment's searches (newest first): status, "
                                           "algorithm, trials, best score, and the command that "
                                           "continues an interrupted one.",
                               epilog="example: tuneforge runs rf-digits")
    runs.add_argument("experiment", help="the MLflow experiment (by default a search's space name)")
    runs.add_argument("--tracking-uri", help="MLflow store (default: as searches)")
    runs.set_defaults(handler=_runs)


def _add_spaces(commands: _Commands) -> None:
    commands.add_parser("spaces", help="list the bundled spaces",
                        description="List the spaces shipped with tuneforge, with what each searches; "
                                    "`tuneforge show NAME` prints one in full.",
                        epilog="example: tuneforge spaces").set_defaults(handler=_spaces)


def _add_compare(commands: _Commands) -> None:
    comparison = commands.add_parser(
        "compare", help="run several algorithms on one space, same budget and seeds, and report",
        description="Compare search algorithms on one space: every algorithm runs the same budget "
                    "for each seed; each search is its own MLflow parent run; one report.",
        epilog="example: tuneforge compare branin --algos bayes,random --trials 20 --seeds 3")
    comparison.add_argument("space", help=_SPACE_HELP)
    comparison.add_argument("--algos", default="bayes,optuna-tpe,optuna-gp,random",
                            help="comma-separated (default: bayes,optuna-tpe,optuna-gp,random)")
    comparison.add_argument("--trials", "--budget", type=int, default=50,
                            help="trials per search, as `search --trials` (default 50; --budget is an alias)")
    comparison.add_argument("--seeds", type=int, default=5,
                            help="searches per algorithm, seeds 0, 1, ... (default 5)")
    comparison.add_argument("--max-concurrent", type=int, help="most trials running at once in a search")
    comparison.add_argument("--experiment", help="MLflow experiment (default: SPACE-compare)")
    comparison.add_argument("--tracking-uri", help="MLflow store (default: as searches)")
    comparison.add_argument("--address", help="Ray cluster (default: $RAY_ADDRESS, else a local Ray)")
    comparison.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs per trial (default 1)")
    comparison.add_argument("--gpus-per-trial", type=float, default=0.0, help="GPUs per trial (default 0)")
    comparison.add_argument("--smoke", action="store_true",
                            help="per-epoch families: 2 epochs a trial on a small subset, to check the "
                                 "set-up (its scores choose nothing)")
    comparison.add_argument("--storage", help="Ray Tune results folder (default: ./ray_results)")
    comparison.add_argument("--out", help="report folder (default: ./reports/EXPERIMENT-ID)")
    comparison.set_defaults(handler=_compare)


def _add_darts(commands: _Commands) -> None:
    darts = commands.add_parser("darts", help="DARTS: retrain a searched architecture",
                                description="DARTS commands (the supernet search is `tuneforge search "
                                            "darts-fashion-mnist`, or any space of trainable darts).",
                                epilog="example: tuneforge darts retrain PARENT_RUN_ID --smoke")
    retraining = darts.add_subparsers(dest="darts_command", required=True).add_parser(
        "retrain", help="train a search's derived genotype and random ones from scratch, and compare",
        description="Train the genotype a darts trial derived (RUN_ID: its MLflow run, or its search's "
                    "parent run for the best trial) and N random genotypes of the same space from "
                    "scratch, same budget, as Tune trials; the comparison of their test accuracies and "
                    "sizes goes on the new search's parent run.",
        epilog="example: tuneforge darts retrain PARENT_RUN_ID --random 5 --epochs 10")
    retraining.add_argument("run_id", metavar="RUN_ID",
                            help="a darts trial's run id, or its search's parent run id")
    retraining.add_argument("--random", type=int, default=5,
                            help="random genotypes to train beside it (default 5)")
    retraining.add_argument("--epochs", type=int, default=10, help="epochs per network (default 10)")
    retraining.add_argument("--channels", type=int, default=16,
                            help="the networks' initial channels (default 16)")
    retraining.add_argument("--layers", type=int, default=8, help="the networks' cells (default 8)")
    retraining.add_argument("--seed", type=int, default=0,
                            help="seeds the random genotypes and every network's training (default 0)")
    retraining.add_argument("--train-images", type=int,
                            help="train on the first N training images (default: as the supernet trial)")
    retraining.add_argument("--smoke", action="store_true", help="2 epochs on a small subset: seconds")
    retraining.add_argument("--experiment", help="MLflow experiment (default: the source's, with -retrain)")
    retraining.add_argument("--tracking-uri", help="MLflow store (default: as searches)")
    retraining.add_argument("--address", help="Ray cluster (default: $RAY_ADDRESS, else a local Ray)")
    retraining.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs per trial (default 1)")
    retraining.add_argument("--gpus-per-trial", type=float, default=0.0, help="GPUs per trial (default 0)")
    retraining.add_argument("--max-concurrent", type=int, help="most trials running at once")
    retraining.add_argument("--storage", help="Ray Tune's storage (default: ./ray_results)")
    retraining.set_defaults(handler=_darts_retrain)


def _add_report(commands: _Commands) -> None:
    report = commands.add_parser("report", help="write an HTML report of an experiment's searches",
                                 description="Build a self-contained HTML report from MLflow.",
                                 epilog="example: tuneforge report rf-digits")
    report.add_argument("experiment", help="the MLflow experiment (a search's --experiment, by default "
                                           "its space's name)")
    report.add_argument("--out", help="folder for report.html (default: ./reports/EXPERIMENT)")
    report.add_argument("--tracking-uri", help="MLflow store (default: as searches)")
    report.add_argument("--ui-url", help="MLflow UI the links open (default: the tracking server, "
                                         "else http://127.0.0.1:5000)")
    report.set_defaults(handler=_report)


def _add_server(commands: _Commands) -> None:
    server = commands.add_parser("server", help="serve the MLflow UI and tracking API on the store",
                                 description="Start an MLflow tracking server (UI, API and artifacts) "
                                             "on tuneforge's store.",
                                 epilog="example: tuneforge server (then open http://127.0.0.1:5000)")
    server.add_argument("--tracking-uri", "--backend-store-uri", dest="backend_store_uri",
                        help="database of runs, as every other command names it (default: as searches: "
                             "$MLFLOW_TRACKING_URI if it is a database, else sqlite:///mlflow.db); "
                             "postgresql://... works too; --backend-store-uri is MLflow's name for it")
    server.add_argument("--host", default="127.0.0.1",
                        help="interface to bind (default 127.0.0.1; 0.0.0.0 for every interface). Beyond "
                             "loopback, MLflow's basic auth is on: user admin, the password of "
                             "$TUNEFORGE_SERVER_PASSWORD or asked for on a terminal")
    server.add_argument("--insecure", action="store_true",
                        help="beyond loopback, serve without authentication: anyone who reaches the port "
                             "reads and changes every run")
    server.add_argument("--port", type=int, default=5000, help="port (default 5000)")
    server.add_argument("--artifacts-destination",
                        help="where served artifacts are kept (default: mlartifacts/ beside the store)")
    server.add_argument("--workers", type=int, default=2, help="server processes (default 2)")
    server.add_argument("--stop-with-ray", metavar="RAY_ADDRESS",
                        help="stop when the Ray cluster at this GCS address (host:port) stops; "
                             "how a cluster's head runs it")
    server.set_defaults(handler=_server)


def _add_show(commands: _Commands) -> None:
    from tuneforge.search_spaces.adapters import DEFAULT_GRID_POINTS

    show = commands.add_parser("show", help="print a space as parsed, with its grid size",
                               description="Print a space as tuneforge parsed it: its trainable, metric, "
                                           "fixed config, each searched param with its range, its "
                                           "epochs and starting points, the cost of one trial where "
                                           "measured, and its grid size.",
                               epilog="example: tuneforge show vit-mnist")
    show.add_argument("space", help=_SPACE_HELP)
    show.add_argument("--grid-points", type=int, default=DEFAULT_GRID_POINTS)
    show.set_defaults(handler=_show)


_COMMANDS = (_add_search, _add_resume, _add_runs, _add_spaces, _add_compare, _add_darts, _add_report,
             _add_server, _add_show)
"""Each adds one subcommand and its handler, in the order ``tuneforge --help`` lists them."""


class _NoTrialFailures(logging.Filter):
    """Drops Tune's log of each failed trial (a full traceback): the progress line and the
    trial's MLflow run (tag ``tuneforge.error``, artifact ``error.txt``) report it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith((
            "Trial task failed", "Trials did not complete",
            # Its hint names Tuner.restore; the CLI prints `tuneforge resume ...` instead.
            "Experiment has been interrupted", "Stop signal received"))


def _configure_logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("ray.tune").setLevel(logging.WARNING)
    # After an interrupt, Tune warns about every trial that never started.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    for name in ("ray.tune.execution.tune_controller", "ray.tune.tune"):
        logging.getLogger(name).addFilter(_NoTrialFailures())


def _begin_startup() -> None:
    """Start-up (imports of Ray, MLflow, scikit-learn) allocates ~500k objects that live as long
    as the process; with the cyclic collector on, full collections walk them ~8 times, ~1 s in
    all. It is paused until the search starts, then those objects are frozen out of its sight.
    ``search`` only: other commands (``compare``'s many searches) keep the collector on."""
    gc.disable()


def _end_startup() -> None:
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tuneforge`` console script; returns the exit code."""
    args = _parser().parse_args(argv)
    _configure_logging()
    _interrupts.watch()
    try:
        return args.handler(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NO_SCORE
    except KeyboardInterrupt:
        return _interrupts.exit_code()
    finally:
        gc.enable()


if __name__ == "__main__":
    sys.exit(main())
