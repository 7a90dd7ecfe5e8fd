"""Wrappers around the real clients, each bound to credentials (``Creds``,
or ``None`` for anonymous) with ``as_user`` for another identity:

* ``Skopeo``; ``make_oras_client`` (oras-py, in-process);
* ``Containerd`` (``ctr``) and ``Dockerd`` (the docker CLI) over private daemons;
* ``StorageTool``: podman or buildah over a private containers-storage.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

from support.processes import Daemon, require_tool, run, run_fail
from support.server import Creds


class Skopeo:
    """skopeo with a private policy; bound to ``creds`` (``None``: anonymous).

    The credentials are added per subcommand: ``--src-creds``/``--dest-creds``
    for ``copy`` (ignored by skopeo for non-registry transports), ``--creds``
    for ``inspect``, ``list-tags`` and ``delete``.
    """

    CREDS_SUBCOMMANDS = ("inspect", "list-tags", "delete")

    def __init__(self, env: Mapping[str, str], policy: Path, creds: Creds | None = None):
        self.exe = require_tool("skopeo")
        self.env = dict(env)
        self.policy = policy
        self.creds = creds

    def as_user(self, creds: Creds | None) -> "Skopeo":
        other = copy.copy(self)
        other.creds = creds
        return other

    def argv(self, *args) -> list[str]:
        args = [str(a) for a in args]
        if self.creds is not None and args:
            if args[0] == "copy":
                args[1:1] = ["--src-creds", self.creds.arg, "--dest-creds", self.creds.arg]
            elif args[0] in self.CREDS_SUBCOMMANDS:
                args[1:1] = ["--creds", self.creds.arg]
        return [self.exe, "--policy", str(self.policy), *args]

    def __call__(self, *args, **kw) -> subprocess.CompletedProcess:
        return run(self.argv(*args), self.env, **kw)

    def fail(self, *args, **kw) -> subprocess.CompletedProcess:
        return run_fail(self.argv(*args), self.env, **kw)

    def copy(self, src: str, dst: str, *extra: str) -> subprocess.CompletedProcess:
        return self("copy", "--src-tls-verify=false", "--dest-tls-verify=false", *extra, src, dst)

    def inspect_raw(self, ref: str, *extra: str) -> bytes:
        return self("inspect", "--raw", "--tls-verify=false", *extra, ref, text=False).stdout

    def inspect(self, ref: str, *extra: str) -> dict:
        return json.loads(self("inspect", "--tls-verify=false", *extra, ref).stdout)

    def list_tags(self, ref: str) -> dict:
        return json.loads(self("list-tags", "--tls-verify=false", ref).stdout)


def make_oras_client(host: str, creds: Creds | None = None):
    """An oras-py client for ``host`` sending Basic credentials ``creds`` when challenged.

    ``auth_backend="basic"``: oras-py 0.2's default token backend caches one
    bearer token and, when berth answers a request for another repository
    with 401 ``error="insufficient_scope"``, retries with the same token
    instead of asking for a new one.  The basic backend answers every
    challenge with the Basic credentials, which berth accepts on /v2/.
    Without ``creds`` it must never meet a challenge (oras-py would retry
    for minutes).  Use it with the ``oras_home`` fixture so no host
    credentials are loaded.
    """
    import oras.client  # noqa: PLC0415 - only the oras tests need it

    client = oras.client.OrasClient(hostname=host, insecure=True, auth_backend="basic")
    if creds is not None:
        client.auth.set_basic_auth(creds.user, creds.password)
    client.session.trust_env = False
    # oras-py sends requests without a timeout: bound every one of them.
    send = client.session.request

    def request_with_timeout(method, url, **kw):
        kw.setdefault("timeout", 60)
        return send(method, url, **kw)

    client.session.request = request_with_timeout
    return client


class Containerd:
    """containerd plus ``ctr`` bound to its socket; registry commands use ``creds``.

    ``--user user:password`` is added to ``images pull|push`` and ``content
    fetch`` when ``creds`` is set (``None``: anonymous).
    """

    CREDS_SUBCOMMANDS = {("images", "pull"), ("images", "push"), ("content", "fetch")}

    def __init__(self, daemon: Daemon, address: str, env: Mapping[str, str], creds: Creds | None = None):
        self.daemon = daemon
        self.address = address
        self.env = dict(env)
        self.ctr_exe = require_tool("ctr")
        self.creds = creds

    def as_user(self, creds: Creds | None) -> "Containerd":
        other = copy.copy(self)
        other.creds = creds
        return other

    def ctr_argv(self, *args, namespace: str = "e2e") -> list[str]:
        args = [str(a) for a in args]
        if self.creds is not None and tuple(args[:2]) in self.CREDS_SUBCOMMANDS:
            args[2:2] = ["--user", self.creds.arg]
        return [self.ctr_exe, "--address", self.address, "--namespace", namespace, *args]

    def ctr(self, *args, namespace: str = "e2e", **kw) -> subprocess.CompletedProcess:
        return run(self.ctr_argv(*args, namespace=namespace), self.env, **kw)

    def ctr_fail(self, *args, namespace: str = "e2e", **kw) -> subprocess.CompletedProcess:
        return run_fail(self.ctr_argv(*args, namespace=namespace), self.env, **kw)


class Dockerd:
    """dockerd plus the docker CLI bound to it.

    The CLI keeps registry logins in ``$DOCKER_CONFIG/config.json`` and hands
    them to the daemon per request: ``with_config(dir)`` gives a CLI with its
    own (initially empty) config dir, ``login(host, creds)`` logs it in.
    """

    def __init__(self, daemon: Daemon, host: str, env: Mapping[str, str], docker_exe: str):
        self.daemon = daemon
        self.host = host
        self.env = dict(env, DOCKER_HOST=host)
        self.exe = docker_exe

    def with_config(self, config_dir: Path) -> "Dockerd":
        """A CLI using ``config_dir`` (created, with an empty ``auths``) as DOCKER_CONFIG."""
        config_dir.mkdir(parents=True, exist_ok=True)
        config = config_dir / "config.json"
        if not config.exists():
            config.write_text('{"auths": {}}\n')
        other = copy.copy(self)
        other.env = dict(self.env, DOCKER_CONFIG=str(config_dir))
        return other

    @property
    def config_dir(self) -> Path:
        return Path(self.env["DOCKER_CONFIG"])

    def login_argv(self, registry_host: str, user: str) -> list[str]:
        return [self.exe, "login", "--username", user, "--password-stdin", registry_host]

    def login(self, registry_host: str, creds: Creds) -> subprocess.CompletedProcess:
        """``docker login --password-stdin``; asserts "Login Succeeded"."""
        res = run(self.login_argv(registry_host, creds.user), self.env, input=creds.password + "\n")
        assert "Login Succeeded" in res.stdout, f"docker login said:\n{res.stdout}\n{res.stderr}"
        return res

    def login_fail(self, registry_host: str, creds: Creds) -> subprocess.CompletedProcess:
        """``docker login`` expected to fail; returns the result for output checks."""
        return run_fail(self.login_argv(registry_host, creds.user), self.env, input=creds.password + "\n")

    def __call__(self, *args, **kw) -> subprocess.CompletedProcess:
        return run([self.exe, *args], self.env, **kw)

    def fail(self, *args, **kw) -> subprocess.CompletedProcess:
        return run_fail([self.exe, *args], self.env, **kw)

    def inspect(self, ref: str) -> dict:
        return json.loads(self("image", "inspect", ref).stdout)[0]


def docker_cli() -> str:
    # Prefer the Debian docker.io CLI that matches the daemon; some images put
    # another docker CLI earlier on PATH.
    if os.access("/usr/bin/docker", os.X_OK):
        return "/usr/bin/docker"
    return require_tool("docker")


class StorageTool:
    """podman or buildah bound to a private containers-storage under tmp.

    ``--creds user:password`` is added to ``pull``, ``push`` and ``manifest
    push`` when ``creds`` is set (``None``: anonymous).
    """

    def __init__(self, name: str, work: Path, env: Mapping[str, str], creds: Creds | None = None):
        self.creds = creds
        self.exe = require_tool(name)
        # podman refuses a runroot longer than 50 characters; "rr" keeps
        # /tmp/pytest-of-root/pytest-NNN/podman-auth0/rr under it.
        root, runroot, tmp = work / "root", work / "rr", work / "tmp"
        assert len(str(runroot)) <= 50, f"podman runroot {runroot} is longer than 50 characters"
        for d in (root, runroot, tmp):
            d.mkdir(parents=True, exist_ok=True)
        storage_conf = work / "storage.conf"
        storage_conf.write_text(f'[storage]\ndriver = "vfs"\ngraphroot = "{root}"\nrunroot = "{runroot}"\n')
        self.env = dict(env, CONTAINERS_STORAGE_CONF=str(storage_conf), TMPDIR=str(tmp))
        self.global_args = ["--root", str(root), "--runroot", str(runroot), "--storage-driver", "vfs"]
        if name == "podman":
            self.global_args += [
                "--tmpdir",
                str(tmp),
                "--cgroup-manager=cgroupfs",
                "--events-backend=file",
            ]

    def as_user(self, creds: Creds | None) -> "StorageTool":
        other = copy.copy(self)
        other.creds = creds
        return other

    def argv(self, *args) -> list[str]:
        args = [str(a) for a in args]
        if self.creds is not None:
            if args[:1] in (["pull"], ["push"]):
                args[1:1] = ["--creds", self.creds.arg]
            elif args[:2] == ["manifest", "push"]:
                args[2:2] = ["--creds", self.creds.arg]
        return [self.exe, *self.global_args, *args]

    def __call__(self, *args, **kw) -> subprocess.CompletedProcess:
        return run(self.argv(*args), self.env, **kw)

    def fail(self, *args, **kw) -> subprocess.CompletedProcess:
        return run_fail(self.argv(*args), self.env, **kw)
