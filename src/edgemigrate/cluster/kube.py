"""A real, local Kubernetes control plane with a small fake kubelet: what the Kubernetes backend is tested on.

Mobile-Kube (Ghafouri et al. 2022, sec. VI "Kubernetes internal structure", fig. 1) drives a real cluster
through the API server with the official Python client. :class:`LocalKube` starts the same API server here,
offline: ``etcd`` (Debian's etcd-server) and ``kube-apiserver`` (built by ``scripts/install-kubernetes``) on
free loopback ports, in a temporary folder, with a generated CA, a serving certificate, an admin client
certificate (``O=system:masters``) and a service-account key; it writes a kubeconfig for the admin.

No scheduler and no controller-manager are started, and that is deliberate: the backend places every pod
itself with ``spec.nodeName`` (the seed schedules outside Kubernetes, sec. VI "Changes to the Kubernetes
default scheduler"), and the controller-manager's node-lifecycle controller would mark the fake nodes
NotReady (they send no heartbeats) and evict the pods. The ServiceAccount admission plugin is disabled
for the same reason (its ``default`` account is created by the controller-manager).

:class:`FakeKubelet` does what KWOK does for the registered nodes: a pod bound to one of them is marked
Running and Ready (after an injectable delay, the container start time it stands for), and a pod being
deleted (``deletionTimestamp`` set) is finished with a zero-grace delete, as a kubelet does after its
containers exit. It runs the official client's watch in a thread.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edgemigrate.core.errors import EdgeMigrateError

log = logging.getLogger(__name__)

KUBE_CACHE = Path(os.environ.get("EDGEMIGRATE_CACHE", "/var/cache/edgemigrate")) / "kubernetes"
READY_GIVE_UP_S = 90.0  # a busy 2-core machine: the API server is ready ~3.5 s after start when idle
NODE_CPU = "4"  # GKE e2-standard-4, as in Ghafouri et al. 2022, sec. VII
NODE_MEMORY = "16Gi"
NODE_PODS = "110"
POD_CIDR_PREFIX = "10.244"


class KubeClusterError(EdgeMigrateError):
    """The local control plane could not start (a binary is missing, a process died, it never became ready)."""


def kube_binaries() -> dict[str, Path] | None:
    """``etcd`` and ``kube-apiserver``: on PATH or in the install script's cache (None if either is missing)."""
    found: dict[str, Path] = {}
    cached = sorted(KUBE_CACHE.glob("*/kube-apiserver"), reverse=True)
    for name in ("etcd", "kube-apiserver"):
        path = shutil.which(name)
        if path is None and name == "kube-apiserver" and cached:
            path = str(cached[0])
        if path is None:
            return None
        found[name] = Path(path)
    return found


def kube_skip_reason() -> str | None:
    """Why a local control plane cannot start here (None if it can)."""
    if os.geteuid() != 0:
        return "needs root (scripts/install-kubernetes installs etcd and kube-apiserver as root)"
    if kube_binaries() is None:
        return "etcd or kube-apiserver not installed (scripts/install-kubernetes)"
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------------------------------------ PKI
def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert(subject: x509.Name, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
          signer: ec.EllipticCurvePrivateKey, *, ca: bool, usages: Iterable[x509.ObjectIdentifier] = (),
          sans: Iterable[x509.GeneralName] = ()) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
         .not_valid_after(now + dt.timedelta(days=2))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True))
    if ca:
        b = b.add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                          content_commitment=False, key_encipherment=False, data_encipherment=False,
                                          key_agreement=False, encipher_only=False, decipher_only=False),
                            critical=True)
    usages = list(usages)
    if usages:
        b = b.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    sans = list(sans)
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return b.sign(signer, hashes.SHA256())


@dataclass(frozen=True, slots=True)
class KubePki:
    ca: Path
    server_cert: Path
    server_key: Path
    admin_cert: Path
    admin_key: Path
    sa_key: Path
    sa_pub: Path


