"""Connecting to Ray: a local instance started for the search, or a running cluster.

The address follows Ray's own convention: an explicit address, else ``RAY_ADDRESS``, else a
local Ray started for the search (and stopped after it). Ray 2.60 turns token authentication
on for local clusters; connecting to an explicit address needs ``RAY_AUTH_MODE=token`` and,
without it, fails only after ~20 s, as does a wrong token, and an unreachable address retries
for minutes. So an explicit address is probed first (a TCP connect, then one authenticated GCS
call) and every problem becomes one ConfigError within seconds.

A cluster started by ``ray up`` grows: its autoscaler starts worker nodes (GPU ones, say) only
when trials ask for them. So a trial's resources are checked against the alive nodes and then
against the node types of its cluster launcher config (the ``ray up`` YAML, or the copy ``ray
up`` leaves on the head node); only what neither could ever hold is refused.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge._checks import is_int, is_number
from tuneforge.errors import ConfigError
from tuneforge.search_spaces import read_yaml

__all__ = ["Cluster", "NodeType", "TrialResources", "autoscaler_node_types", "check_trial_resources",
           "concurrent_trials", "default_cluster_config", "ray_cluster", "resolve_address",
           "watching_local_ray"]

logger = logging.getLogger(__name__)

_CONNECT_TIMEOUT_S = 3.0
_DEFAULT_GCS_PORT = 6379
_NAMESPACE = "tuneforge"
_NOT_SHIPPED = (".git", ".venv", "__pycache__", "ray_results", "mlruns", "mlartifacts", "*.db")
"""Not sent to the nodes with a user's trainable folder: history, environments, results."""
_BOOTSTRAP_CONFIG = "ray_bootstrap_config.yaml"
"""Where ``ray up`` puts the cluster config, node resources filled in, in the head node's home
(ray/autoscaler/_private/commands.py, ``--autoscaling-config=~/ray_bootstrap_config.yaml``)."""
_RAY_DEFAULT_MAX_WORKERS = 2
"""The global ``max_workers`` of a config that sets none (Ray's provider defaults.yaml)."""
_LOCAL_NODE_TYPE = "local.cluster.node"
"""The one node type Ray gives a ``provider: {type: local}`` config, which may declare none."""
_EPSILON = 1e-6
"""Ray counts resources in units of 1e-4: 4 CPUs hold 40 bundles of 0.1 though 4 / 0.1 may
come out a hair under 40 in floating point."""


@dataclass(frozen=True)
class Cluster:
    """The Ray cluster a search runs on."""

    address: str
    """GCS address (``host:port``) that other drivers can pass to ``--address``."""
    dashboard_url: str | None
    is_local: bool
    """True when Ray was started for this search and stops with it."""
    node_resources: tuple[Mapping[str, float], ...]
    """Resources of each alive node (``{"CPU": 2.0, "GPU": 1.0, ...}``)."""
    job_name: str
    """How this driver appears in the dashboard's job list (its ``job_name`` metadata)."""
    node_types: tuple[NodeType, ...] = ()
    """The node types its autoscaler can start; empty when unknown (a local Ray, say)."""
    cluster_config: Path | None = None
    """The cluster launcher config ``node_types`` were read from."""


@dataclass(frozen=True)
class NodeType:
    """One entry of a cluster launcher config's ``available_node_types``."""

    name: str
    resources: Mapping[str, float] | None
    """Ray resources of one such node (``{"CPU": 4, "GPU": 1}``); None when the config declares
    none (Ray detects them when the node starts), so it is counted as holding nothing."""
    min_workers: int
    max_workers: int
    """At most this many of them beside the head (capped by the config's global max_workers)."""
    is_head: bool

    def describe(self) -> str:
        """``'gpu_worker' (4 CPUs, 1 GPU; 0 to 4 of them)``, for messages."""
        if self.resources is None:
            return f"node type {self.name!r} declares no resources"
        count = "the head" if self.is_head and not self.max_workers else (
            f"{self.min_workers} to {self.max_workers} of them")
        return f"{self.name!r} ({_cpus_gpus(self.resources)}; {count})"


