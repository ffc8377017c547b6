"""This process as other processes see it: who wrote a temporary file or started a run (host
and PID namespace, pid, start time: a reused pid is not mistaken for the writer), whether
that process still runs, a stage that ends when the `dvc` that started it dies, a command
that ends, with all it started, when the process that started it dies, and signals that
interrupt it, none of them lost."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PARENT_POLL_S = 1.0
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
SHELLS = {"sh", "dash", "bash", "zsh", "ksh", "fish"}
_armed = False


def environment_tool(name: str) -> str:
    """The path of this environment's own `name` (the venv's mlflow, dvc), else PATH's."""
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else shutil.which(name) or name


def host() -> str:
    """This machine and PID namespace, as `<hostname>+<namespace>`: containers that share a
    hostname but not their pids are told apart, and `+` cannot occur in a hostname."""
    try:
        namespace = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        namespace = "0"
    return f"{socket.gethostname()}+{namespace}"


def _stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat's fields from the third on (state, ppid, ...), or None (not Linux, or
    no such process)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            stat = fh.read()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()  # the name before ")" may hold spaces


def start_time(pid: int) -> str | None:
    """The process' start time in clock ticks after boot (Linux), or None where unknown."""
    fields = _stat(pid)
    return fields[19] if fields else None  # field 22


def identity() -> str:
    """`<host>:<pid>:<start time>` of this process."""
    return f"{host()}:{os.getpid()}:{start_time(os.getpid()) or ''}"


