"""Running commands and background processes, with bounded waits.

* ``run`` / ``run_fail``: a command without a shell, its output captured; an
  unexpected exit status raises ``CommandError`` with stdout and stderr.
* ``Daemon``: a background process in its own process group, stopped with
  SIGTERM then SIGKILL; ``wait_for`` polls a readiness probe and fails early
  when the process exits.
* ``require_tool``, ``free_port``, and the timeouts every wait uses.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest


# Bounded waits (seconds).
READY_TIMEOUT = 30
DAEMON_READY_TIMEOUT = 60
STOP_TIMEOUT = 20
COMMAND_TIMEOUT = 180  # per client command; everything is local


# Proxy variables are dropped for every client: all traffic is loopback-only.
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "ftp_proxy", "no_proxy")


class CommandError(AssertionError):
    """A command exited with an unexpected status; carries its full output."""


def _fmt_output(data) -> str:
    if data is None:
        return ""
    if isinstance(data, bytes):
        data = data.decode("utf-8", errors="replace")
    if len(data) > 8000:
        data = data[:2000] + "\n[... cut ...]\n" + data[-6000:]
    return data


def run(
    cmd: Sequence[str],
    env: Mapping[str, str] | None = None,
    *,
    check: bool = True,
    timeout: float = COMMAND_TIMEOUT,
    input: bytes | str | None = None,
    cwd: str | os.PathLike | None = None,
    text: bool = True,
) -> subprocess.CompletedProcess:
    """Run ``cmd`` (no shell), capture stdout/stderr, raise CommandError on failure.

    ``env`` replaces the environment entirely (use the ``client_env`` fixture
    as a base).  With ``text=False`` stdout/stderr are bytes.
    """
    cmd = [str(c) for c in cmd]
    if isinstance(input, str) and not text:
        input = input.encode()
    print(f"+ {' '.join(cmd)}", file=sys.stderr)
    try:
        proc = subprocess.run(
            cmd,
            check=False,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            input=input,
            capture_output=True,
            timeout=timeout,
            text=text,
            errors="replace" if text else None,
        )
    except subprocess.TimeoutExpired as exc:
        raise CommandError(
            f"command timed out after {timeout}s: {' '.join(cmd)}\n"
            f"--- stdout ---\n{_fmt_output(exc.stdout)}\n--- stderr ---\n{_fmt_output(exc.stderr)}"
        ) from None
    except FileNotFoundError as exc:
        raise CommandError(f"command not found: {cmd[0]} ({exc}); run scripts/install-test-deps.sh") from None
    if check and proc.returncode != 0:
        raise CommandError(
            f"command failed with exit status {proc.returncode}: {' '.join(cmd)}\n"
            f"--- stdout ---\n{_fmt_output(proc.stdout)}\n--- stderr ---\n{_fmt_output(proc.stderr)}"
        )
    return proc


def run_fail(cmd: Sequence[str], env: Mapping[str, str] | None = None, **kw) -> subprocess.CompletedProcess:
    """Run ``cmd`` and assert that it FAILS; returns the result for output checks."""
    proc = run(cmd, env, check=False, **kw)
    if proc.returncode == 0:
        raise CommandError(
            f"command unexpectedly succeeded: {' '.join(str(c) for c in cmd)}\n"
            f"--- stdout ---\n{_fmt_output(proc.stdout)}\n--- stderr ---\n{_fmt_output(proc.stderr)}"
        )
    return proc


def require_tool(name: str) -> str:
    """Absolute path of ``name``; fails (never skips) when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"required tool {name!r} is not installed; run scripts/install-test-deps.sh", pytrace=False)
    return path


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` (any 127/8 address or ``::1``) that is free right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for(
    predicate: Callable[[], bool], timeout: float, what: str, proc: Daemon | None = None, interval: float = 0.2
):
    """Poll ``predicate`` until true; fail after ``timeout`` or if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.exited():
            raise RuntimeError(
                f"{proc.name} exited with status {proc.popen.returncode} while waiting for {what}\n{proc.log_tail()}"
            )
        try:
            if predicate():
                return
        except Exception as exc:  # noqa: BLE001 - readiness probes fail in many ways
            last_exc = exc
        time.sleep(interval)
    detail = proc.log_tail() if proc is not None else ""
    raise RuntimeError(f"timed out after {timeout}s waiting for {what} (last error: {last_exc!r})\n{detail}")


class Daemon:
    """A background process started by a fixture, in its own process group.

    Output goes to ``<log_dir>/<name>.stdout|stderr``.  ``stop`` sends SIGTERM
    to the group, waits ``STOP_TIMEOUT`` seconds, then SIGKILLs it.
    """

    def __init__(self, name: str, argv: Sequence[str], log_dir: Path, env: Mapping[str, str] | None = None, cwd=None):
        self.name = name
        self.argv = [str(a) for a in argv]
        log_dir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = log_dir / f"{name}.stdout"
        self.stderr_path = log_dir / f"{name}.stderr"
        print(f"+ [{name}] {' '.join(self.argv)}", file=sys.stderr)
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
            )

    def exited(self) -> bool:
        return self.popen.poll() is not None

    def log_tail(self, limit: int = 6000) -> str:
        parts = []
        for p in (self.stdout_path, self.stderr_path):
            try:
                data = p.read_bytes().decode("utf-8", errors="replace")
            except OSError:
                data = ""
            parts.append(f"--- {p.name} (tail) ---\n{data[-limit:]}")
        return "\n".join(parts)

    def _signal_group(self, sig: int):
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, timeout: float = STOP_TIMEOUT):
        if self.popen.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                print(f"{self.name} ignored SIGTERM for {timeout}s; killing", file=sys.stderr)
        # Also reap anything left in the group (the leader may be gone already).
        self._signal_group(signal.SIGKILL)
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            print(f"{self.name} (pid {self.popen.pid}) did not die after SIGKILL", file=sys.stderr)
