"""The Kubernetes runtime against a real kube-apiserver and kube-scheduler, with the fake node running the pods.

Optio's client authenticates as the user ``optio`` bound to the Role the deployment manifests ship (rendered from
``deploy/base``), so every call it makes is authorised the way it would be in a cluster. The manifests of the
example overlay are also applied to the same API server with ``--dry-run=server``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException
from tests.support.fake_kubelet import FakeKubelet
from tests.support.git_http import GitHttpServer
from tests.support.kube_cluster import KubeCluster, start_cluster

from optio.runtime.base import LaunchSpec, Mounts
from optio.runtime.kubernetes import (
    LABEL_ATTEMPT,
    LABEL_KIND,
    LABEL_RUN,
    GitSource,
    KubernetesRuntime,
    KubeSettings,
    api_client,
    pod_name,
)

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "optio-agents"
SECRET_VALUE = "sk-test-4f9c1e7b2a-never-in-the-spec"
KUBECTL = shutil.which("kubectl")


class Sink:
    """The runtime's OutputSink as the control plane would use it: it keeps lines and the last offset."""

    def __init__(self, offset: int = 0) -> None:
        self.lines: dict[str, list[str]] = {}
        self.offsets: dict[str, int] = {}
        self.exits: dict[str, list[tuple[int | None, str]]] = {}
        self.cond = threading.Condition()
        self.fail_next = 0

    def on_output(self, key: str, stream: str, lines: list[str], offset: int) -> None:
        with self.cond:
            if self.fail_next:
                self.fail_next -= 1
                raise RuntimeError("database busy")
            self.lines.setdefault(key, []).extend(lines)
            self.offsets[key] = offset
            self.cond.notify_all()

    def on_exit(self, key: str, exit_code: int | None, reason: str) -> None:
        with self.cond:
            self.exits.setdefault(key, []).append((exit_code, reason))
            self.cond.notify_all()

    def wait(self, predicate: object, timeout_s: float = 60.0) -> None:
        with self.cond:
            assert self.cond.wait_for(predicate, timeout_s), f"timed out; lines={self.lines} exits={self.exits}"  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    root = tmp_path_factory.mktemp("kube")
    cluster = start_cluster(root / "cluster")
    kubelet = FakeKubelet(cluster, root / "node")
    try:
        kubelet.start()
        admin = _admin(cluster)
        admin.create_namespace({"metadata": {"name": NAMESPACE}})
        role = _rendered_role()
        k8s.RbacAuthorizationV1Api(admin.api_client).create_namespaced_role(NAMESPACE, role)
        k8s.RbacAuthorizationV1Api(admin.api_client).create_namespaced_role_binding(NAMESPACE, {
            "metadata": {"name": "optio-test"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]},
            "subjects": [{"kind": "User", "name": "optio", "apiGroup": "rbac.authorization.k8s.io"}],
        })
        cluster.kubelet = kubelet  # type: ignore[attr-defined]
        yield cluster
    finally:
        kubelet.stop()
        cluster.stop()


def _admin(cluster: KubeCluster) -> k8s.CoreV1Api:
    return k8s.CoreV1Api(api_client(url=cluster.url, token=cluster.admin_token, ca_file=cluster.ca_file))


def _rendered_role() -> dict:
    """The Role of deploy/base as kustomize renders it, placed in the test namespace."""
    if KUBECTL is None:
        pytest.skip("kubectl not installed")
    out = subprocess.run([KUBECTL, "kustomize", str(REPO_ROOT / "deploy" / "base")], check=True,
                         capture_output=True, text=True).stdout
    role = next(doc for doc in yaml.safe_load_all(out) if doc and doc["kind"] == "Role")
    role["metadata"]["namespace"] = NAMESPACE
    return role


