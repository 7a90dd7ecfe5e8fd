"""Kubernetes pulls without static secrets, over the real protocols.

No cluster runs here, and none is faked: the parts a cluster would play are
played by the protocols themselves.

* An OIDC issuer on loopback serves what a Kubernetes API server serves for
  its service-account issuer — ``/.well-known/openid-configuration`` and the
  JWKS it names — over HTTPS with a CA of its own, with RSA keys made here
  (rotated during a test), and mints service-account tokens shaped as the
  API server mints them (``iss``, ``sub`` ``system:serviceaccount:NS:NAME``,
  ``aud``, ``exp``/``iat``/``nbf``, the ``kubernetes.io`` claims).
* ``berth credential-provider`` is fed the exact ``CredentialProviderRequest``
  a kubelet 1.34 sends (with ``serviceAccountToken`` when the provider's
  ``tokenAttributes`` are configured, without it otherwise), and the
  credentials it prints are then used by containerd (``ctr images pull
  --user``) and skopeo to pull for real.
* ``berth check-pull --service-account-token`` names a broken federation.
"""

from __future__ import annotations

import base64
import json
import time
import uuid

import pytest

from conftest import Creds, Skopeo, berth_binary, free_port, requires_auth, run, run_fail
from diag_support import CertAuthority
from oidc_support import AUDIENCE, SUBJECT, Issuer

pytestmark = requires_auth

REPO, TAG = "shop/web", "v1"


@pytest.fixture(scope="module")
def ca(tmp_path_factory) -> CertAuthority:
    return CertAuthority(tmp_path_factory.mktemp("federation-ca"), cn="berth e2e cluster CA")


@pytest.fixture(scope="module")
def issuer(ca):
    i = Issuer(ca, "cluster")
    yield i
    i.stop()


def start_registry(berth_servers, client_env, client_home, oci_images, name: str, **auth):
    server = berth_servers(
        name,
        {"server": {"listen": f"127.0.0.1:{free_port()}"}, "auth": {"failed_login_limit": 1000, **auth}},
    )
    Skopeo(client_env, client_home["policy"], server.owner).copy(
        oci_images.layout.transport("v1"), f"docker://{server.host}/{REPO}:{TAG}"
    )
    return server


@pytest.fixture(scope="module")
def reg(berth_servers, client_env, client_home, oci_images):
    # Refetch an issuer's keys on any unknown key id at once (the bound is
    # tested on its own server below).
    return start_registry(berth_servers, client_env, client_home, oci_images, "berth-fed", jwks_refresh_seconds=0)


def federate(server, issuer, ca, name: str, role: str | None = "AcrPull", subject: str = SUBJECT) -> str:
    """A service principal federated with ``subject`` of ``issuer``; returns its app id."""
    body = {"name": name, "years": 1}
    if role:
        body |= {"role": role, "scope": REPO}
    app_id = server.api("POST", "/service-principals", body, expect=(201,))["identity"]["id"]
    out = server.cli(
        "sp", "federated-credential", "create", "--id", app_id, "--name", "cluster",
        "--issuer", issuer.url, "--subject", subject, "--audience", AUDIENCE,
        "--issuer-ca-file", str(ca.cert), "-o", "json",
    )  # fmt: skip
    created = json.loads(out.stdout)
    assert created["keySource"] == "discovery" and created["customCa"] is True, created
    return app_id


def provider_request(image: str, token: str | None) -> str:
    """The CredentialProviderRequest a kubelet 1.34 writes to the plugin's stdin."""
    request = {
        "kind": "CredentialProviderRequest",
        "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
        "image": image,
    }
    if token is not None:
        request["serviceAccountToken"] = token
        request["serviceAccountAnnotations"] = {"berth.dev/registry": image.split("/")[0]}
    return json.dumps(request)


def credential_provider(env: dict, request: str, *args: str, ok: bool = True):
    argv = [berth_binary(), "credential-provider", *args]
    return run(argv, env, input=request) if ok else run_fail(argv, env, input=request)


