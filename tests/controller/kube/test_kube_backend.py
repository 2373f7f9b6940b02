"""The Kubernetes backend against a real kube-apiserver (the ``kube`` fixture): Mobile-Kube's mechanism.

Pods land on the planned node (``spec.nodeName``), a move creates the new pod, waits for Ready and deletes the
old one, one move at a time through the controller's store and deployment; a node left empty is cordoned and
uncordoned when used again (Ghafouri et al. 2022, sec. VI). Failures: a pod that never becomes Ready is removed
and the move rolled back; a NotReady node is a host down; an unreachable API server, a broken kubeconfig and
names that are not DNS labels are one-line errors; a pod the API server returns without our labels is refused.
"""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import pytest
from kubernetes import client, watch

from edgemigrate.cluster.kube import LocalKube, free_port, register_nodes
from edgemigrate.control.spec import ServiceKind, ServiceSpec
from edgemigrate.controller.backend import BackendError, HostUnreachable
from edgemigrate.controller.kube_backend import MANAGED_LABEL, MANAGER, KubernetesBackend, pod_name
from edgemigrate.controller.placement import MoveOutcome, PlacementApplier
from edgemigrate.controller.service import Controller
from edgemigrate.controller.store import (
    ActionState,
    BaseStation,
    Host,
    HostRole,
    HostState,
    Store,
    open_store,
)
from edgemigrate.planning import make_planner

from .conftest import NODES

GIB = 1 << 30


def _spec(name: str, i: int = 1) -> ServiceSpec:
    return ServiceSpec(name, ServiceKind.COUNTER, f"10.0.0.{10 + i}", 7000)


def _controller(backend: KubernetesBackend, path: Path, nodes: tuple[str, ...] = NODES) -> Controller:
    store: Store = open_store(f"sqlite:///{path}")
    for n in nodes:
        store.put_host(Host(n, HostRole.EDGE, "127.0.0.1:10250", 4.0, 16 * GIB, 100 * GIB))
    store.put_base_station(BaseStation("bs-0", 0.0, 0.0, 1e9, 64))
    return Controller.build(store, backend, make_planner("nearest"))


def _core(kube: LocalKube) -> client.CoreV1Api:
    return client.CoreV1Api(kube.api_client())


def _pods(kube: LocalKube) -> dict[str, str]:
    """pod name -> node of every pod we manage, as the API server holds them (Terminating ones included)."""
    pods = _core(kube).list_namespaced_pod("default", label_selector=f"{MANAGED_LABEL}={MANAGER}")
    return {p.metadata.name: p.spec.node_name for p in pods.items}


def _cleanup(kube: LocalKube, backend: KubernetesBackend) -> None:
    async def go() -> None:
        for node in NODES:
            for s in (await backend.host_status(node)).services:
                await backend.stop(s.name, node)
    asyncio.run(go())


def test_deploy_puts_the_pod_on_the_planned_node_running(kube: LocalKube) -> None:
    backend = KubernetesBackend(str(kube.kubeconfig))
    assert asyncio.run(backend.check()).startswith("v1.")
    asyncio.run(backend.deploy(_spec("svc-a"), "node-1"))
    pod = _core(kube).read_namespaced_pod(pod_name("svc-a", "node-1"), "default")
    assert pod.spec.node_name == "node-1"
    # Guaranteed QoS as in the seed: requests equal limits (0.125 CPU, 250 MB)
    res = pod.spec.containers[0].resources
    assert res.requests == res.limits == {"cpu": "125m", "memory": "250Mi"}
    status = asyncio.run(backend.host_status("node-1"))
    assert status.running("svc-a") and not status.busy("svc-a")
    assert asyncio.run(backend.placement()) == {"svc-a": "node-1"}
    _cleanup(kube, backend)
    assert _pods(kube) == {}


