"""The Kubernetes backend: a plan carried out on a real Kubernetes API server, Mobile-Kube's way.

Ghafouri et al. 2022 (Mobile-Kube), sec. VI: Kubernetes has no live migration, so a service moves by
*recreation*: "we first start pod 1 in node 2. Once we are sure pod 1 is up and running in node 2 we delete
its previous version from node 1", one pod at a time (the default scheduler's single queue). Placement is
decided outside Kubernetes and handed to it through the Python client, here as ``spec.nodeName``. Their
energy mechanism (sec. VI "Energy saving mechanism") is to release empty nodes from the cluster: a node left
without services is cordoned, and uncordoned when a service is placed on it again.

The state of a stateful service does not survive such a move (the new pod starts from its image); the
migration result says so (``state_kept: False``), and the testbed backend's live pre-copy migration is the
comparison (``experiments/mobilekube/apply.py``).

Everything the API server returns is treated as peer data: pod, node and service names are matched against
one strict pattern before they name anything, lists are bounded, and every client error becomes this
project's :class:`~.backend.BackendError` in one line (an unreachable API server names its URL).
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edgemigrate.controller.backend import (
    BackendError,
    HostStatus,
    HostUnreachable,
    MigrationResult,
    ServiceState,
    SessionOutcome,
)

if TYPE_CHECKING:
    from edgemigrate.control.spec import ServiceSpec
    from edgemigrate.controller.store import Action

MANAGED_LABEL = "app.kubernetes.io/managed-by"
MANAGER = "edgemigrate"
SERVICE_LABEL = "edgemigrate.io/service"
# DNS-1123 label: what a node, pod or label value must be for us to use it (names from the API are peer data)
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
MAX_PODS_LISTED = 1000
REQUEST_TIMEOUT_S = 10.0
POLL_S = 0.05


@dataclass(frozen=True, slots=True)
class PodShape:
    """What every service pod asks for: requests equal limits (the Guaranteed QoS class). The defaults are the
    seed's services: 0.125 CPU and 250 MB (Ghafouri et al. 2022, sec. VII)."""

    image: str = "registry.k8s.io/pause:3.2"
    cpu: str = "125m"
    memory: str = "250Mi"
    port: int = 5000  # the seed's Flask app


def _check_name(value: object, what: str) -> str:
    if not isinstance(value, str) or not _DNS_LABEL.fullmatch(value):
        raise BackendError(f"{what}: {str(value)[:80]!r} is not a DNS-1123 label (lowercase, digits, '-', <= 63)")
    return value


def pod_name(service: str, node: str) -> str:
    """The pod of ``service`` on ``node``: two copies exist while a move runs, so the node is in the name."""
    name = f"{_check_name(service, 'service')}-{_check_name(node, 'node')}"
    if len(name) > 63:
        raise BackendError(f"pod name {name[:80]!r}: service and node names together exceed 62 characters")
    return name


