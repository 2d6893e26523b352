"""Agents as Kubernetes pods, behind the same :class:`~optio.runtime.base.Runtime` port as local processes.

Each launch is one Pod (``restartPolicy: Never``) named and labelled after the run's kind, id, attempt and purpose,
with the image of its agent type, requests and limits, a non-root security context with no privilege escalation
and no capabilities, no service-account token, and an egress NetworkPolicy (one per namespace, selecting Optio's
pods) built from settings. Whatever the agent gets that could be secret reaches it through a per-run Secret owned
by the Pod: every environment variable is a ``secretKeyRef`` (the Pod spec names keys, never values), and the
files the control plane prepared (prompt, vendor config, stdin) are mounted from it at the paths the command
expects. The Secret is created first, then the Pod, then the Secret gets the Pod as its owner, so the cluster's
garbage collector removes it with the Pod; Optio also deletes both itself once a run's exit is reported, so no
controller is needed for the cleanup.

The worktree is made inside the pod: an init container clones the branch the :data:`CheckoutSource` names (a
forge URL or Optio's own git endpoint, with credentials from the Secret) into an emptyDir mounted at the
worktree's path, so paths in the command stay valid.

Output comes from the ``pods/log`` follow API with ``timestamps=true``. The offset reported with each batch is the
nanosecond timestamp of its last line; a reconnect (or a new server adopting the pod) asks for ``sinceTime`` at the
second of that timestamp and drops every line not later than it, so nothing is delivered twice and nothing is
skipped. The exit code is the agent container's terminated state. ``kill`` deletes the pod with a grace period.
A restarted server re-adopts pods through :meth:`adopt` (the pod is found by name; the ``pid`` persisted for it is
a stable hash kept in a label, so :meth:`is_alive` can find it by label), and :meth:`collect_garbage` deletes pods
and Secrets of runs that no longer have a live process.

The client is the official ``kubernetes`` package: it is maintained by the Kubernetes project with the API's own
generated models, reads kubeconfig and in-cluster credentials, and is synchronous, which fits this runtime's
one-thread-per-process design (the local runtime's) without an event loop. ``pods/log`` with ``sinceTime`` is not
among its generated parameters, so that one call goes through its ``ApiClient.call_api`` with the same auth.
"""

from __future__ import annotations

import base64
import calendar
import contextlib
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import structlog
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.rest import ApiException

from optio.runtime.base import ExitReason, LaunchSpec, OutputSink, ProcessInfo, RuntimeLaunchError
from optio.runtime.pod_git import WRAPPER_SCRIPT

log = structlog.get_logger(__name__)

MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_KIND = "optio.dev/run-kind"
LABEL_RUN = "optio.dev/run-id"
LABEL_ATTEMPT = "optio.dev/attempt"
LABEL_PURPOSE = "optio.dev/purpose"
LABEL_PID = "optio.dev/pid"
ANNOTATION_KEY = "optio.dev/key"
ANNOTATION_WORKTREE = "optio.dev/worktree"
AGENT_CONTAINER = "agent"
CHECKOUT_CONTAINER = "checkout"
POLICY_NAME = "optio-agents-egress"
SELECTOR = f"{MANAGED_BY}=optio"
_MAX_BATCH = 500
_MAX_RETRY_DELAY_S = 2.0


@dataclass(frozen=True)
class GitSource:
    """Where the init container clones the worktree from; ``auth_header`` is sent as an HTTP header and is secret."""

    url: str
    branch: str
    auth_header: str | None = None
    handback: bool = False  # the pod pushes its worktree back to ``url`` (Optio's exchange) after the agent


class Exchange(Protocol):
    """Optio's git exchange with its pods (:class:`optio.runtime.pod_git.PodGit`)."""

    def collect(self, name: str, worktree: Path) -> bool: ...

    def remove(self, name: str) -> None: ...


CheckoutSource = Callable[[LaunchSpec], GitSource | None]