def test_moves_through_the_controller_recreate_pods_one_at_a_time_and_cordon_empty_nodes(
        kube: LocalKube, tmp_path: Path) -> None:
    backend = KubernetesBackend(str(kube.kubeconfig))
    ctl = _controller(backend, tmp_path / "ctl.db")
    applier = PlacementApplier(ctl, "bs-0")
    specs = [_spec("svc-a", 1), _spec("svc-b", 2)]
    seen: list[dict[str, str]] = []

    async def after(outcome: MoveOutcome) -> None:
        # one move at a time: when a move is finished, its old pod is gone and no other move has begun
        seen.append(_pods(kube))

    async def scenario() -> tuple[list[MoveOutcome], list[MoveOutcome]]:
        await applier.deploy(specs, {"svc-a": "node-0", "svc-b": "node-0"})
        first = await applier.apply({"svc-a": "node-1", "svc-b": "node-2"}, after_move=after)
        assert await backend.cordoned() == {"node-0"}  # left empty by the moves
        second = await applier.apply({"svc-a": "node-0", "svc-b": "node-0"}, after_move=after)
        return first, second

    first, second = asyncio.run(scenario())
    assert [o.action.state for o in first + second] == [ActionState.DONE] * 4
    assert seen == [{"svc-a-node-1": "node-1", "svc-b-node-0": "node-0"},
                    {"svc-a-node-1": "node-1", "svc-b-node-2": "node-2"},
                    {"svc-a-node-0": "node-0", "svc-b-node-2": "node-2"},
                    {"svc-a-node-0": "node-0", "svc-b-node-0": "node-0"}]
    assert asyncio.run(backend.cordoned()) == {"node-1", "node-2"}  # node-0 uncordoned when used again
    assert applier.current() == {"svc-a": "node-0", "svc-b": "node-0"}  # the store follows the moves
    assert all(o.action.detail == "placement" for o in first)
    _cleanup(kube, backend)


def test_the_old_pod_is_deleted_only_after_the_new_one_is_ready(kube: LocalKube) -> None:
    """The seed's order, read from the API server's own event stream (ordered by resource version): the new pod
    is Ready before the old one is marked for deletion. The fake kubelet takes 0.5 s to start a pod here, so a
    backend that did not wait would delete first."""
    backend = KubernetesBackend(str(kube.kubeconfig))
    asyncio.run(backend.deploy(_spec("svc-e"), "node-0"))
    core = _core(kube)
    since = core.list_namespaced_pod("default").metadata.resource_version
    events: list[tuple[str, bool, bool, str]] = []

    def record() -> None:
        w = watch.Watch()
        for ev in w.stream(core.list_namespaced_pod, "default", resource_version=since, timeout_seconds=60):
            p = ev["object"]
            ready = any(c.type == "Ready" and c.status == "True" for c in (p.status.conditions or []))
            events.append((p.metadata.name, ready, p.metadata.deletion_timestamp is not None, ev["type"]))
            if ev["type"] == "DELETED" and p.metadata.name == "svc-e-node-0":
                w.stop()

    watcher = threading.Thread(target=record, daemon=True)
    watcher.start()
    assert kube.kubelet is not None
    kube.kubelet.ready_delay_s = 0.5
    try:
        asyncio.run(backend.migrate("svc-e", "node-0", "node-1", "order-test"))
    finally:
        kube.kubelet.ready_delay_s = 0.0
    watcher.join(90)
    if watcher.is_alive():
        pytest.fail(f"the API server sent no DELETED event for the old pod; events so far: {events}")
    new_ready = next(i for i, e in enumerate(events) if e[0] == "svc-e-node-1" and e[1])
    old_deleting = next(i for i, e in enumerate(events) if e[0] == "svc-e-node-0" and (e[2] or e[3] == "DELETED"))
    assert new_ready < old_deleting, events
    _cleanup(kube, backend)


def test_a_pod_that_never_becomes_ready_is_removed_and_the_move_rolled_back(kube: LocalKube, tmp_path: Path) -> None:
    # a node the fake kubelet does not serve: a pod bound to it never starts, as on a node whose kubelet hangs
    register_nodes(kube.api_client(), ["node-lost"])
    backend = KubernetesBackend(str(kube.kubeconfig), ready_timeout_s=2.0)
    ctl = _controller(backend, tmp_path / "ctl.db", NODES + ("node-lost",))
    applier = PlacementApplier(ctl, "bs-0")

    async def scenario() -> list[MoveOutcome]:
        await applier.deploy([_spec("svc-c")], {"svc-c": "node-0"})
        return await applier.apply({"svc-c": "node-lost"})

    (outcome,) = asyncio.run(scenario())
    assert outcome.action.state is ActionState.ROLLED_BACK, outcome.action
    assert "not Ready" in outcome.action.detail
    assert _pods(kube) == {"svc-c-node-0": "node-0"}
    assert applier.current() == {"svc-c": "node-0"}
    _cleanup(kube, backend)
    _core(kube).delete_node("node-lost")