def make_pki(folder: Path, service_ip: str = "10.0.0.1") -> KubePki:
    """A CA, the API server's serving certificate (127.0.0.1, localhost and the ``kubernetes`` service IP),
    an admin client certificate in ``system:masters`` and an RSA service-account key pair."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edgemigrate kube CA")])
    ca = _cert(ca_name, ca_key, ca_name, ca_key, ca=True)
    srv_key = ec.generate_private_key(ec.SECP256R1())
    srv = _cert(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]), srv_key, ca_name, ca_key,
                ca=False, usages=[ExtendedKeyUsageOID.SERVER_AUTH],
                sans=[x509.DNSName("localhost"), x509.DNSName("kubernetes"), x509.DNSName("kubernetes.default"),
                      x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                      x509.IPAddress(ipaddress.ip_address(service_ip))])
    adm_key = ec.generate_private_key(ec.SECP256R1())
    adm = _cert(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
                           x509.NameAttribute(NameOID.COMMON_NAME, "edgemigrate-admin")]),
                adm_key, ca_name, ca_key, ca=False, usages=[ExtendedKeyUsageOID.CLIENT_AUTH])
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    out = KubePki(folder / "ca.pem", folder / "apiserver.pem", folder / "apiserver.key", folder / "admin.pem",
                  folder / "admin.key", folder / "sa.key", folder / "sa.pub")
    pem = serialization.Encoding.PEM
    out.ca.write_bytes(ca.public_bytes(pem))
    out.server_cert.write_bytes(srv.public_bytes(pem))
    _write_private(out.server_key, _pem_key(srv_key))
    out.admin_cert.write_bytes(adm.public_bytes(pem))
    _write_private(out.admin_key, _pem_key(adm_key))
    _write_private(out.sa_key, _pem_key(sa_key))
    out.sa_pub.write_bytes(sa_key.public_key().public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo))
    return out


def write_kubeconfig(path: Path, server: str, pki: KubePki) -> Path:
    """A kubeconfig for the admin (JSON is YAML; the client's loader reads it)."""
    import json

    cfg = {"apiVersion": "v1", "kind": "Config", "current-context": "edgemigrate",
           "clusters": [{"name": "local", "cluster": {"server": server, "certificate-authority": str(pki.ca)}}],
           "users": [{"name": "admin", "user": {"client-certificate": str(pki.admin_cert),
                                                "client-key": str(pki.admin_key)}}],
           "contexts": [{"name": "edgemigrate", "context": {"cluster": "local", "user": "admin"}}]}
    path.write_text(json.dumps(cfg, indent=1))
    return path


# ------------------------------------------------------------------------------------------------ processes
@dataclass
class LocalKube:
    """etcd + kube-apiserver in ``root`` on free ports, ``nodes`` registered, a :class:`FakeKubelet` for them.

    Use :meth:`up` and :meth:`down` (or ``with LocalKube.up(...) as kube``); ``kubeconfig`` is the admin's.
    """

    root: Path
    nodes: tuple[str, ...]
    server: str = ""
    kubeconfig: Path = field(default_factory=Path)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    kubelet: FakeKubelet | None = None

    @classmethod
    def up(cls, root: Path, nodes: Iterable[str], *, ready_delay_s: float = 0.0,
           give_up_s: float = READY_GIVE_UP_S) -> LocalKube:
        """Start the control plane, register ``nodes`` (Ready, untainted) and start the fake kubelet."""
        bins = kube_binaries()
        if bins is None:
            raise KubeClusterError("etcd or kube-apiserver not installed; run scripts/install-kubernetes as root")
        kube = cls(root, tuple(nodes))
        root.mkdir(parents=True, exist_ok=True)
        try:
            kube._start(bins, give_up_s)
            api = kube.api_client()
            register_nodes(api, kube.nodes)
            kube.kubelet = FakeKubelet(kube.kubeconfig, kube.nodes, ready_delay_s=ready_delay_s)
            kube.kubelet.start()
        except BaseException:
            kube.down()
            raise
        return kube

    def _start(self, bins: dict[str, Path], give_up_s: float) -> None:
        pki = make_pki(self.root / "pki")
        etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        self._spawn("etcd", [str(bins["etcd"]), "--name", "local", "--data-dir", str(self.root / "etcd"),
                             "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
                             "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
                             "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
                             "--initial-cluster", f"local=http://127.0.0.1:{peer_port}"])
        self._spawn("kube-apiserver", [
            str(bins["kube-apiserver"]), "--etcd-servers", etcd_url, "--bind-address", "127.0.0.1",
            "--advertise-address", "127.0.0.1", "--secure-port", str(api_port), "--insecure-port", "0",
            "--tls-cert-file", str(pki.server_cert), "--tls-private-key-file", str(pki.server_key),
            "--client-ca-file", str(pki.ca), "--service-account-key-file", str(pki.sa_pub),
            "--service-account-signing-key-file", str(pki.sa_key),
            "--service-account-issuer", "https://kubernetes.default.svc", "--authorization-mode", "RBAC",
            "--service-cluster-ip-range", "10.0.0.0/24", "--cert-dir", str(self.root / "apiserver-certs"),
            "--disable-admission-plugins", "ServiceAccount", "--enable-priority-and-fairness=false",
            "--logtostderr=true", "--v=1"])
        self.server = f"https://127.0.0.1:{api_port}"
        self.kubeconfig = write_kubeconfig(self.root / "kubeconfig", self.server, pki)
        self._wait_ready(pki, give_up_s)

    def _spawn(self, name: str, argv: list[str]) -> None:
        with (self.root / f"{name}.log").open("ab") as out:
            self.procs[name] = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def _wait_ready(self, pki: KubePki, give_up_s: float) -> None:
        ctx = ssl.create_default_context(cafile=str(pki.ca))
        ctx.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
        deadline = time.monotonic() + give_up_s
        last = "no answer yet"
        while True:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise KubeClusterError(f"{name} exited with {proc.returncode}; see {self.root / (name + '.log')}")
            try:
                with urllib.request.urlopen(f"{self.server}/readyz", context=ctx, timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError as exc:
                last = str(exc).splitlines()[0][:200]
            if time.monotonic() > deadline:
                raise KubeClusterError(f"kube-apiserver at {self.server} not ready after {give_up_s:.0f} s "
                                       f"({last}); see {self.root / 'kube-apiserver.log'}")
            time.sleep(0.2)

    def api_client(self) -> Any:
        from kubernetes import client, config

        cfg = client.Configuration()
        config.load_kube_config(config_file=str(self.kubeconfig), client_configuration=cfg)
        return client.ApiClient(cfg)

    def down(self) -> None:
        if self.kubelet is not None:
            self.kubelet.stop()
            self.kubelet = None
        for name in ("kube-apiserver", "etcd"):
            proc = self.procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def __enter__(self) -> LocalKube:
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()


def register_nodes(api: Any, nodes: Iterable[str]) -> None:
    """Create ``nodes`` with e2-standard-4 capacity, mark them Ready and clear the not-ready taint.

    Kubernetes 1.20's TaintNodesByCondition admission gives a new node ``node.kubernetes.io/not-ready:NoSchedule``;
    a kubelet's first Ready status would make the node-lifecycle controller remove it. There is neither here.
    """
    from kubernetes import client

    core = client.CoreV1Api(api)
    for name in nodes:
        capacity = {"cpu": NODE_CPU, "memory": NODE_MEMORY, "pods": NODE_PODS}
        core.create_node(client.V1Node(metadata=client.V1ObjectMeta(name=name, labels={
            "kubernetes.io/hostname": name, "type": "edgemigrate-fake"})))
        now = dt.datetime.now(dt.UTC).isoformat()
        core.patch_node_status(name, {"status": {
            "capacity": capacity, "allocatable": capacity,
            "conditions": [{"type": "Ready", "status": "True", "reason": "FakeKubeletReady",
                            "lastHeartbeatTime": now, "lastTransitionTime": now}]}})
        core.patch_node(name, {"spec": {"taints": None}})


class FakeKubelet:
    """Marks pods bound to ``nodes`` Running/Ready and finishes their deletions (what KWOK does).

    ``ready_delay_s`` stands for the container start time of a real kubelet (image present): a pod becomes
    Ready that long after it is first seen. One thread watches the pods (the official client's watch); a
    timer per pending pod marks it ready.
    """

    def __init__(self, kubeconfig: Path, nodes: Iterable[str], *, ready_delay_s: float = 0.0) -> None:
        self.kubeconfig = kubeconfig
        self.nodes = frozenset(nodes)
        self.ready_delay_s = ready_delay_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._timers: list[threading.Timer] = []
        self._ips: dict[str, str] = {}
        self.errors: list[str] = []

    def start(self) -> None:
        from kubernetes import client, config

        cfg = client.Configuration()
        config.load_kube_config(config_file=str(self.kubeconfig), client_configuration=cfg)
        self._core = client.CoreV1Api(client.ApiClient(cfg))
        self._thread = threading.Thread(target=self._run, name="fake-kubelet", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._timers:
            t.cancel()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        version = ""
        while not self._stop.is_set():
            try:
                if not version:  # list first, then watch from the list's version (no event is missed)
                    pods = self._core.list_pod_for_all_namespaces(_request_timeout=10)
                    for pod in pods.items:
                        self._handle(pod)
                    version = pods.metadata.resource_version
                w = watch.Watch()
                for ev in w.stream(self._core.list_pod_for_all_namespaces, resource_version=version,
                                   timeout_seconds=1, _request_timeout=10):
                    obj = ev["object"]
                    version = obj.metadata.resource_version or version
                    if ev["type"] in ("ADDED", "MODIFIED"):
                        self._handle(obj)
                    if self._stop.is_set():
                        w.stop()
            except ApiException as exc:
                if exc.status == 410:  # the watched version is too old: list again
                    version = ""
                    continue
                self._error(f"watch: {exc.status} {exc.reason}")
            except Exception as exc:  # the API server went away (teardown) or a transient error
                if not self._stop.is_set():
                    self._error(f"watch: {type(exc).__name__}: {str(exc)[:200]}")
                    self._stop.wait(0.2)

    def _error(self, text: str) -> None:
        log.warning("fake kubelet: %s", text)
        self.errors.append(text)
        del self.errors[:-100]

    def _handle(self, pod: Any) -> None:
        if pod.spec.node_name not in self.nodes:
            return
        ns, name = pod.metadata.namespace, pod.metadata.name
        if pod.metadata.deletion_timestamp is not None:
            self._finish_deletion(ns, name)
            return
        if pod.status.phase == "Running":
            return
        key = f"{ns}/{name}/{pod.metadata.uid}"
        if key in self._ips:
            return
        self._ips[key] = f"{POD_CIDR_PREFIX}.{len(self._ips) // 250 % 250}.{len(self._ips) % 250 + 1}"
        if self.ready_delay_s <= 0:
            self._mark_running(ns, name, pod, self._ips[key])
            return
        t = threading.Timer(self.ready_delay_s, self._mark_running, (ns, name, pod, self._ips[key]))
        t.daemon = True
        self._timers.append(t)
        t.start()

    def _finish_deletion(self, ns: str, name: str) -> None:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        try:
            self._core.delete_namespaced_pod(name, ns, body=client.V1DeleteOptions(grace_period_seconds=0),
                                             _request_timeout=10)
        except ApiException as exc:
            if exc.status != 404:
                self._error(f"delete {ns}/{name}: {exc.status} {exc.reason}")

    def _mark_running(self, ns: str, name: str, pod: Any, ip: str) -> None:
        from kubernetes.client.exceptions import ApiException

        if self._stop.is_set():
            return
        now = dt.datetime.now(dt.UTC).isoformat()
        cond = [{"type": t, "status": "True", "lastTransitionTime": now}
                for t in ("Initialized", "ContainersReady", "Ready", "PodScheduled")]
        containers = [{"name": c.name, "image": c.image, "imageID": "", "ready": True, "restartCount": 0,
                       "started": True, "state": {"running": {"startedAt": now}}} for c in pod.spec.containers]
        body = {"status": {"phase": "Running", "conditions": cond, "hostIP": "127.0.0.1", "podIP": ip,
                           "podIPs": [{"ip": ip}], "startTime": now, "containerStatuses": containers}}
        try:
            self._core.patch_namespaced_pod_status(name, ns, body, _request_timeout=10)
        except ApiException as exc:
            if exc.status != 404:  # deleted before it started: nothing to mark
                self._error(f"status of {ns}/{name}: {exc.status} {exc.reason}")