@dataclass(frozen=True)
class KubeSettings:
    """What the runtime needs from Optio's settings (see ``Settings.kube_*``)."""

    namespace: str = "optio"
    images: dict[str, str] = field(default_factory=dict)
    default_image: str = "optio-agent:latest"
    git_image: str | None = None
    cpu_request: str = "250m"
    cpu_limit: str = "2"
    memory_request: str = "512Mi"
    memory_limit: str = "4Gi"
    run_as_user: int = 1000
    egress_cidrs: tuple[str, ...] = ()
    egress_ports: tuple[int, ...] = (443,)
    kill_grace_s: int = 10
    poll_interval_s: float = 0.5


def api_client(*, kubeconfig: Path | None = None, url: str | None = None, token: str | None = None,
               ca_file: Path | None = None) -> k8s.ApiClient:
    """A client from an explicit URL and token, a kubeconfig file, or the pod's in-cluster credentials."""
    config = k8s.Configuration()
    if url:
        config.host = url
        if token:
            config.api_key = {"authorization": f"Bearer {token}"}
        if ca_file:
            config.ssl_ca_cert = str(ca_file)
    elif kubeconfig:
        k8s_config.load_kube_config(config_file=str(kubeconfig), client_configuration=config)
    else:
        k8s_config.load_incluster_config(client_configuration=config)
    return k8s.ApiClient(config)


def pod_name(key: str) -> str:
    """A DNS-1123 name for a process key (``kind:id:attempt[:purpose]``), unique per key."""
    name = "optio-" + re.sub(r"[^a-z0-9-]+", "-", key.lower().replace(":", "-")).strip("-")
    if len(name) > 63 or name != name.strip("-"):
        name = name[:54].rstrip("-") + "-" + hashlib.sha256(key.encode()).hexdigest()[:8]
    return name


def pseudo_pid(key: str) -> int:
    """A stable positive number standing in for a pid in the process table, also kept as a pod label."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") & 0x7FFFFFFF or 1


def labels_for(key: str) -> dict[str, str]:
    parts = key.split(":")
    labels = {MANAGED_BY: "optio", LABEL_PID: str(pseudo_pid(key))}
    for label, value in zip((LABEL_KIND, LABEL_RUN, LABEL_ATTEMPT, LABEL_PURPOSE), parts, strict=False):
        labels[label] = re.sub(r"[^A-Za-z0-9_.-]", "-", value)[:63]
    labels.setdefault(LABEL_PURPOSE, "agent")
    return labels


def parse_timestamp(text: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 timestamp as the kubelet writes them (``...T..:..:..[.n]Z``)."""
    match = re.fullmatch(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)", text)
    if match is None:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    zone = match.group(8)
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        seconds -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return seconds * 1_000_000_000 + int((match.group(7) or "0").ljust(9, "0"))