@dataclass
class KubernetesBackend:
    """Pods on a real API server, reached through ``kubeconfig`` (the official ``kubernetes`` client)."""

    kubeconfig: str
    namespace: str = "default"
    shape: PodShape = field(default_factory=PodShape)
    ready_timeout_s: float = 120.0
    delete_timeout_s: float = 120.0
    cordon_empty: bool = True
    name: str = "kubernetes"
    server: str = ""

    def __post_init__(self) -> None:
        import yaml
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException

        _check_name(self.namespace, "namespace")
        cfg = client.Configuration()
        try:
            config.load_kube_config(config_file=self.kubeconfig, client_configuration=cfg)
        except (ConfigException, yaml.YAMLError, OSError, ValueError, TypeError, KeyError,
                AttributeError) as exc:
            first = (str(exc) or type(exc).__name__).splitlines()[0][:200]
            raise BackendError(f"{self.kubeconfig}: not a usable kubeconfig ({first})") from None
        cfg.retries = 0  # an unreachable server must fail at once, not after urllib3's retries
        self.server = cfg.host
        self._core = client.CoreV1Api(client.ApiClient(cfg))

    # ------------------------------------------------------------------------------------- the client
    async def _call(self, fn: Any, *args: Any, **kw: Any) -> Any:
        """One API call in a worker thread; client errors become one-line :class:`BackendError`."""
        return await asyncio.to_thread(self._call_sync, fn, *args, **kw)

    def _call_sync(self, fn: Any, *args: Any, **kw: Any) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return fn(*args, _request_timeout=REQUEST_TIMEOUT_S, **kw)
        except ApiException as exc:
            if exc.status == 404:
                raise _NotFound(str(exc.reason)) from None
            raise BackendError(f"Kubernetes API {self.server}: {exc.status} {str(exc.reason)[:200]}") from None
        except (HTTPError, OSError) as exc:
            raise BackendError(f"Kubernetes API server {self.server} unreachable: "
                               f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from None

    async def check(self) -> str:
        """The server's version (``v1.20.2``), or a one-line error naming the URL if it does not answer."""
        from kubernetes import client

        info = await self._call(client.VersionApi(self._core.api_client).get_code)
        return str(info.git_version)[:64]

    # ------------------------------------------------------------------------------------- Backend
    async def deploy(self, spec: ServiceSpec, host: str) -> None:
        await self._node_or_raise(host)
        await self._uncordon(host)
        await self._create_pod(spec.name, host)
        await self._wait_ready(spec.name, host)

    async def migrate(self, service: str, source_host: str, dest_host: str, session: str) -> MigrationResult:
        """Mobile-Kube's move: start the pod on ``dest_host``, wait until it is Ready, delete the old one.

        If the new pod never becomes Ready it is deleted again (the old one kept serving: rolled back). The
        service's in-memory state is not carried over: ``stats["state_kept"]`` is False.
        """
        await self._node_or_raise(dest_host)
        if await self._pod(service, source_host) is None:
            raise BackendError(f"migration of {service}: no pod {pod_name(service, source_host)} on {source_host}")
        t0 = time.monotonic()
        await self._uncordon(dest_host)
        await self._create_pod(service, dest_host)
        try:
            await self._wait_ready(service, dest_host)
        except BackendError as exc:
            # it never became Ready, so nothing of it serves: delete it at once (grace 0) rather than wait
            # for a kubelet that may be the reason it never started
            await self._delete_pod(service, dest_host, force=True)
            await self._cordon_if_empty(dest_host)
            raise BackendError(f"migration of {service} {source_host} -> {dest_host}: {exc}") from None
        ready_s = time.monotonic() - t0
        await self._delete_pod(service, source_host)
        await self._cordon_if_empty(source_host)
        return MigrationResult(service, source_host, dest_host, {
            "strategy": "recreate", "session": session, "ready_s": ready_s, "total_s": time.monotonic() - t0,
            "state_kept": False})

    async def handover(self, user: str, source_bs: str, dest_bs: str) -> None:
        """Base stations are not Kubernetes objects: the mobility side (simulated, as in the seed) moves users."""

    async def stop(self, service: str, host: str) -> None:
        if await self._pod(service, host) is None:
            raise BackendError(f"stop {service} on {host}: no such pod")
        await self._delete_pod(service, host)
        await self._cordon_if_empty(host)

    async def host_status(self, host: str) -> HostStatus:
        """The managed pods bound to ``host``; a missing or NotReady node is unreachable."""
        await self._node_or_raise(host)
        pods = await self._pods_on(host)
        return HostStatus(host, tuple(sorted((_pod_state(p) for p in pods), key=lambda s: s.name)))

    async def session_status(self, action: Action) -> SessionOutcome:
        if action.source_host is None or action.dest_host is None:
            return SessionOutcome.DONE
        src = await self.host_status(action.source_host)
        try:
            dst = await self.host_status(action.dest_host)
        except HostUnreachable:
            dst = HostStatus(action.dest_host, ())
        name = action.service
        if src.busy(name) or dst.busy(name):
            return SessionOutcome.PENDING
        at_src, at_dst = src.running(name), dst.running(name)
        if at_src and at_dst:
            return SessionOutcome.SPLIT
        return (SessionOutcome.DONE if at_dst else SessionOutcome.ROLLED_BACK if at_src else SessionOutcome.LOST)

    # ------------------------------------------------------------------------------------- nodes
    async def cordoned(self) -> set[str]:
        """The nodes marked unschedulable (released, in the seed's energy mechanism)."""
        nodes = await self._call(self._core.list_node, limit=MAX_PODS_LISTED)
        if nodes.metadata._continue:
            raise BackendError(f"cluster: more than {MAX_PODS_LISTED} nodes")
        return {_check_name(n.metadata.name, "node") for n in nodes.items if n.spec.unschedulable}

    async def placement(self) -> dict[str, str]:
        """service -> node of the managed pods that run (Ready, not being deleted)."""
        pods = await self._call(self._core.list_namespaced_pod, self.namespace,
                                label_selector=f"{MANAGED_LABEL}={MANAGER}", limit=MAX_PODS_LISTED)
        if pods.metadata._continue:
            raise BackendError(f"namespace {self.namespace}: more than {MAX_PODS_LISTED} pods")
        out = {}
        for p in pods.items:
            st = _pod_state(p)
            if st.state == "running" and not st.migrating:
                out[st.name] = _check_name(p.spec.node_name, "pod.spec.nodeName")
        return out

    async def release_empty(self, nodes: list[str]) -> set[str]:
        """Cordon every one of ``nodes`` that runs none of our pods (after the first deployment); returns them."""
        out = set()
        for n in nodes:
            await self._node_or_raise(n)
            if not await self._pods_on(n):
                await self._call(self._core.patch_node, n, {"spec": {"unschedulable": True}})
                out.add(n)
        return out

    async def _node_or_raise(self, host: str) -> None:
        _check_name(host, "node")
        try:
            node = await self._call(self._core.read_node, host)
        except _NotFound:
            raise HostUnreachable(host, "no such Kubernetes node") from None
        ready = [c for c in (node.status.conditions or []) if c.type == "Ready"]
        if not ready or ready[0].status != "True":
            raise HostUnreachable(host, "Kubernetes node is not Ready")

    async def _uncordon(self, host: str) -> None:
        if self.cordon_empty:
            await self._call(self._core.patch_node, host, {"spec": {"unschedulable": None}})

    async def _cordon_if_empty(self, host: str) -> None:
        if self.cordon_empty and not await self._pods_on(host):
            await self._call(self._core.patch_node, host, {"spec": {"unschedulable": True}})

    # ------------------------------------------------------------------------------------- pods
    async def _pods_on(self, host: str) -> list[Any]:
        pods = await self._call(self._core.list_namespaced_pod, self.namespace,
                                label_selector=f"{MANAGED_LABEL}={MANAGER}",
                                field_selector=f"spec.nodeName={_check_name(host, 'node')}", limit=MAX_PODS_LISTED)
        if pods.metadata._continue:
            raise BackendError(f"node {host}: more than {MAX_PODS_LISTED} pods")
        return list(pods.items)

    async def _pod(self, service: str, host: str) -> Any | None:
        try:
            return await self._call(self._core.read_namespaced_pod, pod_name(service, host), self.namespace)
        except _NotFound:
            return None

    async def _create_pod(self, service: str, host: str) -> None:
        from kubernetes import client

        s = self.shape
        res = {"cpu": s.cpu, "memory": s.memory}
        pod = client.V1Pod(
            metadata=client.V1ObjectMeta(name=pod_name(service, host), labels={
                MANAGED_LABEL: MANAGER, SERVICE_LABEL: service}),
            spec=client.V1PodSpec(
                node_name=host, automount_service_account_token=False, termination_grace_period_seconds=5,
                containers=[client.V1Container(
                    name="service", image=s.image, ports=[client.V1ContainerPort(container_port=s.port)],
                    resources=client.V1ResourceRequirements(requests=res, limits=res))]))
        await self._call(self._core.create_namespaced_pod, self.namespace, pod)

    async def _wait_ready(self, service: str, host: str) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while True:
            pod = await self._pod(service, host)
            if pod is None:
                raise BackendError(f"pod {pod_name(service, host)} disappeared before it became Ready")
            if _pod_state(pod).state == "running":
                return
            if pod.status.phase in ("Failed", "Succeeded"):
                raise BackendError(f"pod {pod_name(service, host)} ended ({pod.status.phase}) before Ready")
            if time.monotonic() > deadline:
                raise BackendError(f"pod {pod_name(service, host)} not Ready after {self.ready_timeout_s:.0f} s")
            await asyncio.sleep(POLL_S)

    async def _delete_pod(self, service: str, host: str, *, force: bool = False) -> None:
        """Delete and wait until the pod is gone (the kubelet finishes a deletion after its containers exit)."""
        from kubernetes import client

        name = pod_name(service, host)
        opts = client.V1DeleteOptions(grace_period_seconds=0) if force else None
        try:
            await self._call(self._core.delete_namespaced_pod, name, self.namespace, body=opts)
        except _NotFound:
            return
        deadline = time.monotonic() + self.delete_timeout_s
        while await self._pod(service, host) is not None:
            if time.monotonic() > deadline:
                raise BackendError(f"pod {name} still Terminating after {self.delete_timeout_s:.0f} s")
            await asyncio.sleep(POLL_S)


class _NotFound(BackendError):
    """404 from the API server (internal: callers turn it into their own answer)."""


def _pod_state(pod: Any) -> ServiceState:
    """A pod in the agents' words: Ready -> running; starting -> restoring (busy); being deleted -> stopped
    and migrating (busy), so that a restarted controller waits for a move still in flight."""
    labels = pod.metadata.labels or {}
    service = _check_name(labels.get(SERVICE_LABEL), f"pod {str(pod.metadata.name)[:64]} label {SERVICE_LABEL}")
    if pod.metadata.deletion_timestamp is not None:
        return ServiceState(service, "stopped", True)
    ready = any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))
    if pod.status.phase == "Running" and ready:
        return ServiceState(service, "running", False, address=str(pod.status.pod_ip or "")[:45])
    if pod.status.phase in ("Failed", "Succeeded"):
        return ServiceState(service, "stopped", False)
    return ServiceState(service, "restoring", True)