def test_a_not_ready_node_is_a_host_down_and_the_move_goes_nowhere(kube: LocalKube, tmp_path: Path) -> None:
    core = _core(kube)
    core.patch_node_status("node-3", {"status": {"conditions": [{"type": "Ready", "status": "False",
                                                                  "reason": "KubeletStopped"}]}})
    backend = KubernetesBackend(str(kube.kubeconfig))
    ctl = _controller(backend, tmp_path / "ctl.db")
    applier = PlacementApplier(ctl, "bs-0")
    try:
        with pytest.raises(HostUnreachable, match="node-3.*not Ready"):
            asyncio.run(backend.host_status("node-3"))

        async def scenario() -> list[MoveOutcome]:
            await applier.deploy([_spec("svc-d")], {"svc-d": "node-0"})
            return await applier.apply({"svc-d": "node-3"})

        (outcome,) = asyncio.run(scenario())
        assert outcome.action.state is ActionState.ROLLED_BACK
        assert ctl.store.host("node-3").state is HostState.DOWN
        assert _pods(kube) == {"svc-d-node-0": "node-0"}
    finally:
        core.patch_node_status("node-3", {"status": {"conditions": [{"type": "Ready", "status": "True",
                                                                      "reason": "FakeKubeletReady"}]}})
        _cleanup(kube, backend)


def test_a_pod_without_our_service_label_is_refused_not_trusted(kube: LocalKube) -> None:
    # what the API server returns is peer data: a managed pod whose service label is missing names nothing
    core = _core(kube)
    core.create_namespaced_pod("default", client.V1Pod(
        metadata=client.V1ObjectMeta(name="intruder", labels={MANAGED_LABEL: MANAGER}),
        spec=client.V1PodSpec(node_name="node-2", containers=[client.V1Container(name="c", image="x")])))
    backend = KubernetesBackend(str(kube.kubeconfig))
    try:
        with pytest.raises(BackendError, match="pod intruder label edgemigrate.io/service"):
            asyncio.run(backend.host_status("node-2"))
    finally:
        core.delete_namespaced_pod("intruder", "default", body=client.V1DeleteOptions(grace_period_seconds=0))


def test_unreachable_api_server_is_a_one_line_error_naming_the_url(tmp_path: Path) -> None:
    url = f"https://127.0.0.1:{free_port()}"  # nothing listens there
    cfg = tmp_path / "kubeconfig"
    cfg.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": url, "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}]}))
    backend = KubernetesBackend(str(cfg))
    for call in (backend.check(), backend.host_status("node-0")):
        with pytest.raises(BackendError) as info:
            asyncio.run(call)
        assert not isinstance(info.value, HostUnreachable)  # the server, not one host, is gone
        text = str(info.value)
        assert f"Kubernetes API server {url} unreachable" in text and "\n" not in text


@pytest.mark.parametrize("content", ["{not yaml: [", "apiVersion: v1\nkind: Config\n", ""])
def test_a_broken_kubeconfig_is_a_one_line_error_naming_the_file(tmp_path: Path, content: str) -> None:
    cfg = tmp_path / "kubeconfig"
    cfg.write_text(content)
    with pytest.raises(BackendError) as info:
        KubernetesBackend(str(cfg))
    assert str(cfg) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(("service", "node"), [("Svc_1", "node-0"), ("svc", "../etc"), ("svc", "n" * 64),
                                               ("a" * 40, "b" * 30)])
def test_names_that_are_not_dns_labels_are_refused_before_any_request(service: str, node: str) -> None:
    with pytest.raises(BackendError, match="DNS-1123|exceed"):
        pod_name(service, node)