def test_kubelet_request_with_a_service_account_token_then_ctr_and_skopeo_pull(
    reg, issuer, ca, containerd, client_env, client_home, tmp_path
):
    app_id = federate(reg, issuer, ca, "shop-puller")
    image = f"{reg.host}/{REPO}:{TAG}"
    token = issuer.token(lifetime=900)
    request = provider_request(image, token)
    out = credential_provider(client_env, request)
    response = json.loads(out.stdout)
    assert response["kind"] == "CredentialProviderResponse", response
    assert response["apiVersion"] == "credentialprovider.kubelet.k8s.io/v1", response
    assert response["cacheKeyType"] == "Registry", response
    seconds = int(response["cacheDuration"].rstrip("s"))
    assert 0 < seconds <= 900, response
    auth = response["auth"][reg.host]
    creds = Creds(auth["username"], auth["password"])
    print(f"\n===== kubelet request =====\n{request}\n===== provider response =====\n{out.stdout}")

    # containerd pulls with exactly what the kubelet would hand it.
    ns = f"fed-{uuid.uuid4().hex[:6]}"
    pulled = containerd.as_user(creds).ctr("images", "pull", "--plain-http", image, namespace=ns)
    assert "done" in pulled.stdout.lower() or pulled.returncode == 0, pulled.stdout
    print(f"===== ctr images pull --user {creds.user}:*** {image} =====\n{pulled.stdout[-600:]}")
    # skopeo too.
    inspect = run(
        ["skopeo", "inspect", "--tls-verify=false", "--creds", f"{creds.user}:{creds.password}", f"docker://{image}"],
        client_env,
    )
    assert json.loads(inspect.stdout)["Name"] == f"{reg.host}/{REPO}", inspect.stdout

    # The login event records the issuer and the subject.
    deadline = time.time() + 10
    while True:
        events = reg.api("GET", "/logs/login", params={"limit": "1000"})
        federated = [e for e in events if "via federated credential" in (e.get("identity") or "")]
        if federated:
            break
        assert time.time() < deadline, events[-5:]
        time.sleep(0.3)
    assert issuer.url in federated[-1]["identity"] and SUBJECT in federated[-1]["identity"], federated[-1]

    # explain lists the federation.
    out = reg.cli("explain", "--ip", "127.0.0.1", "--identity", app_id, "--action", "pull", "--repository", REPO)
    assert "federated credentials" in out.stdout and SUBJECT in out.stdout, out.stdout


def test_a_federated_principal_without_a_role_is_refused_by_name(reg, issuer, ca, containerd, client_env, tmp_path):
    subject = "system:serviceaccount:shop:no-role"
    federate(reg, issuer, ca, "shop-norole", role=None, subject=subject)
    image = f"{reg.host}/{REPO}:{TAG}"
    token = issuer.token(subject=subject)
    response = json.loads(credential_provider(client_env, provider_request(image, token)).stdout)
    auth = response["auth"][reg.host]
    res = containerd.as_user(Creds(auth["username"], auth["password"])).ctr_fail(
        "images", "pull", "--plain-http", image, namespace="fed-norole"
    )
    assert "403" in res.stderr or "denied" in res.stderr.lower(), res.stderr
    # check-pull walks the same path and names it.
    sa = tmp_path / "token"
    sa.write_text(token)
    res = run_fail(
        [berth_binary(), "check-pull", image, "--service-account-token", str(sa), "-o", "json"], client_env
    )
    verdict = json.loads(res.stdout)
    assert (verdict["code"], res.returncode) == ("PERMISSION_DENIED", 18), verdict
    assert "via federated credential 'cluster'" in verdict["evidence"] and subject in verdict["evidence"], verdict


