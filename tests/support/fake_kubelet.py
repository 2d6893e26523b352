"""A test double of a Kubernetes node: it does a kubelet's job for the pods bound to it, with local processes.

No container engine runs on the test machines, so this stands in for the kubelet. It is a double, not a mock: it
talks to the real API server only, the way a kubelet does. It registers a Ready Node whose kubelet endpoint is its
own HTTPS server, watches the pods the real scheduler binds to that node, runs each pod's containers (init
containers one after another first, then the others together) as local processes, and writes the pod's status
(phase, container states with exit codes) back through the API. Images are not pulled: a container's ``command``
and ``args`` run on the host, inside a bubblewrap mount namespace that gives the container its volumes at their
mount paths (emptyDir and Secret volumes as temporary directories), its working dir, its environment (values,
``secretKeyRef`` and ``envFrom`` Secrets resolved like a kubelet does) and its ``runAsUser`` in a user namespace.
A deleted pod's processes get SIGTERM, SIGKILL after its grace period, and then the pod is removed, as a kubelet
finalises a deletion.

Container output is kept with a nanosecond timestamp per line and served on the kubelet API's
``/containerLogs/{namespace}/{pod}/{container}`` (``follow``, ``sinceTime``, ``timestamps``, ``tailLines``), which
the API server proxies for ``pods/log``; it only accepts the API server's client certificate.

Limits: no probes, no restarts (``restartPolicy`` is treated as ``Never``), no resource enforcement, no networking
(NetworkPolicies are stored by the API server but not enforced here).
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import os
import shutil
import signal
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from kubernetes import client as k8s
from kubernetes import watch as k8s_watch
from kubernetes.client.rest import ApiException
from tests.support.http_listener import never_blocks_in_handshake
from tests.support.kube_cluster import KubeCluster

_HOST_SKIP = {"proc", "dev", "sys", "lost+found"}


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _rfc3339_nano(ns: int) -> str:
    seconds, frac = divmod(ns, 1_000_000_000)
    stamp = datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{frac:09d}Z"


def _parse_time(text: str) -> int:
    return int(datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1_000_000_000)


@dataclass
class ContainerRun:
    """One container's process and its output (lines with strictly increasing nanosecond timestamps)."""

    name: str
    lines: list[tuple[int, str]] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)
    proc: subprocess.Popen[bytes] | None = None
    started_at: str | None = None
    finished_at: str | None = None
    exit_code: int | None = None
    waiting_reason: str | None = "ContainerCreating"
    message: str | None = None
    done: bool = False
    _last_ns: int = 0

    def append(self, text: str) -> None:
        with self.cond:
            ns = max(time.time_ns(), self._last_ns + 1)
            self._last_ns = ns
            self.lines.append((ns, text))
            self.cond.notify_all()

    def finish(self, code: int, message: str | None = None) -> None:
        with self.cond:
            self.exit_code = code
            self.message = message
            self.finished_at = _now()
            self.waiting_reason = None
            self.done = True
            self.cond.notify_all()

    def status(self) -> dict[str, Any]:
        state: dict[str, Any]
        if self.done:
            state = {"terminated": {"exitCode": self.exit_code, "reason": "Completed" if self.exit_code == 0
                                    else "Error", "startedAt": self.started_at or self.finished_at,
                                    "finishedAt": self.finished_at, "message": self.message}}
        elif self.started_at is not None:
            state = {"running": {"startedAt": self.started_at}}
        else:
            state = {"waiting": {"reason": self.waiting_reason or "PodInitializing"}}
        return {"name": self.name, "state": state, "ready": self.started_at is not None and not self.done,
                "restartCount": 0, "image": "fake", "imageID": "fake://", "started": self.started_at is not None}


