"""One order for a run's stdout and stderr: a tiny relay between the agent and its output file.

Written to two files, the two streams lose their relative order: the runtime reads each file every
tick, so lines printed out, err, out within one tick came back as out, out, err. The relay gives the
agent two pipes, reads whichever has data as soon as it arrives (in the order the kernel reports them
ready) and writes every complete line, tagged with its stream, to its own stdout, which the runtime
tails like any output. `DbSink` splits the tags again, so lines are stored in the order they arrived.

The relay is started with ``python3 -I -S -c SOURCE`` (standard library only, no file to mount into a
sandbox). It ignores SIGTERM so that after a kill of the process group it still drains what the agent
printed; it exits (with the agent's status, 128+N for a signal, like a shell) once the agent is gone.
"""

from __future__ import annotations

import inspect
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from optio.runtime.base import RuntimeLaunchError
from optio.runtime.local import base_env

TAG = "\x1e"  # ASCII record separator: a line starting with TAG + "o"/"e" came through the relay
STREAMS = {"o": "stdout", "e": "stderr", "m": "delivered"}
# Records stay below the runtime tail's line cut (optio.runtime.tail.MAX_LINE_BYTES), tag included.
RECORD_MAX = 1024 * 1024 - 8
# After an answer, how long a live-input agent may stay silent with messages it has not taken before its
# stdin is closed anyway (so it ends; the messages go into its next start's prompt).
LIVE_INPUT_GRACE_S = 60.0


def relay_main() -> None:
    # Runs in its own process (see _SOURCE); tested through real runs. It imports builtin modules only
    # (json lazily, for live input): it starts with every agent, and `subprocess`, `selectors`, `signal`
    # and `json` would add some 30 ms of CPU to each start for nothing the relay needs of them.
    import _signal  # type: ignore[import-not-found]  # `signal` without its enum wrappers (6 ms a start)
    import select
    import time

    _signal.signal(_signal.SIGTERM, _signal.SIG_IGN)
    _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
    argv = sys.argv[1:]
    inbox = None
    if argv[:1] == ["--optio-inbox"] and argv[2:3] == ["--"]:
        inbox, argv = argv[1], argv[3:]
    out = sys.stdout.buffer
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    in_r, in_w = os.pipe() if inbox else (-1, -1)
    actions = [(os.POSIX_SPAWN_DUP2, out_w, 1), (os.POSIX_SPAWN_DUP2, err_w, 2)]
    if inbox:
        actions.append((os.POSIX_SPAWN_DUP2, in_r, 0))
    try:
        # The agent gets default dispositions for what the relay ignores, and for SIGPIPE and SIGXFSZ,
        # which Python itself ignores (as `subprocess` would restore them).
        pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=actions,
                              setsigdef=(_signal.SIGTERM, _signal.SIGINT, _signal.SIGPIPE, _signal.SIGXFSZ))
    except (OSError, IndexError) as exc:
        out.write(("\x1ee" + "optio: cannot start " + repr(argv[:1]) + ": " + str(exc) + "\n").encode())
        out.flush()
        sys.exit(127)
    for fd in (out_w, err_w, in_r):
        if fd >= 0:
            os.close(fd)
    status: list[int] = []  # the agent's wait status, once reaped

    def exited() -> bool:
        if not status:
            try:
                done, code = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, code = pid, 0
            if done:
                status.append(code)
        return bool(status)

    pending = {"o": b"", "e": b"", "i": b""}
    poller = select.poll()
    tags: dict[int, str] = {}

    def register(fd: int, tag: str) -> None:
        os.set_blocking(fd, False)
        poller.register(fd, select.POLLIN)
        tags[fd] = tag

    def unregister(fd: int) -> None:
        poller.unregister(fd)
        del tags[fd]

    register(out_r, "o")
    register(err_r, "e")
    # Live input (Claude Code's stream-json): the input file's user messages go first, then each message
    # written to the inbox FIFO while the agent runs. The agent replays each message it takes; the relay
    # reports those by id (tag "m") and closes the agent's stdin once it has answered all of them.
    live: dict[str, Any] = {"stdin": in_w if inbox else None, "fifo": None, "waiting": [], "answered_at": None}

    def close_input() -> None:
        if live["fifo"] is not None:
            unregister(live["fifo"])
            os.close(live["fifo"])
            live["fifo"] = None
        if live["stdin"] is not None:
            try:
                os.close(live["stdin"])
            except OSError:
                pass
            live["stdin"] = None

    def send(line: bytes, message_id: object) -> None:
        data = memoryview(line if line.endswith(b"\n") else line + b"\n")
        try:
            while data:
                data = data[os.write(live["stdin"], data):]
            live["waiting"].append(message_id)
        except OSError:
            close_input()

    if inbox:
        for line in sys.stdin.buffer.read().splitlines():
            if line.strip():
                send(line, None)
        live["fifo"] = os.open(inbox, os.O_RDWR | os.O_NONBLOCK)  # a writer of its own: never an EOF
        register(live["fifo"], "i")

    def watch(line: bytes) -> None:
        if live["stdin"] is None:
            return
        live["answered_at"] = None  # it is still at work
        if not line.startswith(b"{") or (b'"isReplay"' not in line and b'"result"' not in line):
            return
        import json

        try:
            data = json.loads(line)
        except ValueError:
            return
        if data.get("type") == "user" and data.get("isReplay") and live["waiting"]:
            message_id = live["waiting"].pop(0)
            if message_id is not None:
                out.write(b"\x1em" + json.dumps({"delivered": message_id}).encode() + b"\n")
        elif data.get("type") == "result":
            if not live["waiting"]:
                close_input()
            else:  # it answered but has not taken every message yet; it gets a while to do so
                live["answered_at"] = time.monotonic()

    def inbox_lines(data: bytes) -> None:
        import json

        lines = (pending["i"] + data).split(b"\n")
        pending["i"] = lines.pop()
        for raw in lines:
            try:
                note = json.loads(raw)
                text, message_id = str(note["text"]), note["id"]
            except (ValueError, KeyError, TypeError):
                continue
            content = [{"type": "text", "text": text}]
            send(json.dumps({"type": "user", "message": {"role": "user", "content": content}}).encode(), message_id)

    def emit(tag: str, data: bytes, final: bool) -> None:
        buf = pending[tag] + data
        parts = buf.split(b"\n")
        rest = parts.pop()
        if final and rest:
            parts.append(rest)
            rest = b""
        chunks = []
        for line in parts:
            if tag == "o":
                watch(line)
            while len(line) > RECORD_MAX:
                chunks.append(b"\x1e" + tag.encode() + line[:RECORD_MAX] + b"\n")
                line = line[RECORD_MAX:]
            chunks.append(b"\x1e" + tag.encode() + line + b"\n")
        while len(rest) > RECORD_MAX:
            chunks.append(b"\x1e" + tag.encode() + rest[:RECORD_MAX] + b"\n")
            rest = rest[RECORD_MAX:]
        pending[tag] = rest
        if chunks:
            out.write(b"".join(chunks))
        out.flush()

    def read(fd: int) -> None:
        tag = tags.get(fd)
        if tag is None:
            return
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if tag == "i":
            if live["stdin"] is not None:
                inbox_lines(data)
            return
        if not data:
            unregister(fd)
            os.close(fd)
            emit(tag, b"", True)
            return
        emit(tag, data, False)

    def streams_open() -> bool:
        return any(tag in ("o", "e") for tag in tags.values())

    while streams_open():
        for fd, _ in poller.poll(200):
            read(fd)
        answered = live["answered_at"]
        if answered is not None and time.monotonic() - answered > LIVE_INPUT_GRACE_S:
            close_input()  # a message it never took: it goes into the next start's prompt instead
            live["answered_at"] = None
        if exited():
            # The agent is gone; output still in the pipes is drained, but a straggler that keeps them open
            # does not keep the relay (and so the run) alive.
            for _ in range(64):
                if not streams_open():
                    break  # both pipes ended: nothing left to wait for
                ready = [fd for fd, _ in poller.poll(50) if tags.get(fd) != "i"]
                if not ready:
                    break
                for fd in ready:
                    read(fd)
            break
    close_input()
    for tag in ("o", "e"):
        emit(tag, b"", True)
    if not status:
        try:
            status.append(os.waitpid(pid, 0)[1])
        except ChildProcessError:
            status.append(0)
    code = os.waitstatus_to_exitcode(status[0])
    sys.exit(128 - code if code < 0 else code)


