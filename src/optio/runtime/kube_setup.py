"""Builds the Kubernetes runtime from Optio's settings (imported only when ``OPTIO_RUNTIME=kubernetes``)."""

from __future__ import annotations

from optio.config import Settings
from optio.runtime.base import OutputSink
from optio.runtime.kubernetes import CheckoutSource, KubernetesRuntime, KubeSettings, api_client


def kube_settings(settings: Settings) -> KubeSettings:
    return KubeSettings(
        namespace=settings.kube_namespace, images=dict(settings.kube_images),
        default_image=settings.kube_default_image, git_image=settings.kube_git_image,
        cpu_request=settings.kube_cpu_request, cpu_limit=settings.kube_cpu_limit,
        memory_request=settings.kube_memory_request, memory_limit=settings.kube_memory_limit,
        run_as_user=settings.kube_run_as_user, egress_cidrs=tuple(settings.kube_egress_cidrs),
        egress_ports=tuple(settings.kube_egress_ports), kill_grace_s=settings.kube_kill_grace_s,
    )


def from_settings(settings: Settings, sink: OutputSink, *, checkout: CheckoutSource | None = None) -> KubernetesRuntime:
    client = api_client(kubeconfig=settings.kube_kubeconfig, url=settings.kube_api_url, token=settings.kube_token,
                        ca_file=settings.kube_ca_file)
    return KubernetesRuntime(sink, kube_settings(settings), client, checkout=checkout)