class PodRun(threading.Thread):
    """Runs one pod to its end (or its deletion) and reports its status."""

    def __init__(self, kubelet: FakeKubelet, pod: k8s.V1Pod) -> None:
        super().__init__(name=f"fake-kubelet:{pod.metadata.name}", daemon=True)
        self.kubelet = kubelet
        self.pod = pod
        self.ns: str = pod.metadata.namespace
        self.name: str = pod.metadata.name
        self.uid: str = pod.metadata.uid
        self.dir = kubelet.root / "pods" / self.uid
        self.init_runs = [ContainerRun(c.name) for c in pod.spec.init_containers or []]
        self.runs = [ContainerRun(c.name) for c in pod.spec.containers]
        self.deleting = threading.Event()
        self.phase = "Pending"
        self.lock = threading.Lock()

    def container(self, name: str) -> ContainerRun | None:
        return next((r for r in [*self.init_runs, *self.runs] if r.name == name), None)

    # -- status ------------------------------------------------------------------------------------

    def report(self) -> None:
        status = {
            "phase": self.phase, "hostIP": "127.0.0.1", "podIP": "127.0.0.1",
            "podIPs": [{"ip": "127.0.0.1"}],
            "startTime": self.pod.status.start_time.strftime("%Y-%m-%dT%H:%M:%SZ") if self.pod.status and
            self.pod.status.start_time else _now(),
            "initContainerStatuses": [r.status() for r in self.init_runs],
            "containerStatuses": [r.status() for r in self.runs],
            "conditions": [{"type": "PodScheduled", "status": "True"},
                           {"type": "Ready", "status": "True" if self.phase == "Running" else "False"}],
        }
        with contextlib.suppress(ApiException):
            self.kubelet.api.patch_namespaced_pod_status(self.name, self.ns, {"status": status})

    # -- running -------------------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            volumes = self._volumes()
            self.report()
            for spec, crun in zip(self.pod.spec.init_containers or [], self.init_runs, strict=True):
                self._start(spec, crun, volumes)
                self._wait(crun)
                if crun.exit_code != 0 or self.deleting.is_set():
                    for later in self.runs:
                        later.waiting_reason = "PodInitializing"
                    self.phase = "Failed"
                    self.report()
                    return
                self.report()
            for spec, crun in zip(self.pod.spec.containers, self.runs, strict=True):
                self._start(spec, crun, volumes)
            self.phase = "Running"
            self.report()
            for crun in self.runs:
                self._wait(crun)
            self.phase = "Succeeded" if all(r.exit_code == 0 for r in self.runs) else "Failed"
            self.report()
        except Exception as exc:  # a double that dies silently would hang the test: say why on the pod
            for crun in self.runs:
                if not crun.done:
                    crun.finish(128, f"fake kubelet error: {exc}")
            self.phase = "Failed"
            self.report()
            raise

    def _secret(self, name: str) -> dict[str, bytes]:
        secret = self.kubelet.api.read_namespaced_secret(name, self.ns)
        return {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}

    def _volumes(self) -> dict[str, Path]:
        paths: dict[str, Path] = {}
        for vol in self.pod.spec.volumes or []:
            path = self.dir / "volumes" / vol.name
            path.mkdir(parents=True, exist_ok=True)
            if vol.secret is not None:
                data = self._secret(vol.secret.secret_name)
                items = vol.secret.items or [k8s.V1KeyToPath(key=k, path=k) for k in data]
                for item in items:
                    target = path / item.path
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(data[item.key])
                    target.chmod(vol.secret.default_mode or 0o644)
            elif vol.empty_dir is None:
                raise ValueError(f"volume {vol.name}: only emptyDir and secret volumes are supported")
            paths[vol.name] = path
        return paths

    def _env(self, spec: k8s.V1Container) -> dict[str, str]:
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOSTNAME": self.name,
               "LANG": "C.UTF-8"}
        for source in spec.env_from or []:
            if source.secret_ref is not None:
                for key, value in self._secret(source.secret_ref.name).items():
                    env[(source.prefix or "") + key] = value.decode()
        for var in spec.env or []:
            if var.value_from is None:
                env[var.name] = var.value or ""
            elif var.value_from.secret_key_ref is not None:
                ref = var.value_from.secret_key_ref
                env[var.name] = self._secret(ref.name)[ref.key].decode()
            elif var.value_from.field_ref is not None:
                path = var.value_from.field_ref.field_path
                env[var.name] = {"metadata.name": self.name, "metadata.namespace": self.ns}.get(path, "")
        return env

    def _uid(self, spec: k8s.V1Container) -> tuple[int, int]:
        ctx = [c for c in (spec.security_context, self.pod.spec.security_context) if c is not None]
        uid = next((c.run_as_user for c in ctx if c.run_as_user is not None), 0)
        gid = next((c.run_as_group for c in ctx if c.run_as_group is not None), uid)
        non_root = next((c.run_as_non_root for c in ctx if c.run_as_non_root is not None), False)
        if non_root and uid == 0:
            raise PermissionError("container has runAsNonRoot and image will run as root")
        return uid, gid

    def _start(self, spec: k8s.V1Container, crun: ContainerRun, volumes: dict[str, Path]) -> None:
        argv = [*(spec.command or []), *(spec.args or [])]
        try:
            if not argv:
                raise ValueError("the fake node runs no images: a container needs a command")
            uid, gid = self._uid(spec)
            env = self._env(spec)
        except (ValueError, PermissionError, KeyError, ApiException) as exc:
            crun.append(f"fake-kubelet: {exc}")
            crun.finish(128, f"CreateContainerConfigError: {exc}")
            return
        wrap = ["bwrap", "--unshare-user", "--uid", str(uid), "--gid", str(gid), "--unshare-pid",
                "--dev", "/dev", "--proc", "/proc", "--ro-bind", "/sys", "/sys"]
        for entry in sorted(os.listdir("/")):
            if entry not in _HOST_SKIP:
                wrap += ["--bind", f"/{entry}", f"/{entry}"]
        for mount in spec.volume_mounts or []:
            source = volumes[mount.name] / mount.sub_path if mount.sub_path else volumes[mount.name]
            wrap += ["--ro-bind" if mount.read_only else "--bind", str(source), mount.mount_path]
        if spec.working_dir:
            wrap += ["--chdir", spec.working_dir]
        crun.proc = subprocess.Popen([*wrap, "--", *argv], env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        crun.started_at = _now()
        crun.waiting_reason = None
        threading.Thread(target=self._pump, args=(crun,), daemon=True).start()

    @staticmethod
    def _pump(crun: ContainerRun) -> None:
        assert crun.proc is not None and crun.proc.stdout is not None
        for raw in crun.proc.stdout:
            crun.append(raw.decode(errors="replace").rstrip("\n"))
        code = crun.proc.wait()
        crun.finish(code if code >= 0 else 128 - code)

    def _wait(self, crun: ContainerRun) -> None:
        with crun.cond:
            while not crun.done:
                crun.cond.wait(0.5)

    def kill(self, grace_s: float) -> None:
        """What a kubelet does for a deleted pod: TERM, KILL after the grace period, then the pod is gone."""
        self.deleting.set()
        running = [r for r in [*self.init_runs, *self.runs] if r.proc is not None and not r.done]
        for crun in running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(crun.proc.pid, signal.SIGTERM)  # type: ignore[union-attr]
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and any(not r.done for r in running):
            time.sleep(0.05)
        for crun in running:
            if not crun.done:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(crun.proc.pid, signal.SIGKILL)  # type: ignore[union-attr]
        for crun in [*self.init_runs, *self.runs]:
            if not crun.done:
                crun.finish(137)
        shutil.rmtree(self.dir, ignore_errors=True)


class FakeKubelet:
    """Registers ``node_name`` and runs its pods; :meth:`stop` ends every process it started."""

    def __init__(self, cluster: KubeCluster, root: Path, node_name: str = "fake-node") -> None:
        self.cluster = cluster
        self.root = root
        self.node_name = node_name
        config = k8s.Configuration()
        config.host = cluster.url
        config.ssl_ca_cert = str(cluster.ca_file)
        config.api_key = {"authorization": f"Bearer {cluster.admin_token}"}
        self.api = k8s.CoreV1Api(k8s.ApiClient(config))
        self.pods: dict[str, PodRun] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.log_requests: list[str] = []
        self._server = self._serve()
        self.port: int = self._server.server_address[1]

    # -- the kubelet API ---------------------------------------------------------------------------------

    def _serve(self) -> ThreadingHTTPServer:
        kubelet = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                kubelet._container_logs(self)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        assert cluster_cert(self.cluster) is not None
        cert, key = cluster_cert(self.cluster)
        context.load_cert_chain(str(cert), str(key))
        context.verify_mode = ssl.CERT_REQUIRED  # only the API server (with its kubelet client certificate)
        context.load_verify_locations(str(self.cluster.ca_file))
        never_blocks_in_handshake(server, context)
        threading.Thread(target=server.serve_forever, name="fake-kubelet-api", daemon=True).start()
        return server

    def _container_logs(self, handler: BaseHTTPRequestHandler) -> None:
        url = urlparse(handler.path)
        parts = url.path.strip("/").split("/")
        self.log_requests.append(handler.path)
        if len(parts) != 4 or parts[0] != "containerLogs":
            handler.send_error(404)
            return
        _, ns, pod_name, container = parts
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        with self.lock:
            pod = next((p for p in self.pods.values() if p.ns == ns and p.name == pod_name), None)
        crun = pod.container(container) if pod is not None else None
        if crun is None:
            handler.send_error(404, f"container {container} of pod {ns}/{pod_name} not found")
            return
        follow = query.get("follow") == "true"
        stamps = query.get("timestamps") == "true"
        since = _parse_time(query["sinceTime"]) if query.get("sinceTime") else 0
        tail = int(query["tailLines"]) if query.get("tailLines") else None
        handler.send_response(200)
        handler.send_header("Content-Type", "text/plain")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        with crun.cond:
            index = next((i for i, (ns_, _) in enumerate(crun.lines) if ns_ >= since), len(crun.lines))
            if tail is not None:
                index = max(index, len(crun.lines) - tail)
        try:
            while True:
                with crun.cond:
                    while index >= len(crun.lines) and follow and not crun.done and not self.stopping.is_set():
                        crun.cond.wait(0.5)
                    batch = crun.lines[index:]
                    index += len(batch)
                    ended = crun.done or not follow or self.stopping.is_set()
                if batch:
                    text = "".join(f"{_rfc3339_nano(t)} {line}\n" if stamps else f"{line}\n" for t, line in batch)
                    data = text.encode()
                    handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                    handler.wfile.flush()
                if ended and index >= len(crun.lines):
                    break
            handler.wfile.write(b"0\r\n\r\n")
            handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            return

    # -- the node and its pods ---------------------------------------------------------------------------------

    def start(self) -> FakeKubelet:
        node = {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": self.node_name, "labels": {"kubernetes.io/hostname": self.node_name,
                                                           "kubernetes.io/os": "linux"}},
            "status": {
                "capacity": {"cpu": "8", "memory": "16Gi", "pods": "110", "ephemeral-storage": "50Gi"},
                "allocatable": {"cpu": "8", "memory": "16Gi", "pods": "110", "ephemeral-storage": "50Gi"},
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                              {"type": "Hostname", "address": self.node_name}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": self.port}},
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                "message": "fake kubelet is ready", "lastHeartbeatTime": _now(),
                                "lastTransitionTime": _now()}],
                "nodeInfo": {"kubeletVersion": "v1.20.0-fake", "operatingSystem": "linux", "architecture": "amd64",
                             "machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": "", "osImage": "",
                             "containerRuntimeVersion": "fake://0", "kubeProxyVersion": ""},
            },
        }
        self.api.create_node(node)
        self._watcher = threading.Thread(target=self._watch, name="fake-kubelet-watch", daemon=True)
        self._watcher.start()
        return self

    def _watch(self) -> None:
        selector = f"spec.nodeName={self.node_name}"
        resource_version = None
        while not self.stopping.is_set():
            try:
                if resource_version is None:
                    listing = self.api.list_pod_for_all_namespaces(field_selector=selector)
                    for pod in listing.items:
                        self._seen(pod)
                    resource_version = listing.metadata.resource_version
                stream = k8s_watch.Watch().stream(self.api.list_pod_for_all_namespaces, field_selector=selector,
                                                  resource_version=resource_version, timeout_seconds=5)
                for event in stream:
                    pod = event["object"]
                    resource_version = pod.metadata.resource_version
                    if event["type"] != "DELETED":
                        self._seen(pod)
                    if self.stopping.is_set():
                        break
            except ApiException as exc:
                if exc.status == 410:
                    resource_version = None
                elif not self.stopping.is_set():
                    time.sleep(0.5)
            except Exception:
                if not self.stopping.is_set():
                    time.sleep(0.5)

    def _seen(self, pod: k8s.V1Pod) -> None:
        uid = pod.metadata.uid
        with self.lock:
            run = self.pods.get(uid)
            if run is None and pod.metadata.deletion_timestamp is None:
                run = self.pods[uid] = PodRun(self, pod)
                run.start()
                return
        if pod.metadata.deletion_timestamp is not None and run is not None and not run.deleting.is_set():
            grace = pod.metadata.deletion_grace_period_seconds or 0
            threading.Thread(target=self._finalise, args=(run, pod, grace), daemon=True).start()
        elif pod.metadata.deletion_timestamp is not None and run is None:
            self._remove(pod)

    def _finalise(self, run: PodRun, pod: k8s.V1Pod, grace: int) -> None:
        run.kill(float(grace))
        run.join(timeout=10)
        self._remove(pod)

    def _remove(self, pod: k8s.V1Pod) -> None:
        with contextlib.suppress(ApiException):
            # With a body, the API server reads the options from it only (query parameters are ignored).
            self.api.delete_namespaced_pod(pod.metadata.name, pod.metadata.namespace, body=k8s.V1DeleteOptions(
                grace_period_seconds=0, preconditions=k8s.V1Preconditions(uid=pod.metadata.uid)))
        with self.lock:
            self.pods.pop(pod.metadata.uid, None)

    def stop(self) -> None:
        self.stopping.set()
        with self.lock:
            runs = list(self.pods.values())
        for run in runs:
            run.kill(0)
        self._server.shutdown()
        self._server.server_close()


def cluster_cert(cluster: KubeCluster) -> tuple[Path, Path]:
    assert cluster.kubelet_serving_cert is not None
    return cluster.kubelet_serving_cert