def since_time(last_ns: int) -> str:
    """The ``sinceTime`` that includes the line at ``last_ns`` (the API takes whole seconds)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(last_ns // 1_000_000_000))


class _Watcher(threading.Thread):
    """Follows one pod's agent log into the sink and reports its exit once, after all of its output."""

    def __init__(self, runtime: KubernetesRuntime, info: ProcessInfo, last_ns: int) -> None:
        super().__init__(name=f"optio-kube:{info.key}", daemon=True)
        self.runtime = runtime
        self.info = info
        self.name_ = pod_name(info.key)
        self.last_ns = last_ns
        self.kill_reason: ExitReason | None = None
        self.finished = False
        self.worktree: str | None = None
        self._response: Any = None

    def request_kill(self, reason: ExitReason, grace_s: float) -> None:
        if self.kill_reason is None:
            self.kill_reason = reason
        self.runtime._delete_pod(self.name_, grace_s)

    def run(self) -> None:
        timer: threading.Timer | None = None
        if self.info.timeout_at is not None:
            # The log stream blocks the loop, so the deadline is kept by a timer of its own.
            timer = threading.Timer(max(0.0, self.info.timeout_at - time.time()), self.request_kill,
                                    args=("timeout", float(self.runtime.settings.kill_grace_s)))
            timer.daemon = True
            timer.start()
        try:
            self._watch()
        except Exception:
            log.exception("kubernetes watcher crashed", key=self.info.key)
        finally:
            if timer is not None:
                timer.cancel()
            self.runtime._forget(self)

    def _watch(self) -> None:
        rt = self.runtime
        while not rt._stopping.is_set():
            pod = rt._read_pod(self.name_)
            if pod is None:
                self._drain_and_exit(None, self.kill_reason or "lost")
                return
            self.worktree = (pod.metadata.annotations or {}).get(ANNOTATION_WORKTREE)
            state = _agent_state(pod)
            if state == "waiting" and pod.status is not None and pod.status.phase not in ("Failed", "Succeeded"):
                rt._stopping.wait(rt.settings.poll_interval_s)
                continue
            # Running (or ended): follow the log until the stream closes, then look at the pod again.
            if self._follow(follow=state == "running") == 0:
                rt._stopping.wait(rt.settings.poll_interval_s)  # ended, but its status is not written yet
            pod = rt._read_pod(self.name_)
            terminated = _agent_terminated(pod) if pod is not None else None
            if pod is None or terminated is not None or (pod.status is not None and pod.status.phase in
                                                          ("Failed", "Succeeded")):
                code = terminated.exit_code if terminated is not None else None
                reason: ExitReason = self.kill_reason or ("exited" if terminated is not None else "lost")
                self._drain_and_exit(code, reason)
                return

    def _drain_and_exit(self, code: int | None, reason: ExitReason) -> None:
        """Deliver what is left of the log (if the pod is still there), report the exit, remove pod and Secret."""
        if self.runtime._read_pod(self.name_) is not None:
            self._follow(follow=False)
        if self.worktree is not None and self.runtime.exchange is not None and reason == "exited":
            try:
                handed_back = self.runtime.exchange.collect(self.name_, Path(self.worktree))
            except Exception:
                log.exception("cannot take back the pod's worktree", key=self.info.key)
                handed_back = False
            if not handed_back:  # the work is not here: the attempt counts as lost, not as "no changes"
                log.warning("pod handed back no worktree", key=self.info.key, exit_code=code)
                code, reason = None, "lost"
        while not self.runtime._stopping.is_set():
            try:
                self.runtime._sink.on_exit(self.info.key, code, reason)
                break
            except Exception:
                log.exception("exit sink failed; will retry", key=self.info.key)
                self.runtime._stopping.wait(_MAX_RETRY_DELAY_S)
        else:
            return
        self.finished = True
        self.runtime._cleanup(self.name_)

    def _follow(self, *, follow: bool) -> int:
        """Deliver the log from the last delivered line on; how many new lines there were."""
        rt = self.runtime
        delivered = 0
        try:
            response = rt._log_stream(self.name_, follow=follow, since_ns=self.last_ns)
        except ApiException as exc:
            if exc.status in (400, 404):  # not started yet / gone: the caller looks at the pod again
                return 0
            raise
        self._response = response
        try:
            # One batch per chunk the API server sent: lines reach the sink as soon as they arrive.
            for chunk in _line_batches(response):
                batch: list[str] = []
                batch_ns = self.last_ns
                for line in chunk:
                    stamp, _, text = line.partition(" ")
                    try:
                        ns = parse_timestamp(stamp)
                    except ValueError:
                        continue
                    if ns <= batch_ns:
                        continue  # delivered before this (re)connect
                    batch.append(text)
                    batch_ns = ns
                    if len(batch) >= _MAX_BATCH:
                        self._deliver(batch, batch_ns)
                        delivered += len(batch)
                        batch = []
                if batch:
                    self._deliver(batch, batch_ns)
                    delivered += len(batch)
        except Exception as exc:  # a dropped connection: resume from the last delivered line
            if not rt._stopping.is_set():
                log.info("kubernetes log stream interrupted; resuming", key=self.info.key, error=str(exc))
        finally:
            with contextlib.suppress(Exception):
                response.release_conn()
            self._response = None
        return delivered

    def _deliver(self, lines: list[str], end_ns: int) -> None:
        delay = self.runtime.settings.poll_interval_s
        while True:
            try:
                self.runtime._sink.on_output(self.info.key, "stdout", lines, end_ns)
            except Exception:
                log.exception("output sink failed; will retry", key=self.info.key)
                if self.runtime._stopping.wait(delay):
                    raise
                delay = min(delay * 2, _MAX_RETRY_DELAY_S)
                continue
            self.last_ns = end_ns
            return

    def interrupt(self) -> None:
        response = self._response
        if response is not None:
            with contextlib.suppress(Exception):
                response.shutdown()