def _runtime(cluster: KubeCluster, sink: Sink, **kwargs: object) -> KubernetesRuntime:
    settings = KubeSettings(namespace=NAMESPACE, default_image="optio-agent:test", images={"codex": "codex:1"},
                            cpu_request="100m", cpu_limit="1", memory_request="64Mi", memory_limit="256Mi",
                            run_as_user=1000, egress_cidrs=("10.20.0.0/16",), egress_ports=(443,),
                            kill_grace_s=5, poll_interval_s=0.1)
    client = api_client(url=cluster.url, token=cluster.optio_token, ca_file=cluster.ca_file)
    return KubernetesRuntime(sink, settings, client, **kwargs)  # type: ignore[arg-type]


def _spec(tmp_path: Path, key: str, script: str, env: dict[str, str] | None = None,
          timeout_s: float | None = None) -> LaunchSpec:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    prog = tmp_path / f"prog-{key.replace(':', '-')}.py"
    prog.write_text(script)
    return LaunchSpec(key=key, argv=[sys.executable, "-u", str(prog)], env=env or {}, cwd=work,
                      log_dir=tmp_path / "logs", timeout_s=timeout_s,
                      mounts=Mounts(writable=(work,), readonly=(prog,)))


def _gone(cluster: KubeCluster, name: str, timeout_s: float = 30.0) -> bool:
    admin = _admin(cluster)
    deadline = time.monotonic() + timeout_s
    left: list[str] = []
    while time.monotonic() < deadline:
        left = [f"pod/{p.metadata.name}" for p in admin.list_namespaced_pod(NAMESPACE).items
                if p.metadata.name == name]
        left += [f"secret/{s.metadata.name}" for s in admin.list_namespaced_secret(NAMESPACE).items
                 if s.metadata.name == name]
        if not left:
            return True
        time.sleep(0.1)
    print("left behind:", left)
    return False


def test_a_pod_per_attempt_with_labels_limits_security_and_secrets_by_reference(cluster: KubeCluster,
                                                                                 tmp_path: Path) -> None:
    sink = Sink()
    sink.fail_next = 2  # a busy database: the runtime retries the same batch, nothing is lost or repeated
    runtime = _runtime(cluster, sink)
    key = "repo_task:41:2"
    script = (f"import os\nassert os.environ['API_KEY'] == {SECRET_VALUE!r}\nprint('uid', os.getuid())\n"
              "for i in range(300):\n    print('line', i)\nraise SystemExit(3)\n")
    seen: dict[str, object] = {}
    admin = _admin(cluster)
    try:
        runtime.launch(_spec(tmp_path, key, script, env={"API_KEY": SECRET_VALUE, "OPTIO_RUN_ID": "41"}))
        name = pod_name(key)
        pod = admin.read_namespaced_pod(name, NAMESPACE)
        secret = admin.read_namespaced_secret(name, NAMESPACE)
        seen["pod"] = admin.api_client.sanitize_for_serialization(pod)
        sink.wait(lambda: key in sink.exits)
        seen["events"] = admin.api_client.sanitize_for_serialization(admin.list_namespaced_event(NAMESPACE))
    finally:
        runtime.shutdown()

    assert pod.metadata.labels[LABEL_KIND] == "repo_task"
    assert pod.metadata.labels[LABEL_RUN] == "41"
    assert pod.metadata.labels[LABEL_ATTEMPT] == "2"
    agent = pod.spec.containers[0]
    assert agent.image == "optio-agent:test"
    assert agent.resources.limits == {"cpu": "1", "memory": "256Mi"}
    assert agent.resources.requests == {"cpu": "100m", "memory": "64Mi"}
    assert agent.security_context.run_as_non_root is True and agent.security_context.run_as_user == 1000
    assert agent.security_context.allow_privilege_escalation is False
    assert agent.security_context.capabilities.drop == ["ALL"]
    assert pod.spec.automount_service_account_token is False
    # Every variable is a reference to the run's Secret; the Secret is owned by the Pod.
    assert all(var.value is None and var.value_from.secret_key_ref.name == name for var in agent.env)
    assert [ref.uid for ref in secret.metadata.owner_references or []] == [pod.metadata.uid]
    assert SECRET_VALUE not in json.dumps(seen)
    # The container ran as the non-root uid, its output arrived whole and in order, its exit code came back.
    assert sink.lines[key] == ["uid 1000", *(f"line {i}" for i in range(300))]
    assert sink.exits[key] == [(3, "exited")]
    assert _gone(cluster, name), "the pod or its Secret was left behind"
    policy = k8s.NetworkingV1Api(admin.api_client).read_namespaced_network_policy("optio-agents-egress", NAMESPACE)
    assert policy.spec.policy_types == ["Egress"]
    assert [b.ip_block.cidr for b in policy.spec.egress[1].to] == ["10.20.0.0/16"]