def test_check_pull_names_a_broken_federation(reg, issuer, ca, client_env, tmp_path):
    federate(reg, issuer, ca, "shop-checked", subject="system:serviceaccount:shop:checked")
    image = f"{reg.host}/{REPO}:{TAG}"
    sa = tmp_path / "token"
    cases = [
        (issuer.token(subject="system:serviceaccount:shop:checked"), None, "PASS"),
        (issuer.token(subject="system:serviceaccount:shop:checked", audience="kubernetes"), "audience mismatch", "mint the token for the credential's audience"),
        (issuer.token(subject="system:serviceaccount:shop:stranger"), "is not federated", "add a federated credential"),
        (issuer.token(subject="system:serviceaccount:shop:checked", lifetime=-3600, iat=int(time.time()) - 7200, nbf=int(time.time()) - 7200), "expired", "fresh projected token"),
    ]  # fmt: skip
    for token, words, fix in cases:
        sa.write_text(token)
        argv = [berth_binary(), "check-pull", image, "--service-account-token", str(sa), "-o", "json"]
        if words is None:
            res = run(argv, client_env)
            assert json.loads(res.stdout)["ok"], res.stdout
            continue
        res = run_fail(argv, client_env)
        verdict = json.loads(res.stdout)
        assert (verdict["code"], res.returncode) == ("FEDERATED_TOKEN_REFUSED", 27), verdict
        assert words in verdict["evidence"] and fix in verdict["fix"], verdict
    text = run_fail([berth_binary(), "check-pull", image, "--service-account-token", str(sa)], client_env)
    print(f"\n===== check-pull, expired service-account token =====\n{text.stdout}")
    # The registry's login events name the refusal, the issuer and the subject.
    deadline = time.time() + 10
    while True:
        events = reg.api("GET", "/logs/login", params={"failed": "true", "limit": "1000"})
        refused = [
            e for e in events
            if "system:serviceaccount:shop:checked" in e["identity"] and "audience mismatch" in e["resultDescription"]
        ]  # fmt: skip
        if refused:
            break
        assert time.time() < deadline, events[-5:]
        time.sleep(0.3)
    assert refused[-1]["identity"].startswith(f"federated (issuer {issuer.url}"), refused[-1]
    assert refused[-1]["resultType"] == 401, refused[-1]


def test_keys_rotate_without_restart_and_an_unreachable_issuer_is_served_from_cache(reg, ca, client_env):
    rotating = Issuer(ca, "rotating")
    try:
        federate(reg, rotating, ca, "shop-rotating", subject="system:serviceaccount:shop:rotating")
        subject = "system:serviceaccount:shop:rotating"

        def exchange(token: str):
            return reg.session(creds=None).post(
                f"http://{reg.host}/oauth2/token",
                data={
                    "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
                    "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
                    "subject_token": token,
                    "service": reg.host,
                },
                timeout=30,
            )

        assert exchange(rotating.token(subject=subject)).status_code == 200
        old = rotating.keys[0]
        new = rotating.rotate("rotating-2")
        r = exchange(rotating.token(subject=subject, key=new))
        assert r.status_code == 200, r.text  # the new kid is fetched, no restart
        r = exchange(rotating.token(subject=subject, key=old))
        assert r.status_code == 401 and "unknown key" in r.text, r.text  # the old key is gone

        # The issuer goes away: tokens of the cached key still verify.
        rotating.stop()
        r = exchange(rotating.token(subject=subject, key=new))
        assert r.status_code == 200, r.text
    finally:
        rotating.server.server_close()

    # An issuer that never answered: named as unreachable.
    gone = Issuer(ca, "gone")
    gone.stop()
    federate(reg, gone, ca, "shop-gone", subject="system:serviceaccount:shop:gone")
    r = reg.session(creds=None).get(
        f"http://{reg.host}/v2/", auth=("federated", gone.token(subject="system:serviceaccount:shop:gone"))
    )
    assert r.status_code == 401 and "unreachable" in r.text, r.text


