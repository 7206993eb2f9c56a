"""Kills what a worker leaves behind when it dies without stopping (kill -9, the OOM killer, a crash).

vLLM's engine core runs in a child process that outlives its parent: a killed worker's engine core kept its memory
(on a GPU, the memory its restarted worker needs) until someone killed it by hand. `watch_descendants()` starts a
small watcher process that keeps a list of the worker's descendants and, once the worker is gone (its pipe
closes), kills those still running.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from pathlib import Path

POLL_S = 2.0


def watch_descendants() -> subprocess.Popen:
    """Start the watcher for this process. Keep the returned object: its pipe closing is the signal."""
    return subprocess.Popen([sys.executable, "-m", "maoocr.engines.reaper", str(os.getpid())],
                            stdin=subprocess.PIPE, start_new_session=True)  # not in the worker's group


def _processes() -> dict[int, tuple[int, str]]:
    """pid → (parent pid, start time) of every process now."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        table[int(stat.parent.name)] = (int(fields[1]), fields[19])
    return table


def descendants(root: int) -> dict[int, str]:
    """pid → start time of every process below `root` (start times tell a reused pid apart)."""
    table = _processes()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = {}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found[child] = table[child][1]
            todo.append(child)
    return found


def main(worker: int) -> int:
    me = os.getpid()
    known: dict[int, str] = {}
    while True:
        ready, _, _ = select.select([sys.stdin], [], [], POLL_S)
        if ready and not os.read(sys.stdin.fileno(), 4096):
            break  # the worker is gone (or closed us on its way out)
        known = {pid: start for pid, start in descendants(worker).items() if pid != me}
    now = _processes()
    for pid, start in known.items():
        if pid in now and now[pid][1] == start:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1])))