def test_the_worktree_is_cloned_inside_the_pod_by_an_init_container(cluster: KubeCluster, tmp_path: Path) -> None:
    bare = tmp_path / "remotes" / "app.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    seed = tmp_path / "seed"
    subprocess.run(["git", "init", "-q", "-b", "optio/task-7", str(seed)], check=True)
    (seed / "README").write_text("from the task branch\n")
    git = ["git", "-C", str(seed), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "add", "README"], check=True)
    subprocess.run([*git, "commit", "-qm", "task branch head"], check=True)
    subprocess.run([*git, "push", "-q", str(bare), "optio/task-7"], check=True)
    token = "Authorization: Bearer run-scoped-" + SECRET_VALUE
    sink = Sink()
    with GitHttpServer(tmp_path / "remotes") as server:
        runtime = _runtime(cluster, sink, checkout=lambda spec: GitSource(
            url=f"{server.base_url}/app.git", branch="optio/task-7", auth_header=token))
        key = "repo_task:7:1"
        script = ("import subprocess\nprint(open('README').read().strip())\n"
                  "print(subprocess.run(['git', 'log', '-1', '--format=%s'], capture_output=True, text=True)"
                  ".stdout.strip())\n")
        try:
            runtime.launch(_spec(tmp_path, key, script))
            pod = _admin(cluster).read_namespaced_pod(pod_name(key), NAMESPACE)
            sink.wait(lambda: key in sink.exits)
        finally:
            runtime.shutdown()
    assert sink.exits[key] == [(0, "exited")], sink.lines.get(key)
    assert sink.lines[key] == ["from the task branch", "task branch head"]
    assert [c.name for c in pod.spec.init_containers] == ["checkout"]
    assert SECRET_VALUE not in json.dumps(_admin(cluster).api_client.sanitize_for_serialization(pod))


def test_cancel_deletes_the_pod_with_a_grace_period(cluster: KubeCluster, tmp_path: Path) -> None:
    sink = Sink()
    runtime = _runtime(cluster, sink)
    key = "job_run:5:1"
    script = ("import signal, sys, time\n"
              "def term(*_):\n    print('got TERM', flush=True)\n    sys.exit(143)\n"
              "signal.signal(signal.SIGTERM, term)\nprint('ready', flush=True)\ntime.sleep(300)\n")
    try:
        runtime.launch(_spec(tmp_path, key, script))
        sink.wait(lambda: "ready" in sink.lines.get(key, []))
        runtime.kill(key, grace_s=5)
        sink.wait(lambda: key in sink.exits)
    finally:
        runtime.shutdown()
    assert sink.exits[key][0][1] == "killed"
    assert sink.lines[key] == ["ready", "got TERM"]
    assert _gone(cluster, pod_name(key))


def test_a_new_server_adopts_the_pod_and_resumes_the_log_without_duplicates(cluster: KubeCluster,
                                                                             tmp_path: Path) -> None:
    first = Sink()
    runtime = _runtime(cluster, first)
    key = "repo_task:9:1"
    script = "import time\nfor i in range(80):\n    print('n', i, flush=True)\n    time.sleep(0.03)\n"
    info = runtime.launch(_spec(tmp_path, key, script))
    first.wait(lambda: len(first.lines.get(key, [])) >= 10)
    # A dropped connection mid-stream: the watcher reconnects with sinceTime and skips what it delivered.
    runtime._watchers[key].interrupt()
    first.wait(lambda: len(first.lines.get(key, [])) >= 25)
    runtime.shutdown()  # the server stops; the pod keeps running
    with first.cond:
        delivered, offset = list(first.lines[key]), first.offsets[key]
    assert key not in first.exits
    second = Sink()
    successor = _runtime(cluster, second)
    try:
        assert successor.is_alive(info.pid, info.start_time)
        successor.adopt(info, stdout_offset=offset, stderr_offset=0)
        second.wait(lambda: key in second.exits)
    finally:
        successor.shutdown()
    assert delivered + second.lines[key] == [f"n {i}" for i in range(80)]
    assert second.exits[key] == [(0, "exited")]
    assert _gone(cluster, pod_name(key))