def alive(pid: int, started: str | None = None) -> bool:
    """Whether process `pid` on this host runs (and, given `started`, is the same process)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        pass
    fields = _stat(pid)
    if fields and fields[0] == "Z":  # exited, not yet reaped by its parent
        return False
    return not started or not fields or fields[19] == started


def gone(ident: str) -> bool:
    """Whether the process an `identity()` names has ended: only answerable on its own host."""
    parts = ident.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return False
    name, pid, started = parts
    return name == host() and not alive(int(pid), started or None)


def _followed() -> list[tuple[int, str | None]]:
    """(pid, start time) of the parent, and of the grandparent when the parent is a shell that
    only runs this command: DVC runs a stage as `$SHELL -c "<cmd>"`, and dash (Debian's
    /bin/sh) waits for its command instead of becoming it."""
    parent = os.getppid()
    followed = [(parent, start_time(parent))]
    fields = _stat(parent)
    try:
        with open(f"/proc/{parent}/comm", encoding="utf-8") as fh:
            name = fh.read().strip()
    except OSError:
        name = ""
    if fields and name in SHELLS and int(fields[1]) > 1:
        grandparent = int(fields[1])
        followed.append((grandparent, start_time(grandparent)))
    return followed


def die_with_parent() -> None:
    """Receive SIGTERM when the process that started this one dies, so a stage whose `dvc` was
    killed stops instead of finishing and publishing outputs that dvc.lock will never record.
    Linux delivers it at once when the parent dies (prctl(PR_SET_PDEATHSIG)); a watcher thread
    follows a shell's parent (`_followed`), and the parent where prctl is missing. Call it as
    early as possible: `wardrobe.cli.run_stage` does, for the stages DVC runs, before a stage
    imports TensorFlow."""
    global _armed
    if _armed or os.getppid() <= 1:  # already, or started by init: nothing to follow
        return
    _armed = True
    followed = _followed()
    watched = followed[1:]
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl failed")
    except (OSError, AttributeError):  # not Linux
        watched = followed
    if os.getppid() != followed[0][0]:  # died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)
    if not watched:
        return

    def watch() -> None:
        parent = followed[0][0]
        while os.getppid() == parent and all(alive(pid, t) for pid, t in watched):
            time.sleep(PARENT_POLL_S)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="wardrobe-parent-watch", daemon=True).start()


def tied(argv: Sequence[str]) -> list[str]:
    """`argv` as a command that ends, with every process it starts, when this process dies.

    The command runs in a process group of its own, under this file run as a script
    (`_run_as_group`), which sends the group SIGTERM when this process dies (util-linux's
    `setpriv --pdeathsig` sets that signal, then execs; not a preexec_fn, unsafe in threaded
    processes such as Ray's workers) or when it is itself sent SIGTERM, SIGINT or SIGHUP. A
    process group reaches what a parent-death signal alone does not: a stage that `dvc exp
    run` started through `$SHELL -c`, whose `dvc` died before the stage followed it
    (`die_with_parent` runs once the stage's Python is up), would train on under an orphaned
    shell. `-I`: the script imports only the standard library, never from PYTHONPATH (a
    trial's points at the code of the commit it runs)."""
    return ["setpriv", "--pdeathsig", "TERM", "--", sys.executable, "-I", __file__,
            str(os.getpid()), "--", *argv]  # fmt: skip


def _run_as_group(parent: int, argv: Sequence[str]) -> int:
    """Run `argv` in this process' own process group; a signal that ends this process sends
    SIGTERM to the whole group first. `parent`: the process whose death sends that signal;
    when it is gone already, the command is not started. The command's exit status (128 +
    the signal's number when a signal ended it)."""
    import subprocess

    if os.getpgrp() != os.getpid():
        os.setpgid(0, 0)
    ended: list[int] = []

    def end_group(signum: int, frame: object) -> None:
        if not ended:  # the group's SIGTERM reaches this process too
            ended.append(signum)
            os.killpg(0, signal.SIGTERM)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, end_group)
    if os.getppid() != parent or ended:  # died before the parent-death signal was set
        return 128 + signal.SIGTERM
    try:
        child = subprocess.Popen(argv)
    except OSError as exc:
        print(f"{argv[0]}: {exc.strerror}", file=sys.stderr)
        return 127
    if ended:  # a signal while it started, before it could receive one
        os.killpg(0, signal.SIGTERM)
    code = child.wait()
    return 128 - code if code < 0 else code


def _main(args: Sequence[str]) -> int:
    if len(args) < 3 or not args[0].isdigit() or args[1] != "--":
        print(f"usage: python {__file__} PARENT_PID -- COMMAND...", file=sys.stderr)
        return 2
    return _run_as_group(int(args[0]), args[2:])


def handle_interrupts() -> None:
    """Make Ctrl-C and SIGTERM end the main thread's work with a KeyboardInterrupt, every time.

    Python runs a signal's handler in the main thread at its next bytecode, wherever that is,
    and the KeyboardInterrupt it raises can be lost there: in a finalizer (TensorFlow frees
    an epoch's functions and dataset iterator in `__del__` methods as the next epoch starts),
    Python drops it (`sys.unraisablehook`); in a Python callback of C code that clears errors
    (an attribute or dictionary lookup inside an extension), it vanishes without a word. The
    stage would train on. So:
    - the interrupt is sent again, by the same signal, every `RESEND_S`, until the code that
      handles it says it has it (`interrupt_reached`, which `cli.run_stage` calls);
    - a signal that comes while an interrupt is being handled (those repeats, the process
      group's Ctrl-C after a SIGTERM, the parent's death signal) does not cut that clean-up
      short, and a signal after one that code caught and went on from interrupts again:
      no signal is ignored;
    - an interrupt a finalizer dropped is not printed as an error (it comes again).
    """
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupt)
    if sys.unraisablehook is not _dropped:
        global _unraisable_before
        _unraisable_before = sys.unraisablehook
        sys.unraisablehook = _dropped


def interrupted() -> str | None:
    """The first interrupting signal this process received (`"SIGTERM"`), or None."""
    return _received


def interrupt_reached() -> None:
    """The interrupt has reached the code that ends the work: stop sending it again."""
    global _resending
    if _resending is not None:
        _resending.set()
        _resending = None


_received: str | None = None
_resending: threading.Event | None = None  # set to stop the thread that sends it again
_unraisable_before = sys.__unraisablehook__
RESEND_S = 0.5


def _handling_interrupt() -> bool:
    """Whether the code running now handles a KeyboardInterrupt (an `except` or `finally`
    block it reached, or code they call), or an exception it turned into (C code that an
    interrupt cut short raises a SystemError from it)."""
    exc, seen = sys.exc_info()[1], set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def _interrupt(signum: int, frame: object) -> None:
    global _received, _resending
    _received = _received or signal.Signals(signum).name
    if _handling_interrupt():
        return
    if _resending is None:
        _resending = stop = threading.Event()

        def resend() -> None:
            while not stop.wait(RESEND_S):
                log.debug("%s not reached yet; sending it again", signal.Signals(signum).name)
                os.kill(os.getpid(), signum)

        threading.Thread(target=resend, name="wardrobe-interrupt", daemon=True).start()
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _dropped(unraisable: Any) -> None:
    """sys.unraisablehook: an interrupt a finalizer dropped is logged at DEBUG (it is sent
    again); anything else goes to the hook that was there before."""
    name = str(unraisable.exc_value) if isinstance(unraisable.exc_value, KeyboardInterrupt) else ""
    if name not in signal.Signals.__members__:
        _unraisable_before(unraisable)
        return
    log.debug("%s landed in %r, which cannot raise; it comes again", name, unraisable.object)


@contextlib.contextmanager
def uninterrupted(what: str) -> Iterator[None]:
    """Run the block to its end whatever Ctrl-C or SIGTERM arrives: a publication (outputs
    swapped in together) is done whole. A signal that arrives meanwhile is noted in
    the log and otherwise dropped: the stage then ends normally, its work complete, and DVC,
    when alive, records it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[str] = []

    def record(signum: int, frame: object) -> None:
        received.append(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, record) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if received:
            log.warning("%s received while %s; finished that first", received[0], what)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
