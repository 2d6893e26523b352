"""Builds the Kubernetes runtime from Optio's settings (imported only when ``OPTIO_RUNTIME=kubernetes``)."""

from __future__ import annotations

from optio.config import Settings
from optio.runtime.base import LaunchSpec, OutputSink
from optio.runtime.kubernetes import GitSource, KubernetesRuntime, KubeSettings, api_client, pod_name
from optio.runtime.pod_git import BASE, PodGit


def kube_settings(settings: Settings) -> KubeSettings:
    return KubeSettings(
        namespace=settings.kube_namespace, images=dict(settings.kube_images),
        default_image=settings.kube_default_image, git_image=settings.kube_git_image,
        cpu_request=settings.kube_cpu_request, cpu_limit=settings.kube_cpu_limit,
        memory_request=settings.kube_memory_request, memory_limit=settings.kube_memory_limit,
        run_as_user=settings.kube_run_as_user, egress_cidrs=tuple(settings.kube_egress_cidrs),
        egress_ports=tuple(settings.kube_egress_ports), kill_grace_s=settings.kube_kill_grace_s,
    )


def from_settings(settings: Settings, sink: OutputSink) -> KubernetesRuntime:
    """The runtime, with the worktree of a repo run going to its pod and back through Optio's git exchange."""
    client = api_client(kubeconfig=settings.kube_kubeconfig, url=settings.kube_api_url, token=settings.kube_token,
                        ca_file=settings.kube_ca_file)
    exchange = PodGit(settings.resolved_data_dir / "pod-git")
    base_url = (settings.kube_git_url or settings.url or f"http://{settings.host}:{settings.port}").rstrip("/")

    def checkout(spec: LaunchSpec) -> GitSource | None:
        if not (spec.cwd / ".git").exists():
            return None  # not a repo run (a job's scratch dir): nothing to clone
        name = pod_name(spec.key)
        exchange.publish(name, spec.cwd)
        return GitSource(url=f"{base_url}/api/pods/git/{name}.git", branch=BASE,
                         auth_header=f"Authorization: Bearer {exchange.token(name)}", handback=True)

    return KubernetesRuntime(sink, kube_settings(settings), client, checkout=checkout, exchange=exchange)