def _api_message(exc: ApiException) -> str:
    """The API server's own explanation (its Status message), which names the invalid field."""
    try:
        return str(json.loads(exc.body or "{}").get("message", ""))[:1000]
    except (ValueError, AttributeError):
        return ""


def _line_batches(response: Any) -> Iterator[list[str]]:
    """The complete lines of each chunk of a streamed response (a partial line waits for the next chunk)."""
    pending = b""
    for chunk in response.stream(64 * 1024, decode_content=False):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        if complete:
            yield [raw.decode("utf-8", errors="replace") for raw in complete]
    if pending:
        yield [pending.decode("utf-8", errors="replace")]


def _agent_status(pod: k8s.V1Pod) -> k8s.V1ContainerStatus | None:
    statuses = (pod.status.container_statuses if pod.status is not None else None) or []
    return next((s for s in statuses if s.name == AGENT_CONTAINER), None)


def _agent_terminated(pod: k8s.V1Pod) -> k8s.V1ContainerStateTerminated | None:
    status = _agent_status(pod)
    return status.state.terminated if status is not None and status.state is not None else None


def _agent_state(pod: k8s.V1Pod) -> str:
    status = _agent_status(pod)
    if status is None or status.state is None:
        return "waiting"
    if status.state.terminated is not None:
        return "terminated"
    return "running" if status.state.running is not None else "waiting"


