"""Credentials as clients store them, used by berth's own commands.

* ``docker login`` (the real engine's CLI) writes its config — against berth
  an ``identitytoken`` (a refresh token) and no password — and ``berth
  repository list`` and ``berth check-pull`` then work from that file alone.
* A credential helper (``docker-credential-e2e``, a small script written
  here that speaks the helper protocol: ``get``/``store``/``erase`` on stdin
  and stdout) named in the config's ``credHelpers``: ``berth login`` stores
  through it (the config file keeps no secret), berth's commands and skopeo
  read through it, ``berth logout`` erases it.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import sys
from pathlib import Path

from conftest import berth_binary, requires_auth, run

pytestmark = requires_auth


def berth(*args: str, env: dict, check: bool = True):
    return run([berth_binary(), *args], env, check=check)


def bare_env(client_env: dict, config_dir: Path, **extra: str) -> dict:
    """The clients' environment with this DOCKER_CONFIG and no BERTH_* credentials."""
    env = {k: v for k, v in client_env.items() if not k.startswith("BERTH_")}
    return dict(env, DOCKER_CONFIG=str(config_dir), **extra)


def repo_names(stdout: str) -> list[str]:
    """The names in ``berth repository list -o json``."""
    listed = json.loads(stdout)
    listed = listed.get("repositories", listed) if isinstance(listed, dict) else listed
    return [r if isinstance(r, str) else r["name"] for r in listed]


def test_docker_login_then_berth_commands_use_dockers_config(docker, registry, seeded, client_env):
    config = json.loads((docker.config_dir / "config.json").read_text())
    entry = config["auths"][registry.host]
    # What docker login stores against berth: a refresh token, no password.
    assert entry.get("identitytoken"), config
    assert base64.b64decode(entry["auth"]).decode() == "owner:", entry

    env = bare_env(client_env, docker.config_dir)
    listing = berth("repository", "list", "--registry", f"http://{registry.host}", "-o", "json", env=env)
    assert seeded.app in repo_names(listing.stdout), listing.stdout

    # check-pull without flags reads the same file (one of the kubelet's places).
    image = f"{registry.host}/{seeded.app}:{seeded.tag}"
    res = berth("check-pull", image, "--plain-http", "-o", "json", env=env, check=False)
    verdict = json.loads(res.stdout)
    assert res.returncode == 0 and verdict["ok"], res.stdout
    steps = {s["name"]: s["detail"] for s in verdict["steps"]}
    assert "identitytoken" in steps["credentials"], steps
    assert str(docker.config_dir / "config.json") in steps["credentials"], steps
    # And named explicitly.
    res = berth(
        "check-pull", image, "--plain-http", "--docker-config", str(docker.config_dir), "-o", "json", env=env,
        check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout


HELPER = """#!{python}
# docker-credential-e2e: the credential-helper protocol over a JSON file.
import json, os, sys
path = os.environ["E2E_HELPER_STORE"]
store = json.load(open(path)) if os.path.exists(path) else {{}}
verb = sys.argv[1]
data = sys.stdin.read().strip()
with open(path + ".log", "a") as log:
    log.write(verb + "\\n")
if verb == "get":
    if data not in store:
        print("credentials not found in native keychain")
        sys.exit(1)
    u, s = store[data]
    print(json.dumps({{"ServerURL": data, "Username": u, "Secret": s}}))
elif verb == "store":
    req = json.loads(data)
    store[req["ServerURL"]] = [req["Username"], req["Secret"]]
    json.dump(store, open(path, "w"))
elif verb == "erase":
    if data not in store:
        print("credentials not found in native keychain")
        sys.exit(1)
    del store[data]
    json.dump(store, open(path, "w"))
elif verb == "list":
    print(json.dumps({{k: v[0] for k, v in store.items()}}))
else:
    sys.exit(2)
"""


def test_credential_helper_used_by_berth_login_commands_and_skopeo(registry, seeded, client_env, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-e2e"
    helper.write_text(HELPER.format(python=sys.executable))
    helper.chmod(helper.stat().st_mode | stat.S_IEXEC)
    store = tmp_path / "helper-store.json"
    config_dir = tmp_path / "docker-config"
    config_dir.mkdir()
    config_file = config_dir / "config.json"
    config_file.write_text(json.dumps({"credHelpers": {registry.host: "e2e"}}))
    env = bare_env(
        client_env, config_dir, PATH=f"{bin_dir}{os.pathsep}{client_env['PATH']}", E2E_HELPER_STORE=str(store)
    )
    url = f"http://{registry.host}"

    out = run(
        [berth_binary(), "login", "--registry", url, "--username", registry.owner.user, "--password-stdin"],
        env, input=registry.owner.password + "\n",
    )  # fmt: skip
    assert "stored in docker-credential-e2e" in out.stdout, out.stdout
    assert json.loads(store.read_text()) == {registry.host: [registry.owner.user, registry.owner.password]}
    # The config file names the registry but holds no secret.
    config = json.loads(config_file.read_text())
    assert config["auths"][registry.host] == {}, config
    assert registry.owner.password not in config_file.read_text()

    listing = berth("repository", "list", "--registry", url, "-o", "json", env=env)
    assert seeded.app in repo_names(listing.stdout), listing.stdout
    image = f"{registry.host}/{seeded.app}:{seeded.tag}"
    res = berth("check-pull", image, "--plain-http", "--docker-config", str(config_dir), "-o", "json", env=env,
                check=False)  # fmt: skip
    verdict = json.loads(res.stdout)
    assert res.returncode == 0, res.stdout
    assert "docker-credential-e2e" in verdict["steps"][0]["detail"], verdict["steps"]

    # skopeo reads the same file and helper.
    inspect = run(
        ["skopeo", "inspect", "--authfile", str(config_file), "--tls-verify=false", f"docker://{image}"], env
    )
    assert json.loads(inspect.stdout)["Name"] == f"{registry.host}/{seeded.app}", inspect.stdout
    calls = (Path(str(store) + ".log")).read_text().split()
    assert calls.count("get") >= 3 and "store" in calls, calls

    # logout erases through the helper; the commands then have no credentials.
    out = berth("logout", "--registry", url, env=env)
    assert "Removed the credentials" in out.stdout, out.stdout
    assert json.loads(store.read_text()) == {}
    assert registry.host not in json.loads(config_file.read_text()).get("auths", {})
    refused = berth("repository", "list", "--registry", url, env=env, check=False)
    assert refused.returncode == 1 and "berth login" in refused.stderr + refused.stdout, refused.stderr