def test_garbage_collection_removes_pods_and_secrets_of_ended_runs(cluster: KubeCluster, tmp_path: Path) -> None:
    sink = Sink()
    runtime = _runtime(cluster, sink)
    live, ended = "repo_task:11:1", "repo_task:12:1"
    script = "import time\nprint('up', flush=True)\ntime.sleep(300)\n"
    try:
        for key in (live, ended):
            runtime.launch(_spec(tmp_path, key, script))
        sink.wait(lambda: all("up" in sink.lines.get(k, []) for k in (live, ended)))
    finally:
        runtime.shutdown()
    successor = _runtime(cluster, Sink())
    try:
        removed = successor.collect_garbage({live})
        assert sorted(removed) == [f"pod/{pod_name(ended)}", f"secret/{pod_name(ended)}"]
        assert _gone(cluster, pod_name(ended))
        assert _admin(cluster).read_namespaced_pod(pod_name(live), NAMESPACE).metadata.deletion_timestamp is None
    finally:
        successor.kill(live, grace_s=1)
        successor.collect_garbage(set())
        successor.shutdown()
    assert _gone(cluster, pod_name(live))


def test_an_unreachable_pod_spec_is_a_clear_launch_error(cluster: KubeCluster, tmp_path: Path) -> None:
    runtime = _runtime(cluster, Sink())
    runtime.settings = KubeSettings(namespace=NAMESPACE, cpu_limit="lots", poll_interval_s=0.1)
    from optio.runtime.base import RuntimeLaunchError

    try:
        with pytest.raises(RuntimeLaunchError, match="Kubernetes refused the pod"):
            runtime.launch(_spec(tmp_path, "job_run:99:1", "print(1)\n"))
    finally:
        runtime.shutdown()
    assert _gone(cluster, pod_name("job_run:99:1"))


def test_reviews_stay_local_processes_while_tasks_run_as_pods(cluster: KubeCluster, tmp_path: Path) -> None:
    from optio.runtime.local import LocalRuntime
    from optio.runtime.routing import RoutingRuntime

    sink = Sink()
    runtime = RoutingRuntime(_runtime(cluster, sink), LocalRuntime(sink), frozenset({"pr_review"}))
    review, task = "pr_review:3:1", "repo_task:3:1"
    script = "import os\nprint('pod' if os.environ.get('HOSTNAME', '').startswith('optio-') else 'local')\n"
    try:
        for key in (review, task):
            runtime.launch(_spec(tmp_path, key, script))
        sink.wait(lambda: review in sink.exits and task in sink.exits)
    finally:
        runtime.shutdown()
    assert sink.lines[review] == ["local"] and sink.lines[task] == ["pod"]
    assert sink.exits[review] == [(0, "exited")] and sink.exits[task] == [(0, "exited")]


@pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed")
@pytest.mark.parametrize("overlay", sorted(p.name for p in (REPO_ROOT / "deploy" / "overlays").iterdir()))
def test_the_manifests_apply_to_the_api_server(cluster: KubeCluster, tmp_path: Path, overlay: str) -> None:
    assert KUBECTL is not None
    rendered = subprocess.run([KUBECTL, "kustomize", str(REPO_ROOT / "deploy" / "overlays" / overlay)],
                              check=True, capture_output=True, text=True).stdout
    docs = [doc for doc in yaml.safe_load_all(rendered) if doc]
    namespaces = {doc["metadata"]["name"] for doc in docs if doc["kind"] == "Namespace"}
    admin = _admin(cluster)
    for name in namespaces:  # a server-side dry run of namespaced objects needs their namespace to exist
        try:
            admin.create_namespace({"metadata": {"name": name}})
        except ApiException as exc:
            assert exc.status == 409
    kubeconfig = cluster.kubeconfig(cluster.admin_token, tmp_path / "kubeconfig")
    result = subprocess.run([KUBECTL, "--kubeconfig", str(kubeconfig), "apply", "--dry-run=server", "-f", "-"],
                            input=rendered, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    kinds = {doc["kind"] for doc in docs}
    assert {"Deployment", "Service", "Role", "RoleBinding", "ServiceAccount"} <= kinds
    assert "error" not in result.stderr.lower()


E2E_NAMESPACE = "optio-loop"
CI_NEEDS_OK = (
    'c=$(cat fixed.txt 2>/dev/null); if [ "$c" = ok ]; then echo pass; else echo "EXPECTED ok GOT $c"; exit 1; fi'
)
LOOP_TOKEN = "tok-kube-5e1f0a9b7c3d"


def _bind_optio(cluster: KubeCluster, namespace: str) -> None:
    admin = _admin(cluster)
    admin.create_namespace({"metadata": {"name": namespace}})
    rbac = k8s.RbacAuthorizationV1Api(admin.api_client)
    role = _rendered_role()
    role["metadata"]["namespace"] = namespace
    rbac.create_namespaced_role(namespace, role)
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "optio-test"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]},
        "subjects": [{"kind": "User", "name": "optio", "apiGroup": "rbac.authorization.k8s.io"}],
    })


def test_the_repo_loop_runs_in_pods_and_survives_an_optio_restart(cluster: KubeCluster, tmp_path: Path) -> None:
    """Red CI, resume, green, merge, with every agent attempt a pod; Optio restarts while the first one runs."""
    from tests.support.git_remote import git, make_remote
    from tests.support.optio_server import OptioServer

    _bind_optio(cluster, E2E_NAMESPACE)
    admin = _admin(cluster)
    gate = tmp_path / "gate"
    gate.mkdir()
    # The first attempt waits for the test (the fake node runs it on this host), then both read CI's verdict.
    agent = (f'echo "attempt $OPTIO_ATTEMPT token=$(printf %s "$API_TOKEN" | rev)"; '
             f'if [ "$OPTIO_ATTEMPT" = 1 ]; then touch {gate}/started; '
             f"until [ -f {gate}/go ]; do sleep 0.1; done; fi; "
             'if grep -q "EXPECTED ok" "$OPTIO_PROMPT_FILE"; then echo ok > fixed.txt; else echo no > fixed.txt; fi')
    server = OptioServer(tmp_path / "data", env={
        "OPTIO_RUNTIME": "kubernetes", "OPTIO_KUBE_NAMESPACE": E2E_NAMESPACE, "OPTIO_KUBE_API_URL": cluster.url,
        "OPTIO_KUBE_TOKEN": cluster.optio_token, "OPTIO_KUBE_CA_FILE": str(cluster.ca_file),
        "OPTIO_KUBE_CPU_LIMIT": "500m", "OPTIO_KUBE_MEMORY_LIMIT": "300Mi", "OPTIO_KUBE_KILL_GRACE_S": "2",
        "OPTIO_KUBE_CPU_REQUEST": "100m", "OPTIO_KUBE_MEMORY_REQUEST": "64Mi",
    })
    server.start()
    try:
        remote = make_remote(tmp_path)
        server.cli("secret", "set", "API_TOKEN", "--value", LOOP_TOKEN, check=True)
        server.cli("repo", "add", str(remote), "--name", "demo", "--ci-command", CI_NEEDS_OK, check=True)
        task = json.loads(server.cli("task", "new", "--repo", "demo", "--title", "Make CI green", "--prompt",
                                     "fix fixed.txt", "--command", agent, "--secret", "API_TOKEN", "--json",
                                     check=True).stdout)
        deadline = time.monotonic() + 60
        while not (gate / "started").exists():
            assert time.monotonic() < deadline, server.log()[-3000:]
            time.sleep(0.1)
        pods = admin.list_namespaced_pod(E2E_NAMESPACE, label_selector=f"{LABEL_RUN}={task['id']}").items
        assert [(p.metadata.labels[LABEL_KIND], p.metadata.labels[LABEL_ATTEMPT]) for p in pods] == [("repo_task", "1")]
        first = pods[0]
        assert first.spec.containers[0].resources.limits == {"cpu": "500m", "memory": "300Mi"}
        assert first.spec.security_context.run_as_non_root is True
        assert [c.name for c in first.spec.init_containers] == ["checkout"]
        spec_text = json.dumps(admin.api_client.sanitize_for_serialization(first))
        _check_exchange_access(server, first.metadata.name, tmp_path)
        server.restart()  # the pod keeps running; the new server adopts it
        (gate / "go").touch()
        done = server.wait_state(f"/api/repo-tasks/{task['id']}", {"completed", "failed", "needs_attention"},
                                 timeout=120)
        assert done["state"] == "completed" and done["pr_state"] == "merged", (done, server.log()[-4000:])
        assert done["resume_count"] == 1
        assert git("show", "main:fixed.txt", cwd=remote) == "ok\n"
        logs = [item["text"] for item in server.api("GET", f"/api/repo-tasks/{task['id']}/logs").json()["items"]]
        starts = [line for line in logs if line.startswith("attempt ")]
        assert starts == [f"attempt {n} token={LOOP_TOKEN[::-1]}" for n in (1, 2)], logs
        events = json.dumps(admin.api_client.sanitize_for_serialization(admin.list_namespaced_event(E2E_NAMESPACE)))
    finally:
        server.stop()
    assert _namespace_empty(cluster, E2E_NAMESPACE)
    assert LOOP_TOKEN not in spec_text and LOOP_TOKEN not in events
    for db_file in (tmp_path / "data").glob("optio.db*"):
        assert LOOP_TOKEN.encode() not in db_file.read_bytes(), db_file
    assert LOOP_TOKEN not in server.log()


