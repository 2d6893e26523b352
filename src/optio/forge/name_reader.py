"""Resolving object names in a repo cache through one long-lived ``git cat-file --batch-check``.

The loop asks a cache what a ref or a sha points at about fifteen times per task (is the branch there yet,
which commit is the base, does the cache have the head). A ``git rev-parse`` for each costs a process
start, which on a busy machine is most of a task's git time; the same question on the pipe of a running
``cat-file`` costs a write and a read.

Only names whose answer git cannot have cached are sent: full ref names (``refs/...``) and full shas, each
peeled to a type. Git reads a loose ref from its file on every lookup, re-checks ``packed-refs`` by its
stat data, and looks for new packs again when an object is not found, so a ref moved or an object written
by another process after the reader started is seen. Abbreviated shas are not sent (git keeps a listing
of loose objects it has seen, which can be stale). A reader whose repository directory was replaced
(a cache rebuilt from scratch) is restarted before it answers.
"""

from __future__ import annotations

import atexit
import os
import re
import subprocess
import threading
from collections import OrderedDict
from pathlib import Path

from optio.forge.gitcmd import git_argv, git_env

# A full object name, SHA-1 or SHA-256.
FULL_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_SAFE_REF = re.compile(r"refs/[A-Za-z0-9._/@+-]+")
# Readers kept open per process: one per repo cache in use, the least recently used closed beyond this.
_KEPT = 16


class Unanswerable(Exception):
    """This name is not one the reader answers; ask ``git rev-parse`` instead."""


class NameReader:
    """One ``cat-file --batch-check`` in ``git_dir``, shared by the threads of this process (one lock)."""

    def __init__(self, git_dir: Path) -> None:
        self.git_dir = git_dir
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._identity: tuple[int, int] | None = None

    def peel(self, name: str, kind: str = "commit") -> str | None:
        """The full sha of ``name`` peeled to ``kind`` (``commit`` or ``tree``); None when git finds none.

        Raises ``Unanswerable`` for a name the reader does not take (see the module's docstring) or when
        the reader cannot run; the caller then asks ``git rev-parse``.
        """
        if not (FULL_SHA.fullmatch(name) or (_SAFE_REF.fullmatch(name) and ".." not in name)):
            raise Unanswerable(name)
        query = f"{name}^{{{kind}}}"
        with self._lock:
            for _ in range(2):  # a reader that died (or whose repository was replaced) is started once more
                proc = self._running()
                try:
                    assert proc.stdin is not None and proc.stdout is not None
                    proc.stdin.write(query + "\n")
                    proc.stdin.flush()
                    line = proc.stdout.readline()
                except (OSError, ValueError):
                    line = ""
                if line.endswith("\n"):
                    return _parse(query, line, kind)
                self._stop()
        raise Unanswerable(name)

    def close(self) -> None:
        with self._lock:
            self._stop()

    def _running(self) -> subprocess.Popen[str]:
        try:
            stat = os.stat(self.git_dir)
        except OSError as exc:
            self._stop()
            raise Unanswerable(str(self.git_dir)) from exc
        identity = (stat.st_dev, stat.st_ino)
        if self._proc is not None and (self._proc.poll() is not None or identity != self._identity):
            self._stop()
        if self._proc is None:
            try:
                self._proc = subprocess.Popen(
                    git_argv("cat-file", "--batch-check"), cwd=self.git_dir, env=git_env(),
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                    text=True, encoding="utf-8", errors="replace", bufsize=1,
                )
            except OSError as exc:
                raise Unanswerable(str(self.git_dir)) from exc
            self._identity = identity
        return self._proc

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        for stream in (proc.stdin, proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _parse(query: str, line: str, kind: str) -> str | None:
    """``<sha> <type> <size>`` is the answer; ``<query> missing`` (or ``ambiguous``) is none."""
    fields = line.split()
    if len(fields) == 3 and fields[1] == kind and FULL_SHA.fullmatch(fields[0]):
        return fields[0]
    if line.startswith(query + " "):
        return None
    raise Unanswerable(query)


_readers: OrderedDict[str, NameReader] = OrderedDict()
_readers_lock = threading.Lock()


def reader_for(git_dir: Path) -> NameReader:
    """The process's reader of ``git_dir``, started on first use."""
    key = os.path.realpath(git_dir)
    with _readers_lock:
        reader = _readers.get(key)
        if reader is not None:
            _readers.move_to_end(key)
            return reader
        reader = _readers[key] = NameReader(Path(key))
        evicted = [_readers.popitem(last=False)[1] for _ in range(len(_readers) - _KEPT)]
    for old in evicted:
        old.close()
    return reader


def forget(git_dir: Path) -> None:
    """Close the reader of a repository that is about to be removed or rebuilt."""
    with _readers_lock:
        reader = _readers.pop(os.path.realpath(git_dir), None)
    if reader is not None:
        reader.close()


@atexit.register
def _close_all() -> None:
    with _readers_lock:
        readers = list(_readers.values())
        _readers.clear()
    for reader in readers:
        reader.close()