@dataclass(frozen=True)
class TrialResources:
    """What one trial asks for: ``workers`` bundles of ``{CPU: cpus, GPU: gpus}``.

    ``workers == 1`` is an ordinary trial, on one node. More is a Ray Train data-parallel
    trial, whose workers a placement group may spread over several nodes.
    """

    cpus: float
    gpus: float
    workers: int = 1

    def bundle(self) -> dict[str, float]:
        """One worker's resources, by Ray's names."""
        return {"CPU": self.cpus, "GPU": self.gpus}

    def describe(self) -> str:
        """``1 CPU, 0 GPUs`` or ``2 workers x (1 CPU, 0.5 GPU)``, for messages."""
        one = _cpus_gpus(self.bundle())
        return one if self.workers == 1 else f"{self.workers} workers x ({one})"

    def flags(self) -> str:
        """The CLI options that asked for it, for error messages."""
        flags = f"--cpus-per-trial {self.cpus:g} --gpus-per-trial {self.gpus:g}"
        return flags if self.workers == 1 else f"{flags} --workers-per-trial {self.workers}"


def _amount(value: float, unit: str) -> str:
    return f"{value:g} {unit}" + ("" if 0 < value <= 1 else "s")


def _cpus_gpus(resources: Mapping[str, float]) -> str:
    return f"{_amount(resources.get('CPU', 0), 'CPU')}, {_amount(resources.get('GPU', 0), 'GPU')}"


def resolve_address(address: str | None) -> str | None:
    """``address``, else ``RAY_ADDRESS``, else None (start a local Ray)."""
    return address or os.environ.get("RAY_ADDRESS") or None


def _host_port(address: str) -> tuple[str, int]:
    bare = address.removeprefix("ray://")
    host, _, port = bare.rpartition(":")
    if not host:
        return bare, _DEFAULT_GCS_PORT
    try:
        return host, int(port)
    except ValueError:
        raise ConfigError(f"--address: {address!r} is not host:port") from None


def _check_reachable(address: str) -> None:
    host, port = _host_port(address)
    try:
        with socket.create_connection((host, port), timeout=_CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"--address: cannot reach a Ray cluster at {address} ({reason}); "
                          "is it running (`ray status`)?") from None


def _check_authenticated(address: str) -> None:
    """One GCS call, which fails in under a second where ``ray.init`` would take 20 s."""
    from ray._private.authentication.authentication_token_setup import (
        maybe_enable_token_auth_if_token_available,
    )
    from ray._raylet import GcsClient
    from ray.exceptions import AuthenticationError

    # Ray does this itself only for local and "auto" addresses.
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    try:
        with _native_stderr_silenced():
            GcsClient(address=address)
    except AuthenticationError:
        raise ConfigError(
            f"--address: the Ray cluster at {address} rejected this machine's auth token; run "
            "`ray get-auth-token` on the head node and put the token in ~/.ray/auth_token "
            "(or RAY_AUTH_TOKEN)") from None


@contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Ray's C++ GCS client logs a refused token straight to file descriptor 2; the
    ConfigError raised instead says it once, in one line."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@contextmanager
def _ray_processes_in_a_session_of_their_own() -> Iterator[None]:
    """Within the block, the processes Ray starts for a local cluster (GCS, raylet, dashboard)
    start in a session of their own. Ray starts them in the driver's process group, where a
    signal to the group (systemd, SLURM, Kubernetes, ``timeout``) killed them before the driver
    could stop the search; now it reaches the driver alone, which stops the search as after a
    signal to it, then shuts them down. They still die with the driver however it ends (Ray's
    kernel fate-sharing)."""
    from ray._private import services

    original = services.ConsolePopen

    class InTheirOwnSession(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **{**kwargs, "start_new_session": True})

    services.ConsolePopen = InTheirOwnSession
    try:
        yield
    finally:
        services.ConsolePopen = original


_REAPER = """\
import os, signal, sys, time
parent = os.getppid()
while os.getppid() == parent:
    time.sleep(0.5)
for group in map(int, sys.argv[1:]):
    try:
        os.killpg(group, signal.SIGKILL)
    except OSError:
        pass
"""