def _python() -> str:
    """A python that a sandbox shows too (the system directories), else the server's own."""
    return shutil.which("python3", path="/usr/bin:/bin:/usr/local/bin") or sys.executable


_SOURCE = (
    "import os, sys\n"
    + "\n".join(f"{name} = {value!r}" for name, value in (("RECORD_MAX", RECORD_MAX),
                                                           ("LIVE_INPUT_GRACE_S", LIVE_INPUT_GRACE_S)))
    + "\n"
    + inspect.getsource(relay_main)
    + "\nrelay_main()\n"
)


def check_command(key: str, argv: list[str], env: dict[str, str], cwd: Path) -> None:
    """Refuse to launch a command that does not exist, with the runtime's own clear message."""
    if not argv:
        raise RuntimeLaunchError(f"{key}: empty command")
    program = argv[0]
    if "/" in program:
        candidate = Path(program) if os.path.isabs(program) else cwd / program
        if not (candidate.is_file() and os.access(candidate, os.X_OK)):
            raise RuntimeLaunchError(f"{key}: {program!r} is not an executable file")
        return
    path = (base_env() | env).get("PATH", "")
    if shutil.which(program, path=path) is None:
        raise RuntimeLaunchError(f"{key}: command {program!r} not found on PATH {path!r}")


def wrap(argv: list[str], *, inbox: Path | None = None) -> list[str]:
    """`argv` run behind the relay: its stdout then carries both streams, tagged, in arrival order.

    With ``inbox`` (a FIFO) the agent gets live input: see :func:`send_message`.
    """
    live = ["--optio-inbox", str(inbox), "--"] if inbox is not None else []
    return [_python(), "-I", "-S", "-c", _SOURCE, *live, *argv]


def make_inbox(path: Path) -> Path:
    """The FIFO a live-input run reads messages from; only the server's user may write to it."""
    path.unlink(missing_ok=True)
    os.mkfifo(path, 0o600)
    return path


def send_message(inbox: Path, message_id: int, text: str) -> bool:
    """Write one message to a running agent's inbox; False when no relay is reading it (the run ended).

    One write of one line: the kernel keeps writes up to PIPE_BUF whole, and a longer one is still a
    single writer's line as long as messages are sent one at a time (the caller serialises them).
    """
    import json
    import stat

    try:
        if not stat.S_ISFIFO(os.stat(inbox).st_mode):
            return False
        fd = os.open(inbox, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # ENXIO: nobody reads it; ENOENT: no live input for this run
        return False
    try:
        data = (json.dumps({"id": message_id, "text": text}) + "\n").encode()
        os.set_blocking(fd, True)
        os.write(fd, data)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def split(line: str, default: str) -> tuple[str, str]:
    """(stream, text) of a line read from a relayed stdout; a line without a tag keeps `default`."""
    if len(line) >= 2 and line[0] == TAG and line[1] in STREAMS:
        return STREAMS[line[1]], line[2:]
    return default, line
