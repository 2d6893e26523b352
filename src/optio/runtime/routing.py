"""Two runtimes behind one port: some run kinds as pods, the others as local processes.

The Kubernetes runtime carries a run's git worktree into its pod and back, but not the plain directories a review
reads and writes (the PR head and base trees, the verdict file), so reviews stay on the local runtime (inside its
sandbox) while repo tasks and jobs run as pods. A process goes to one runtime by the run kind at the start of its
key (``kind:id:attempt``); a pid only the local runtime can find alive, and the pods' stand-in pids are labels the
Kubernetes runtime looks up.
"""

from __future__ import annotations

from optio.runtime.base import LaunchSpec, ProcessInfo, Runtime


class RoutingRuntime:
    def __init__(self, default: Runtime, local: Runtime, local_kinds: frozenset[str]) -> None:
        self.default = default
        self.local = local
        self.local_kinds = local_kinds

    def _for(self, key: str) -> Runtime:
        return self.local if key.split(":", 1)[0] in self.local_kinds else self.default

    def launch(self, spec: LaunchSpec) -> ProcessInfo:
        return self._for(spec.key).launch(spec)

    def is_alive(self, pid: int, start_time: float) -> bool:
        return self.local.is_alive(pid, start_time) or self.default.is_alive(pid, start_time)

    def exit_status(self, info: ProcessInfo) -> int | None:
        return self._for(info.key).exit_status(info)

    def adopt(self, info: ProcessInfo, *, stdout_offset: int, stderr_offset: int) -> None:
        self._for(info.key).adopt(info, stdout_offset=stdout_offset, stderr_offset=stderr_offset)

    def kill(self, key: str, *, grace_s: float = 1.0) -> None:
        self._for(key).kill(key, grace_s=grace_s)

    def kill_info(self, info: ProcessInfo, *, grace_s: float = 1.0) -> None:
        self._for(info.key).kill_info(info, grace_s=grace_s)

    def active_keys(self) -> list[str]:
        return sorted({*self.default.active_keys(), *self.local.active_keys()})

    def shutdown(self) -> None:
        self.default.shutdown()
        self.local.shutdown()

    def collect_garbage(self, live_keys: set[str]) -> list[str]:
        collect = getattr(self.default, "collect_garbage", None)
        return list(collect(live_keys)) if collect is not None else []