def _namespace_empty(cluster: KubeCluster, namespace: str, timeout_s: float = 30.0) -> bool:
    admin = _admin(cluster)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not admin.list_namespaced_pod(namespace).items and not admin.list_namespaced_secret(namespace).items:
            return True
        time.sleep(0.2)
    return False


def _check_exchange_access(server: object, name: str, tmp_path: Path) -> None:
    """The pod's git exchange opens with that pod's token only, and takes pushes to its result branch only."""
    from optio.runtime.pod_git import PodGit

    pods = PodGit(server.data_dir / "pod-git")  # type: ignore[attr-defined]
    url = f"{server.url}/api/pods/git/{name}.git"  # type: ignore[attr-defined]

    def git_as(token: str | None, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        config = ["-c", f"http.extraHeader=Authorization: Bearer {token}"] if token else []
        return subprocess.run(["git", *config, "-c", "http.extraHeader=X-Optio-CSRF: 1", *args], cwd=cwd,
                              capture_output=True, text=True, timeout=60,
                              env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "GIT_TERMINAL_PROMPT": "0"})

    assert git_as(None, "ls-remote", url).returncode != 0
    assert git_as(pods.token(name + "-other"), "ls-remote", url).returncode != 0
    listed = git_as(pods.token(name), "ls-remote", url)
    assert listed.returncode == 0 and "refs/heads/base" in listed.stdout, listed.stderr
    clone = tmp_path / "exchange-clone"
    assert git_as(pods.token(name), "clone", "-q", "--branch", "base", url, str(clone)).returncode == 0
    pushed = git_as(pods.token(name), "push", url, "HEAD:refs/heads/main", cwd=clone)
    assert pushed.returncode != 0 and "only refs/heads/result" in pushed.stderr, pushed.stderr
    # A worktree bigger than the API's body limit still comes back (the exchange has a limit of its own).
    (clone / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@e", "add", "big.bin"], cwd=clone, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "big"], cwd=clone,
                   check=True)
    big = git_as(pods.token(name), "push", url, "HEAD:refs/heads/result", cwd=clone)
    assert big.returncode == 0, big.stderr
    assert git_as(pods.token(name), "push", url, ":refs/heads/result", cwd=clone).returncode == 0
