"""A trial's resources against an autoscaling cluster: its alive nodes, then the node types of its
cluster launcher config. All offline but the last test, which starts a local Ray."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from tuneforge.errors import ConfigError
from tuneforge.platform.cluster import (
    Cluster,
    NodeType,
    TrialResources,
    _config_for,
    autoscaler_node_types,
    check_trial_resources,
    default_cluster_config,
    ray_cluster,
)

ROOT = Path(__file__).parents[2]

GPU_AT_ZERO = """\
cluster_name: test
max_workers: 4
provider: {type: aws, region: us-west-2}
available_node_types:
  head:
    resources: {}
    node_config: {InstanceType: m5.2xlarge}
  gpu-worker:
    min_workers: 0
    max_workers: 4
    resources: {CPU: 4, GPU: 1}
    node_config: {InstanceType: g5.xlarge}
head_node_type: head
"""

NO_GPU_TYPE = """\
max_workers: 2
available_node_types:
  head: {resources: {CPU: 2}}
  cpu-worker: {resources: {CPU: 8}, max_workers: 2}
head_node_type: head
"""


def _config(tmp_path: Path, text: str, name: str = "cluster.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _cluster(*alive: Mapping[str, float], config: Path | None = None) -> Cluster:
    return Cluster(address="127.0.0.1:6379", dashboard_url=None, is_local=False, node_resources=alive,
                   job_name="test", node_types=autoscaler_node_types(config) if config else (),
                   cluster_config=config)


def _refusal(cluster: Cluster, trial: TrialResources) -> str:
    with pytest.raises(ConfigError) as refused:
        check_trial_resources(cluster, trial)
    message = str(refused.value)
    assert "\n" not in message
    return message


def test_a_config_is_read_with_rays_defaults(tmp_path: Path) -> None:
    assert autoscaler_node_types(_config(tmp_path, GPU_AT_ZERO)) == (
        NodeType(name="head", resources=None, min_workers=0, max_workers=0, is_head=True),
        NodeType(name="gpu-worker", resources={"CPU": 4, "GPU": 1}, min_workers=0, max_workers=4,
                 is_head=False))
    # A worker type without max_workers gets the global one; the head's type gets 0.
    [head, worker] = autoscaler_node_types(_config(tmp_path, NO_GPU_TYPE))
    assert (head.max_workers, worker.max_workers) == (0, 2)


def test_a_gpu_type_at_zero_workers_is_started_for_a_gpu_trial(tmp_path: Path) -> None:
    cluster = _cluster({"CPU": 2}, config=_config(tmp_path, GPU_AT_ZERO))
    assert check_trial_resources(cluster, TrialResources(cpus=1, gpus=1)) == (
        "no alive node holds a trial (1 CPU, 1 GPU); the autoscaler will start node type "
        "'gpu-worker' (4 CPUs, 1 GPU; 0 to 4 of them)")
    # What the alive head holds needs no new node.
    assert check_trial_resources(cluster, TrialResources(cpus=1, gpus=0)) is None


def test_no_gpu_type_is_refused_naming_the_node_types(tmp_path: Path) -> None:
    config = _config(tmp_path, NO_GPU_TYPE)
    message = _refusal(_cluster({"CPU": 2}, config=config), TrialResources(cpus=1, gpus=1))
    assert message == (
        f"--cpus-per-trial 1 --gpus-per-trial 1: no node of the Ray cluster (largest: 2 CPUs, 0 GPUs), "
        f"and no node type it can start ({config}: 'head' (2 CPUs, 0 GPUs; the head), "
        f"'cpu-worker' (8 CPUs, 0 GPUs; 0 to 2 of them)), has that much")


def test_more_gpus_than_any_node_type_has_are_refused(tmp_path: Path) -> None:
    message = _refusal(_cluster({"CPU": 2}, config=_config(tmp_path, GPU_AT_ZERO)),
                       TrialResources(cpus=1, gpus=2))
    assert message.startswith("--cpus-per-trial 1 --gpus-per-trial 2: no node of the Ray cluster")
    assert "node type 'head' declares no resources, 'gpu-worker' (4 CPUs, 1 GPU; 0 to 4 of them)" in message


def test_without_node_types_the_alive_nodes_decide() -> None:
    assert check_trial_resources(_cluster({"CPU": 2, "GPU": 1}), TrialResources(cpus=2, gpus=1)) is None
    assert _refusal(_cluster({"CPU": 2}), TrialResources(cpus=64, gpus=0)) == (
        "--cpus-per-trial 64 --gpus-per-trial 0: no node of the Ray cluster has that much "
        "(largest: 2 CPUs, 0 GPUs)")


def test_data_parallel_workers_count_the_nodes_the_autoscaler_can_start(tmp_path: Path) -> None:
    cluster = _cluster({"CPU": 2}, config=_config(tmp_path, GPU_AT_ZERO))
    note = check_trial_resources(cluster, TrialResources(cpus=1, gpus=1, workers=2))
    assert note == ("the alive nodes do not hold a trial (2 workers x (1 CPU, 1 GPU)); the autoscaler "
                    "will start node type 'gpu-worker' (4 CPUs, 1 GPU; 0 to 4 of them)")
    message = _refusal(cluster, TrialResources(cpus=1, gpus=1, workers=5))
    assert message.startswith("--cpus-per-trial 1 --gpus-per-trial 1 --workers-per-trial 5: ")
    assert message.endswith("hold at most 4 of the 5 workers at once; use --workers-per-trial 4 or fewer")


def test_data_parallel_workers_spread_over_alive_nodes() -> None:
    # Neither node holds both workers; the placement group puts one on each.
    cluster = _cluster({"CPU": 1}, {"CPU": 1})
    assert check_trial_resources(cluster, TrialResources(cpus=1, gpus=0, workers=2)) is None
    assert check_trial_resources(_cluster({"CPU": 1, "GPU": 1}), TrialResources(0.5, 0.5, workers=2)) is None
    assert _refusal(cluster, TrialResources(cpus=1, gpus=0, workers=3)) == (
        "--cpus-per-trial 1 --gpus-per-trial 0 --workers-per-trial 3: the Ray cluster's nodes "
        "(largest: 1 CPU, 0 GPUs) hold at most 2 of the 3 workers at once; use --workers-per-trial 2 "
        "or fewer")


def test_a_worker_no_node_or_node_type_holds_is_refused(tmp_path: Path) -> None:
    cluster = _cluster({"CPU": 2}, config=_config(tmp_path, GPU_AT_ZERO))
    message = _refusal(cluster, TrialResources(cpus=8, gpus=1, workers=2))
    assert message.startswith("--cpus-per-trial 8 --gpus-per-trial 1 --workers-per-trial 2: no node of the "
                              "Ray cluster (largest: 2 CPUs, 0 GPUs), and no node type it can start")
    assert message.endswith("has one worker (8 CPUs, 1 GPU)")


@pytest.mark.parametrize(("text", "problem"), [
    (None, "no such cluster config"),
    ("available_node_types: [a\n", "invalid YAML (line 2)"),
    ("- a\n- b\n", "not a Ray cluster config"),
    ("cluster_name: x\n", "no available_node_types"),
    ("available_node_types: {w: {resources: {CPU: 4}}}\nhead_node_type: h\n",
     "head_node_type 'h' is not one of its node types ['w']"),
    ("available_node_types: {h: {resources: {CPU: four}}}\nhead_node_type: h\n",
     "available_node_types.h.resources: expected a mapping of resource names to numbers"),
    ("available_node_types: {h: {resources: [4]}}\nhead_node_type: h\n",
     "available_node_types.h.resources: expected a mapping"),
    ("available_node_types: {h: {max_workers: -1}}\nhead_node_type: h\n",
     "available_node_types.h.max_workers: expected a whole number, at least 0; got -1"),
], ids=["missing", "not-yaml", "not-a-mapping", "no-node-types", "bad-head", "not-numbers",
        "not-a-mapping-of-resources", "negative-max-workers"])
def test_a_bad_config_is_one_line_naming_the_file(tmp_path: Path, text: str | None, problem: str) -> None:
    path = tmp_path / "bad.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError) as refused:
        autoscaler_node_types(path)
    message = str(refused.value)
    assert message.startswith(f"{path}: {problem}") and "\n" not in message


def test_the_bundled_configs_are_read() -> None:
    cloud = autoscaler_node_types(ROOT / "cluster.yaml")
    assert [(t.name, t.resources, t.is_head) for t in cloud] == [
        ("cpu_head", None, True), ("gpu_worker", {"CPU": 4, "GPU": 1}, False)]
    # The local provider's config declares no node types: Ray's one, with the worker_ips.
    assert autoscaler_node_types(ROOT / "cluster-local.yaml") == (
        NodeType(name="local.cluster.node", resources=None, min_workers=1, max_workers=1, is_head=True),)


def test_the_bundled_cluster_starts_its_gpu_type_for_a_gpu_trial() -> None:
    cluster = _cluster({"CPU": 8}, config=ROOT / "cluster.yaml")
    note = check_trial_resources(cluster, TrialResources(cpus=1, gpus=1))
    assert note is not None
    assert note.endswith("will start node type 'gpu_worker' (4 CPUs, 1 GPU; 0 to 4 of them)")


def test_a_driver_joining_from_the_head_reads_the_config_ray_up_left_there(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_cluster_config() is None
    # `ray up` writes it as JSON, which is YAML.
    bootstrap = _config(tmp_path, '{"available_node_types": {"h": {"resources": {"CPU": 8}}}, '
                                  '"head_node_type": "h"}', name="ray_bootstrap_config.yaml")
    assert default_cluster_config() == bootstrap
    assert autoscaler_node_types(bootstrap)[0].resources == {"CPU": 8}
    assert _config_for("auto", None) == bootstrap
    assert _config_for("auto", tmp_path / "given.yaml") == tmp_path / "given.yaml"
    # A local Ray started for the search has no autoscaler.
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    assert _config_for(None, None) is None


def test_a_local_ray_gets_the_node_types_of_the_config_given(tmp_path: Path) -> None:
    import ray

    was_running = ray.is_initialized()
    config = _config(tmp_path, GPU_AT_ZERO)
    with ray_cluster(None, job_name="tuneforge test", cluster_config=config) as cluster:
        assert cluster.node_types == autoscaler_node_types(config)
        assert cluster.cluster_config == config and cluster.node_resources
    assert ray.is_initialized() == was_running
