"""Connecting to Ray: a local instance started for the search, or a running cluster.

The address follows Ray's own convention: an explicit address, else ``RAY_ADDRESS``, else a
local Ray started for the search (and stopped after it). Ray 2.60 turns token authentication
on for local clusters; connecting to an explicit address needs ``RAY_AUTH_MODE=token`` and,
without it, fails only after ~20 s, as does a wrong token, and an unreachable address retries
for minutes. So an explicit address is probed first (a TCP connect, then one authenticated GCS
call) and every problem becomes one ConfigError within seconds.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tuneforge.errors import ConfigError

__all__ = ["Cluster", "check_trial_resources", "ray_cluster", "resolve_address"]

logger = logging.getLogger(__name__)

_CONNECT_TIMEOUT_S = 3.0
_DEFAULT_GCS_PORT = 6379
_NAMESPACE = "tuneforge"
_NOT_SHIPPED = (".git", ".venv", "__pycache__", "ray_results", "mlruns", "mlartifacts", "*.db")
"""Not sent to the nodes with a user's trainable folder: history, environments, results."""


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
        ray.init(address=address or "local", **options)
    except ConnectionError as exc:
        raise ConfigError(f"--address: cannot connect to Ray at {address}: {exc}") from None
    return address is None


def _alive_node_resources() -> tuple[Mapping[str, float], ...]:
    import ray

    return tuple(node["Resources"] for node in ray.nodes() if node["Alive"])


@contextmanager
def ray_cluster(address: str | None, *, job_name: str, working_dir: Path | None = None) -> Iterator[Cluster]:
    """Connect to (or start) Ray for one search; a Ray started here is shut down afterwards.

    ``job_name`` is how the search appears in the Ray dashboard's job list. ``working_dir`` is
    a folder of code every worker needs (a user's trainable file's); a Ray this process had
    already joined keeps its own job settings.
    """
    import ray

    started_here = _connect(address, job_name, working_dir)
    try:
        context = ray.get_runtime_context()
        dashboard = ray._private.worker.global_worker.node.address_info.get("webui_url")
        yield Cluster(address=context.gcs_address,
                      dashboard_url=f"http://{dashboard}" if dashboard else None,
                      is_local=started_here, node_resources=_alive_node_resources(),
                      job_name=job_name)
    finally:
        if started_here:
            ray.shutdown()


def check_trial_resources(cluster: Cluster, cpus: float, gpus: float) -> None:
    """ConfigError unless some node of the cluster can hold one trial's CPUs and GPUs."""
    if any(node.get("CPU", 0) >= cpus and node.get("GPU", 0) >= gpus for node in cluster.node_resources):
        return
    largest = max(cluster.node_resources, key=lambda node: (node.get("GPU", 0), node.get("CPU", 0)))
    raise ConfigError(
        f"--cpus-per-trial {cpus:g} --gpus-per-trial {gpus:g}: no node of the Ray cluster has "
        f"that much (largest: {largest.get('CPU', 0):g} CPUs, {largest.get('GPU', 0):g} GPUs)")