class KubernetesRuntime:
    """Runs each agent process as a Pod; see the module docstring."""

    def __init__(self, sink: OutputSink, settings: KubeSettings, client: k8s.ApiClient, *,
                 checkout: CheckoutSource | None = None, exchange: Exchange | None = None) -> None:
        self._sink = sink
        self.settings = settings
        self.client = client
        self.core = k8s.CoreV1Api(client)
        self.net = k8s.NetworkingV1Api(client)
        self.checkout = checkout
        self.exchange = exchange
        self._watchers: dict[str, _Watcher] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._policy_ready = False

    @property
    def namespace(self) -> str:
        return self.settings.namespace

    # -- the Runtime port --------------------------------------------------------------------------------

    def launch(self, spec: LaunchSpec) -> ProcessInfo:
        if self._stopping.is_set():
            raise RuntimeLaunchError(f"{spec.key}: runtime is shut down")
        if not spec.argv:
            raise RuntimeLaunchError(f"{spec.key}: empty command")
        with self._lock:
            if spec.key in self._watchers:
                raise RuntimeLaunchError(f"{spec.key}: a process with this key is already running")
        name = pod_name(spec.key)
        try:
            source = self.checkout(spec) if self.checkout is not None else None
        except Exception as exc:
            raise RuntimeLaunchError(f"{spec.key}: cannot prepare the pod's worktree: {exc}") from exc
        try:
            self._ensure_policy()
            secret_data, pod = self._manifests(spec, name, source)
            self.core.create_namespaced_secret(self.namespace, {
                "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": name, "labels": labels_for(spec.key), "annotations": {ANNOTATION_KEY: spec.key}},
                "data": secret_data,
            })
            created = self.core.create_namespaced_pod(self.namespace, pod)
            self.core.patch_namespaced_secret(name, self.namespace, {"metadata": {"ownerReferences": [{
                "apiVersion": "v1", "kind": "Pod", "name": name, "uid": created.metadata.uid,
                "blockOwnerDeletion": False}]}})
        except ApiException as exc:
            self._cleanup(name)
            raise RuntimeLaunchError(f"{spec.key}: Kubernetes refused the pod: {exc.status} {exc.reason}: "
                                     f"{_api_message(exc)}") from exc
        except OSError as exc:
            self._cleanup(name)
            raise RuntimeLaunchError(f"{spec.key}: cannot prepare the pod: {exc}") from exc
        started_at = time.time()
        created_ts = created.metadata.creation_timestamp
        info = ProcessInfo(
            key=spec.key, pid=pseudo_pid(spec.key),
            start_time=created_ts.timestamp() if created_ts is not None else started_at,
            log_dir=spec.log_dir, started_at=started_at,
            timeout_at=None if spec.timeout_s is None else started_at + spec.timeout_s,
        )
        self._start(_Watcher(self, info, 0))
        log.info("agent pod created", key=spec.key, pod=name, namespace=self.namespace)
        return info

    def adopt(self, info: ProcessInfo, *, stdout_offset: int, stderr_offset: int) -> None:
        with self._lock:
            if info.key in self._watchers or self._stopping.is_set():
                return
            watcher = _Watcher(self, info, stdout_offset)
            self._watchers[info.key] = watcher
        watcher.start()
        log.info("agent pod adopted", key=info.key, pod=pod_name(info.key))

    def is_alive(self, pid: int, start_time: float) -> bool:
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=f"{SELECTOR},{LABEL_PID}={pid}").items
        return any(p.metadata.deletion_timestamp is None and p.status is not None
                   and p.status.phase not in ("Succeeded", "Failed") for p in pods)

    def exit_status(self, info: ProcessInfo) -> int | None:
        pod = self._read_pod(pod_name(info.key))
        terminated = _agent_terminated(pod) if pod is not None else None
        return terminated.exit_code if terminated is not None else None

    def kill(self, key: str, *, grace_s: float = 1.0) -> None:
        with self._lock:
            watcher = self._watchers.get(key)
        if watcher is not None:
            watcher.request_kill("killed", grace_s)
        else:
            self._delete_pod(pod_name(key), grace_s)

    def kill_info(self, info: ProcessInfo, *, grace_s: float = 1.0) -> None:
        self.kill(info.key, grace_s=grace_s)

    def active_keys(self) -> list[str]:
        with self._lock:
            return sorted(self._watchers)

    def shutdown(self) -> None:
        """Stop watching; the pods keep running so that the next server adopts them."""
        self._stopping.set()
        with self._lock:
            watchers = list(self._watchers.values())
        for watcher in watchers:
            watcher.interrupt()
        for watcher in watchers:
            watcher.join(timeout=5.0)

    def collect_garbage(self, live_keys: set[str]) -> list[str]:
        """Delete Optio's pods and Secrets whose key has no live process any more (ended runs, lost launches)."""
        removed: list[str] = []
        with self._lock:
            watched = set(self._watchers)
        for kind, items in (("pod", self.core.list_namespaced_pod(self.namespace, label_selector=SELECTOR).items),
                            ("secret", self.core.list_namespaced_secret(self.namespace,
                                                                        label_selector=SELECTOR).items)):
            for item in items:
                key = (item.metadata.annotations or {}).get(ANNOTATION_KEY, "")
                if key in live_keys or key in watched:
                    continue
                if kind == "pod":
                    self._delete_pod(item.metadata.name, float(self.settings.kill_grace_s))
                else:
                    with contextlib.suppress(ApiException):
                        self.core.delete_namespaced_secret(item.metadata.name, self.namespace)
                removed.append(f"{kind}/{item.metadata.name}")
        if removed:
            log.info("kubernetes garbage collected", objects=removed)
        return removed

    # -- manifests ----------------------------------------------------------------------------------

    def _manifests(self, spec: LaunchSpec, name: str,
                   source: GitSource | None) -> tuple[dict[str, str], dict[str, Any]]:
        """The Secret's data and the Pod; values only in the Secret, the Pod refers to keys."""
        data: dict[str, str] = {}

        def put(key: str, value: bytes) -> str:
            data[key] = base64.b64encode(value).decode()
            return key

        env = [{"name": var, "valueFrom": {"secretKeyRef": {"name": name, "key": put(f"env.{var}", val.encode())}}}
               for var, val in sorted(spec.env.items()) if re.fullmatch(r"[-._a-zA-Z0-9]+", var)]
        volumes: list[dict[str, Any]] = [{"name": "workspace", "emptyDir": {}},
                                         {"name": "run-files", "secret": {"secretName": name, "defaultMode": 0o440}}]
        mounts: list[dict[str, Any]] = [{"name": "workspace", "mountPath": str(spec.cwd)}]
        writable = list(spec.mounts.writable) if spec.mounts is not None else []
        readonly = list(spec.mounts.readonly) if spec.mounts is not None else []
        for index, path in enumerate(p for p in writable if p != spec.cwd):
            volumes.append({"name": f"dir-{index}", "emptyDir": {}})
            mounts.append({"name": f"dir-{index}", "mountPath": str(path)})
        files = [p for p in readonly if p.is_file()]
        for index, path in enumerate(files):
            key = put(f"file.{index}", path.read_bytes())
            mounts.append({"name": "run-files", "mountPath": str(path), "subPath": key, "readOnly": True})
        command = list(spec.argv)
        if spec.stdin_path is not None:
            key = put("stdin", spec.stdin_path.read_bytes())
            stdin_at = "/optio/stdin"
            mounts.append({"name": "run-files", "mountPath": stdin_at, "subPath": key, "readOnly": True})
            command = ["/bin/sh", "-c", 'exec "$@" < "$0"', stdin_at, *command]
        security = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": True,
                    "runAsUser": self.settings.run_as_user, "runAsGroup": self.settings.run_as_user}
        resources = {"requests": {"cpu": self.settings.cpu_request, "memory": self.settings.memory_request},
                     "limits": {"cpu": self.settings.cpu_limit, "memory": self.settings.memory_limit}}
        labels = labels_for(spec.key)
        image = self.settings.images.get(labels.get(LABEL_PURPOSE, ""), None)
        agent_type = spec.env.get("OPTIO_AGENT_TYPE", "")
        image = self.settings.images.get(agent_type) or image or self.settings.default_image
        init: list[dict[str, Any]] = []
        annotations = {ANNOTATION_KEY: spec.key}
        if source is not None:
            # Git's settings for the source only (URL-scoped): its credential header, from the Secret.
            config: list[tuple[str, dict[str, Any]]] = [("safe.directory", {"value": "*"})]
            if source.auth_header:
                put("git.header", source.auth_header.encode())
                config += [(f"http.{source.url}.extraHeader",
                            {"valueFrom": {"secretKeyRef": {"name": name, "key": "git.header"}}}),
                           (f"http.{source.url}.extraHeader", {"value": "X-Optio-CSRF: 1"})]
            git_config: list[dict[str, Any]] = [{"name": "GIT_CONFIG_COUNT", "value": str(len(config))}]
            for index, (config_key, value) in enumerate(config):
                git_config += [{"name": f"GIT_CONFIG_KEY_{index}", "value": config_key},
                               {"name": f"GIT_CONFIG_VALUE_{index}", **value}]
            git_env = [{"name": "HOME", "value": "/tmp"}, *git_config]
            if source.handback:
                env = [var for var in env if not str(var["name"]).startswith("GIT_CONFIG_")] + git_config
                command = ["/bin/sh", "-c", WRAPPER_SCRIPT, "optio-pod", *command]
                annotations[ANNOTATION_WORKTREE] = str(spec.cwd)
            init.append({
                "name": CHECKOUT_CONTAINER, "image": self.settings.git_image or image,
                "command": ["git", "clone", "--quiet", "--branch", source.branch, "--", source.url, str(spec.cwd)],
                "env": git_env, "volumeMounts": [{"name": "workspace", "mountPath": str(spec.cwd)}],
                "securityContext": security, "resources": resources,
            })
        pod = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels, "annotations": annotations},
            "spec": {
                "restartPolicy": "Never", "automountServiceAccountToken": False, "enableServiceLinks": False,
                "terminationGracePeriodSeconds": self.settings.kill_grace_s,
                "securityContext": {"runAsNonRoot": True, "runAsUser": self.settings.run_as_user,
                                    "runAsGroup": self.settings.run_as_user, "fsGroup": self.settings.run_as_user,
                                    "seccompProfile": {"type": "RuntimeDefault"}},
                "initContainers": init,
                "containers": [{"name": AGENT_CONTAINER, "image": image, "command": command,
                                "workingDir": str(spec.cwd), "env": env, "volumeMounts": mounts,
                                "securityContext": security, "resources": resources}],
                "volumes": volumes,
            },
        }
        return data, pod

    def _ensure_policy(self) -> None:
        """The namespace's egress policy for Optio's pods: DNS plus the configured CIDRs and ports, nothing else."""
        if self._policy_ready:
            return
        egress: list[dict[str, Any]] = [{"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]
        if self.settings.egress_cidrs:
            egress.append({"to": [{"ipBlock": {"cidr": cidr}} for cidr in self.settings.egress_cidrs],
                           "ports": [{"protocol": "TCP", "port": p} for p in self.settings.egress_ports]})
        policy = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                  "metadata": {"name": POLICY_NAME, "labels": {MANAGED_BY: "optio"}},
                  "spec": {"podSelector": {"matchLabels": {MANAGED_BY: "optio"}}, "policyTypes": ["Egress"],
                           "egress": egress}}
        try:
            self.net.create_namespaced_network_policy(self.namespace, policy)
        except ApiException as exc:
            if exc.status != 409:
                raise
            self.net.replace_namespaced_network_policy(POLICY_NAME, self.namespace, policy)
        self._policy_ready = True

    # -- helpers --------------------------------------------------------------------------------------

    def _read_pod(self, name: str) -> k8s.V1Pod | None:
        delay = self.settings.poll_interval_s
        while True:
            try:
                return self.core.read_namespaced_pod(name, self.namespace)
            except ApiException as exc:
                if exc.status == 404:
                    return None
                log.warning("cannot read pod; will retry", pod=name, status=exc.status)
            except Exception as exc:  # the API server is briefly unreachable
                log.warning("cannot read pod; will retry", pod=name, error=str(exc))
            if self._stopping.wait(delay):
                raise RuntimeError("runtime is shutting down")
            delay = min(delay * 2, _MAX_RETRY_DELAY_S)

    def _log_stream(self, name: str, *, follow: bool, since_ns: int) -> Any:
        query: list[tuple[str, str]] = [("container", AGENT_CONTAINER), ("timestamps", "true"),
                                        ("follow", "true" if follow else "false")]
        if since_ns > 0:
            query.append(("sinceTime", since_time(since_ns)))
        return self.client.call_api(
            f"/api/v1/namespaces/{self.namespace}/pods/{name}/log", "GET", path_params={}, query_params=query,
            header_params={"Accept": "*/*"}, auth_settings=["BearerToken"], _preload_content=False,
            _return_http_data_only=True, _request_timeout=(10, None) if follow else 60,
        )

    def _delete_pod(self, name: str, grace_s: float) -> None:
        with contextlib.suppress(ApiException):
            self.core.delete_namespaced_pod(name, self.namespace, grace_period_seconds=max(1, round(grace_s)))

    def _cleanup(self, name: str) -> None:
        """Remove a run's pod and Secret once its exit is stored (the owner reference also covers the Secret)."""
        if self.exchange is not None:
            self.exchange.remove(name)
        for delete in (lambda: self.core.delete_namespaced_pod(name, self.namespace, grace_period_seconds=1),
                       lambda: self.core.delete_namespaced_secret(name, self.namespace)):
            with contextlib.suppress(ApiException):
                delete()

    def _start(self, watcher: _Watcher) -> None:
        with self._lock:
            self._watchers[watcher.info.key] = watcher
        watcher.start()

    def _forget(self, watcher: _Watcher) -> None:
        with self._lock:
            if self._watchers.get(watcher.info.key) is watcher:
                del self._watchers[watcher.info.key]