def test_unknown_key_ids_do_not_make_the_registry_fetch_per_request(
    berth_servers, issuer, ca, client_env, client_home, oci_images
):
    bounded = start_registry(berth_servers, client_env, client_home, oci_images, "berth-fed-bounded")
    federate(bounded, issuer, ca, "bounded", subject="system:serviceaccount:shop:bounded")
    subject = "system:serviceaccount:shop:bounded"
    ok = bounded.session(creds=None).get(f"http://{bounded.host}/v2/", auth=("federated", issuer.token(subject=subject)))
    assert ok.status_code == 200, ok.text
    fetched = len(issuer.requests)
    for i in range(20):
        token = issuer.keys[0].sign(
            json.loads(base64.urlsafe_b64decode(issuer.token(subject=subject).split(".")[1] + "==")),
            kid=f"made-up-{i}",
        )
        r = bounded.session(creds=None).get(f"http://{bounded.host}/v2/", auth=("federated", token))
        assert r.status_code == 401 and "unknown key" in r.text, r.text
    assert len(issuer.requests) - fetched <= 2, issuer.requests[fetched:]  # one refetch at most (discovery + JWKS)


def test_what_was_issued_lapses_with_the_subject_token(reg, issuer, ca, client_env):
    federate(reg, issuer, ca, "shop-short", subject="system:serviceaccount:shop:short")
    token = issuer.token(subject="system:serviceaccount:shop:short", lifetime=3)
    subject_exp = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))["exp"]
    s = reg.session(creds=None)
    r = s.post(
        f"http://{reg.host}/oauth2/token",
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token": token,
            "service": reg.host,
            "scope": f"repository:{REPO}:pull",
        },
        timeout=30,
    )
    assert r.status_code == 200, r.text
    access = r.json()["access_token"]
    assert r.json()["expires_in"] <= 3, r.json()
    assert json.loads(base64.urlsafe_b64decode(access.split(".")[1] + "=="))["exp"] <= subject_exp
    manifest = s.get(
        f"http://{reg.host}/v2/{REPO}/manifests/{TAG}",
        headers={"Authorization": f"Bearer {access}", "Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert manifest.status_code == 200, manifest.text
    layer = manifest.json()["layers"][0]["digest"]
    # A layer fetched with the issued token works while it lasts ...
    blob = s.get(f"http://{reg.host}/v2/{REPO}/blobs/{layer}", headers={"Authorization": f"Bearer {access}"})
    assert blob.status_code == 200
    # Past the subject token's end, plus the 5 s the registry allows its own
    # tokens for clock differences between nodes.
    time.sleep(max(0.0, subject_exp + 6.2 - time.time()))
    # ... and not after: nothing outlives the service-account token.
    blob = s.get(f"http://{reg.host}/v2/{REPO}/blobs/{layer}", headers={"Authorization": f"Bearer {access}"})
    assert blob.status_code == 401, blob.text


def test_without_a_token_the_node_credentials_are_used(reg, containerd, client_env, tmp_path):
    image = f"{reg.host}/{REPO}:{TAG}"
    # A kubelet without tokenAttributes sends no token: nothing to exchange.
    res = credential_provider(client_env, provider_request(image, None), ok=False)
    assert "no service-account token" in res.stderr and "tokenAttributes" in res.stderr, res.stderr
    node = tmp_path / "node-config.json"
    auth = base64.b64encode(f"{reg.owner.user}:{reg.owner.password}".encode()).decode()
    node.write_text(json.dumps({"auths": {reg.host: {"auth": auth}}}))
    node.chmod(0o600)
    out = credential_provider(client_env, provider_request(image, None), "--node-credentials", str(node))
    response = json.loads(out.stdout)
    assert response["cacheDuration"] == "300s", response
    creds = response["auth"][reg.host]
    containerd.as_user(Creds(creds["username"], creds["password"])).ctr(
        "images", "pull", "--plain-http", image, namespace="fed-node"
    )
    # A request that is not a kubelet's is refused on stderr, non-zero.
    res = credential_provider(client_env, json.dumps({"kind": "Other", "apiVersion": "v9"}), ok=False)
    assert "CredentialProviderRequest" in res.stderr, res.stderr