def _reaper_of_this_ray() -> subprocess.Popen:
    """A process that outlives this driver by an instant if it dies without shutting its local
    Ray down (SIGKILL, a crash): it then kills the process groups of that Ray's processes, each
    one's own (see :func:`_ray_processes_in_a_session_of_their_own`), so that what they started
    (the raylet's agents and workers, the dashboard's modules) goes with them. Ray's kernel
    fate-sharing ends the GCS and the raylet, but their agents outlived them. The driver kills
    the reaper before its own shutdown of Ray."""
    import ray

    node = ray._private.worker._global_node
    groups = sorted({info.process.pid for infos in node.all_processes.values() for info in infos})
    return subprocess.Popen([sys.executable, "-c", _REAPER, *map(str, groups)], start_new_session=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


_WATCH_EVERY_S = 0.5


@contextmanager
def watching_local_ray(on_lost: Callable[[str], None]) -> Iterator[None]:
    """Within the block, a thread checks twice a second that the local Ray this process started
    still has its GCS and raylet, and calls ``on_lost(what)`` (from that thread, once) when one
    has ended (killed, crashed): ``what`` names it, its pid and how it ended. The driver's main
    thread is then stuck in a Ray call that returns only when Ray's C++ client ends the process,
    60 s later (exit 1, nothing recorded), so ``on_lost`` must record what it can and end the
    process itself. Joined to a running cluster (``--address``), this process started no GCS or
    raylet and nothing is watched."""
    import ray
    from ray._private import ray_constants

    node = ray._private.worker._global_node
    kinds = (ray_constants.PROCESS_TYPE_GCS_SERVER, ray_constants.PROCESS_TYPE_RAYLET)
    vital = [(kind, info.process) for kind in kinds
             for info in (node.all_processes.get(kind, ()) if node is not None else ())]
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(_WATCH_EVERY_S):
            for kind, process in vital:
                code = process.poll()
                if code is not None:
                    on_lost(f"its {kind} (pid {process.pid}, {_how_it_ended(code)})")
                    return

    thread = threading.Thread(target=watch, name="tuneforge-ray-watch", daemon=True)
    if vital:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        if vital:
            thread.join()


def _how_it_ended(code: int) -> str:
    """A child's return code in words: "killed by SIGKILL", "killed by signal 35", "exit code 1"."""
    if code >= 0:
        return f"exit code {code}"
    try:
        return f"killed by {signal.Signals(-code).name}"
    except ValueError:  # a real-time signal has no name
        return f"killed by signal {-code}"


def _connect(address: str | None, job_name: str, working_dir: Path | None) -> bool:
    """``ray.init`` for ``address`` (None: start a local Ray). True if Ray was started here.
    ``working_dir`` (a user's trainable folder) is shipped to every node as the job's."""
    import ray
    from ray.job_config import JobConfig

    if ray.is_initialized():
        return False
    # Ray's own notice that token authentication is on; tuneforge keeps it on.
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    if address and address != "auto":
        _check_reachable(address)
        if not address.startswith("ray://"):
            _check_authenticated(address)
    options = {"namespace": _NAMESPACE, "logging_level": logging.WARNING, "log_to_driver": False,
               "job_config": JobConfig(metadata={"job_name": job_name})}
    if working_dir is not None:
        options["runtime_env"] = {"working_dir": str(working_dir), "excludes": list(_NOT_SHIPPED)}
    try:
        # "local" always starts a new Ray; None would join any Ray already running here.
        with _ray_processes_in_a_session_of_their_own():
            ray.init(address=address or "local", **options)
    except ConnectionError as exc:
        raise ConfigError(f"--address: cannot connect to Ray at {address}: {exc}") from None
    return address is None


def default_cluster_config() -> Path | None:
    """The config ``ray up`` left on this machine if it is a cluster's head node, else None."""
    path = Path.home() / _BOOTSTRAP_CONFIG
    return path if path.is_file() else None


def autoscaler_node_types(path: Path) -> tuple[NodeType, ...]:
    """The node types of a Ray cluster launcher config (``ray up``'s YAML), in file order.

    Ray's defaults fill what a type leaves out: ``min_workers`` 0, ``max_workers`` the global
    one (0 for the head's type). A ``provider: {type: local}`` config without node types gets
    Ray's one, ``local.cluster.node``. ConfigError, one line naming the file, if it is missing,
    not YAML, or not such a config.
    """
    config = _read_config(path)
    provider = config.get("provider")
    is_local = isinstance(provider, Mapping) and provider.get("type") == "local"
    if is_local and "available_node_types" not in config:
        return (_local_node_type(path, config),)
    types = config.get("available_node_types")
    if not isinstance(types, Mapping) or not types:
        raise ConfigError(f"{path}: no available_node_types (the node types the cluster can start)")
    head = config.get("head_node_type")
    if head not in types:
        raise ConfigError(f"{path}: head_node_type {head!r} is not one of its node types {sorted(types)}")
    global_max = _count(path, "max_workers", config.get("max_workers", _RAY_DEFAULT_MAX_WORKERS))
    return tuple(_node_type(path, name, spec, is_head=name == head, global_max=global_max)
                 for name, spec in types.items())


def _read_config(path: Path) -> Mapping:
    if not path.exists():
        raise ConfigError(f"{path}: no such cluster config")
    config = read_yaml(path)
    if not isinstance(config, Mapping):
        raise ConfigError(f"{path}: not a Ray cluster config (a mapping with available_node_types)")
    return config


def _count(path: Path, where: str, value: object) -> int:
    if not is_int(value, minimum=0):
        raise ConfigError(f"{path}: {where}: expected a whole number, at least 0; got {value!r}")
    return value


def _node_type(path: Path, name: str, spec: object, *, is_head: bool, global_max: int) -> NodeType:
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{path}: available_node_types.{name}: expected a mapping, got {spec!r}")
    where = f"available_node_types.{name}"
    resources = spec.get("resources") or None
    if resources is not None and not (isinstance(resources, Mapping) and all(
            is_number(v, finite=False) and v >= 0 for v in resources.values())):
        raise ConfigError(f"{path}: {where}.resources: expected a mapping of resource names to "
                          f"numbers like {{CPU: 4, GPU: 1}}, got {resources!r}")
    max_workers = _count(path, f"{where}.max_workers", spec.get("max_workers", 0 if is_head else global_max))
    return NodeType(name=str(name), resources=resources, is_head=is_head,
                    min_workers=_count(path, f"{where}.min_workers", spec.get("min_workers", 0)),
                    # The autoscaler never runs more workers in all than the global max_workers.
                    max_workers=min(max_workers, global_max))


def _local_node_type(path: Path, config: Mapping) -> NodeType:
    """Ray's prepare_local: the head and every ``worker_ips`` machine, of unknown resources."""
    n_ips = len(config["provider"].get("worker_ips") or ())
    max_workers = min(_count(path, "max_workers", config.get("max_workers", n_ips)), n_ips)
    min_workers = min(_count(path, "min_workers", config.get("min_workers", n_ips)), max_workers)
    return NodeType(name=_LOCAL_NODE_TYPE, resources=None, min_workers=min_workers,
                    max_workers=max_workers, is_head=True)


def _alive_node_resources() -> tuple[Mapping[str, float], ...]:
    import ray

    return tuple(node["Resources"] for node in ray.nodes() if node["Alive"])


def _config_for(address: str | None, cluster_config: Path | None) -> Path | None:
    """``cluster_config``, else, for a cluster joined by address (``--address``, RAY_ADDRESS),
    the config ``ray up`` left on this machine (its head node)."""
    if cluster_config is not None:
        return cluster_config
    return default_cluster_config() if address is not None else None


@contextmanager
def ray_cluster(address: str | None, *, job_name: str, working_dir: Path | None = None,
                cluster_config: Path | None = None) -> Iterator[Cluster]:
    """Connect to (or start) Ray for one search; a Ray started here is shut down afterwards.

    ``job_name`` is how the search appears in the Ray dashboard's job list. ``working_dir`` is
    a folder of code every worker needs (a user's trainable file's); a Ray this process had
    already joined keeps its own job settings. The cluster's node types come from
    ``cluster_config``, else, when joining a cluster by address, from the config ``ray up`` left on
    this machine (see :func:`default_cluster_config`); a bad config is refused before Ray starts.
    """
    import ray

    config = _config_for(address, cluster_config)
    node_types = autoscaler_node_types(config) if config is not None else ()
    started_here = _connect(address, job_name, working_dir)
    reaper = _reaper_of_this_ray() if started_here else None
    try:
        context = ray.get_runtime_context()
        dashboard = ray._private.worker.global_worker.node.address_info.get("webui_url")
        yield Cluster(address=context.gcs_address,
                      dashboard_url=f"http://{dashboard}" if dashboard else None,
                      is_local=started_here, node_resources=_alive_node_resources(),
                      job_name=job_name, node_types=node_types, cluster_config=config)
    finally:
        if reaper is not None:
            reaper.kill()  # a shutdown needs none
            reaper.wait()
        if started_here:
            ray.shutdown()


def _bundles(resources: Mapping[str, float] | None, trial: TrialResources) -> float:
    """How many of a trial's worker bundles one node holds: floor(min over the resources r it
    asks of have_r / ask_r); inf when it asks for nothing. Unknown resources (None) hold none."""
    if resources is None:
        return 0
    ratios = [resources.get(name, 0) / asked for name, asked in trial.bundle().items() if asked > 0]
    return math.floor(min(ratios) + _EPSILON) if ratios else math.inf


def _holds(bundles: list[float], trial: TrialResources) -> bool:
    """A one-worker trial needs one node; a placement group's workers may spread over nodes."""
    return any(n >= 1 for n in bundles) if trial.workers == 1 else sum(bundles) >= trial.workers


def _startable(cluster: Cluster, trial: TrialResources) -> list[tuple[NodeType, float]]:
    """Each node type the autoscaler may start, with the worker bundles its ``max_workers``
    nodes hold together."""
    return [(node_type, _bundles(node_type.resources, trial) * node_type.max_workers)
            for node_type in cluster.node_types if node_type.max_workers > 0]


def check_trial_resources(cluster: Cluster, trial: TrialResources) -> str | None:
    """Whether the cluster can hold one trial, now or once its autoscaler has started nodes.

    None when the alive nodes hold it now. Else a one-line note naming the node types the
    autoscaler will start, when ``cluster.node_types`` can hold it: for several workers, the
    bundles the alive nodes hold plus ``max_workers`` nodes of each type (an upper bound: some
    of those may be the alive ones). Else ConfigError, one line: what was asked, the largest
    alive node and the node types. A worker no node or node type holds is always refused.
    """
    alive = [_bundles(node, trial) for node in cluster.node_resources]
    if _holds(alive, trial):
        return None
    startable = _startable(cluster, trial)
    helpful = [node_type for node_type, n_bundles in startable if n_bundles >= 1]
    if helpful and _holds(alive + [n_bundles for _, n_bundles in startable], trial):
        return _autoscaler_note(trial, helpful)
    n_bundles = sum(alive) + sum(n for _, n in startable)
    raise ConfigError(_refusal(cluster, trial, max_workers=math.floor(n_bundles)))


def check_local_resources(address: str | None, trial: TrialResources) -> None:
    """Before Ray starts: a local Ray (no ``address``) gets this machine's CPUs and GPUs, as Ray
    counts them, so a trial that asks for more is refused now (ConfigError, one line), not after
    Ray's start-up. Nothing is checked when a cluster is named or Ray already runs in this
    process (its resources are its own, as a test's Ray with declared GPUs)."""
    import ray

    if address is not None or ray.is_initialized():
        return
    from ray._private.accelerators import get_accelerator_manager_for_resource
    from ray._private.utils import get_num_cpus

    machine = {"CPU": float(get_num_cpus()),
               "GPU": float(get_accelerator_manager_for_resource("GPU").get_current_node_num_accelerators())}
    if not _holds([_bundles(machine, trial)], trial):
        raise ConfigError(f"{trial.flags()}: this machine has {_cpus_gpus(machine)}, which a local Ray "
                          "gets; ask for less, or join a cluster with --address")


def concurrent_trials(cluster: Cluster, trial: TrialResources) -> int:
    """How many trials the cluster holds at once, alive nodes and the nodes its autoscaler can
    start together (at least 1). The runner limits data-parallel searches to it: their workers'
    placement groups are Ray Train's, which Tune does not count."""
    total = (sum(_bundles(node, trial) for node in cluster.node_resources)
             + sum(n_bundles for _, n_bundles in _startable(cluster, trial)))
    return max(1, int(total // trial.workers)) if math.isfinite(total) else 1 << 30


def _autoscaler_note(trial: TrialResources, node_types: list[NodeType]) -> str:
    alive = "no alive node holds" if trial.workers == 1 else "the alive nodes do not hold"
    if len(node_types) == 1:
        kind = "node type"
    else:
        kind = "one of node types" if trial.workers == 1 else "node types"
    return (f"{alive} a trial ({trial.describe()}); the autoscaler will start {kind} "
            + ", ".join(node_type.describe() for node_type in node_types))


def _refusal(cluster: Cluster, trial: TrialResources, *, max_workers: int) -> str:
    largest = max(cluster.node_resources, key=lambda node: (node.get("GPU", 0), node.get("CPU", 0)),
                  default={})
    nodes = f"largest: {_cpus_gpus(largest)}"
    types = ", ".join(node_type.describe() for node_type in cluster.node_types)
    source = f"{cluster.cluster_config}: {types}" if cluster.cluster_config else types
    if max_workers < 1:
        what = "that much" if trial.workers == 1 else f"one worker ({_cpus_gpus(trial.bundle())})"
        if not cluster.node_types:
            return f"{trial.flags()}: no node of the Ray cluster has {what} ({nodes})"
        return (f"{trial.flags()}: no node of the Ray cluster ({nodes}), and no node type it can "
                f"start ({source}), has {what}")
    starts = f" and the nodes it can start ({source})" if cluster.node_types else ""
    return (f"{trial.flags()}: the Ray cluster's nodes ({nodes}){starts} hold at most {max_workers} "
            f"of the {trial.workers} workers at once; use --workers-per-trial {max_workers} or fewer")
