"""The packaging under packaging/: the systemd unit and the Kubernetes manifests.

No registry runs here. What is checked:

* every Kubernetes API object under ``packaging/kubernetes`` validates with
  kubernetes-validate against fixed Kubernetes versions in strict mode (an
  unknown field fails, and so does a kind the validator has no schema for);
  a manifest with a misspelled field must be rejected, so the validation
  cannot pass vacuously. The kustomization files list files that exist, and
  the kubelet's ``CredentialProviderConfig`` (a node file, not an API
  object) has the fields the kubelet needs and matches docs/kubernetes.md;
* what matters in them: the embedded StatefulSet is one replica, every pod
  runs as non-root 65532 with a read-only root file system and no
  capabilities, readiness is ``/readyz`` and liveness ``/healthz`` on port
  5000, the scale-out Deployment has a PodDisruptionBudget, and every Secret
  key is a ``BERTH_*`` setting the server knows — checked by name and by
  ``berth config check`` with the Secrets as environment;
* ``systemd-analyze verify`` finds nothing to say about berth.service (with
  ExecStart pointed at the berth under test), ``systemd-analyze security
  --offline=true`` scores it below 3.0, the sysusers.d file creates the
  user the unit runs as, and packaging/systemd/berth.toml (also with its
  commented-out examples enabled) passes ``berth config check``.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import tomllib
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from conftest import E2E_REGISTRY, REPO_ROOT, berth_binary, require_tool, run, run_fail

PACKAGING = REPO_ROOT / "packaging"
KUBERNETES = PACKAGING / "kubernetes"
SYSTEMD = PACKAGING / "systemd"

# The oldest Kubernetes the manifests are meant for, and the first whose
# kubelet sends pods' service-account tokens to credential providers.
K8S_VERSIONS = ("1.31", "1.34")

PORT = 5000
NONROOT = 65532
# [server] shutdown_grace_seconds when berth.toml does not set it.
DEFAULT_SHUTDOWN_GRACE = 30

# BERTH_* settings of `berth serve` that the packaging may set by environment.
KNOWN_BERTH_ENV = frozenset(
    {
        "BERTH_DATA_DIR",
        *(
            f"BERTH_SERVER__{k}"
            for k in ("LISTEN", "TLS_CERT", "TLS_KEY", "TRUSTED_PROXIES", "SHUTDOWN_GRACE_SECONDS")
        ),
        *(
            f"BERTH_STORAGE__{k}"
            for k in ("KIND", "BUCKET", "ENDPOINT", "REGION", "ACCESS_KEY_ID", "SECRET_ACCESS_KEY", "PREFIX")
        ),
        "BERTH_METADATA__URL",
        "BERTH_LOG__FORMAT",
        "BERTH_LOG__LEVEL",
        "BERTH_AUTH__INITIAL_OWNER_PASSWORD",
    }
)

# Files that are not Kubernetes API objects.
KUSTOMIZATION = "kustomization.yaml"
KUBELET_CONFIG = KUBERNETES / "credential-provider" / "credential-providers.yaml"

requires_berth = pytest.mark.skipif(
    E2E_REGISTRY != "berth",
    reason="runs berth's own configuration loader; the reference-registry run may have no berth binary",
)


# ---------------------------------------------------------------- helpers


def yaml_files() -> list[Path]:
    files = sorted(p for p in KUBERNETES.rglob("*") if p.suffix in (".yaml", ".yml"))
    assert files, f"no YAML under {KUBERNETES}"
    return files


def documents(path: Path) -> list[dict]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert docs, f"{path} holds no YAML document"
    for d in docs:
        assert isinstance(d, dict), f"{path}: a document is not a mapping: {d!r}"
    return docs


def api_objects() -> list[tuple[Path, dict]]:
    """Every document under packaging/kubernetes meant for the API server."""
    return [
        (path, doc)
        for path in yaml_files()
        if path.name != KUSTOMIZATION and path != KUBELET_CONFIG
        for doc in documents(path)
    ]


def the(directory: str, kind: str) -> dict:
    """The one object of ``kind`` under packaging/kubernetes/<directory>."""
    found = [doc for path, doc in api_objects() if path.parent.name == directory and doc["kind"] == kind]
    assert len(found) == 1, f"{directory}: expected one {kind}, found {len(found)}"
    return found[0]


def validate(doc: dict, version: str) -> None:
    """Strict validation; a kind without a schema is a failure, not a warning."""
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        where = ".".join(str(p) for p in e.path)
        raise AssertionError(
            f"{doc['kind']}/{doc['metadata']['name']} is invalid for Kubernetes {version}: {where}: {e.message}"
        ) from None
    except kubernetes_validate.SchemaNotFoundError as e:
        raise AssertionError(e.message) from None


def the_container(workload: dict) -> dict:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, f"{workload['kind']}: one container expected"
    return containers[0]


def container_port(container: dict, port) -> int:
    """A probe's or Service's port (a number or a container port's name) as a number."""
    if isinstance(port, int):
        return port
    named = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    assert named, f"no container port named {port!r}"
    return named[0]


def selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def clean_env() -> dict:
    """This process's environment without any BERTH_* setting of the caller's."""
    return {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}


def config_check(env: dict, config: Path | None = None):
    argv = [berth_binary(), "config", "check"]
    if config is not None:
        argv += ["--config", config]
    return run(argv, env)


def effective(result) -> dict:
    """The effective configuration `berth config check` prints (TOML)."""
    return tomllib.loads(result.stdout)


def uncomment_examples(text: str) -> str:
    """``# key = value`` and ``# [section]`` lines made live (prose comments stay)."""
    return re.sub(r"(?m)^#\s?((?:\[[a-z_]+\]|[a-z_]+ = .+))$", r"\1", text)


def with_data_dir(text: str, data_dir: Path) -> str:
    out, n = re.subn(r'(?m)^data_dir = ".*"$', f'data_dir = "{data_dir}"', text)
    assert n == 1, "the configuration must set data_dir exactly once"
    return out


def secret_data(secret: dict) -> dict:
    data = dict(secret.get("stringData") or {})
    assert not secret.get("data"), "Secret examples use stringData (readable placeholders)"
    return data


# ------------------------------------------------- Kubernetes: validation


def test_every_manifest_validates_strictly():
    objects = api_objects()
    kinds = {doc["kind"] for _, doc in objects}
    # The set this directory is supposed to have: a file that fails to parse
    # as a manifest, or a missing one, shows here.
    assert {"StatefulSet", "Deployment", "Service", "Secret", "ConfigMap", "PodDisruptionBudget"} <= kinds, kinds
    assert {"ClusterRole", "ClusterRoleBinding"} <= kinds, kinds
    for path, doc in objects:
        assert doc.get("apiVersion") and doc.get("kind") and doc.get("metadata", {}).get("name"), path
        # Namespace-less: `kubectl apply -n` / kustomize's `namespace:` decide.
        assert "namespace" not in doc["metadata"], f"{path}: {doc['kind']} names a namespace"
        for version in K8S_VERSIONS:
            validate(doc, version)


def test_the_validator_rejects_broken_manifests():
    """The validation above is not vacuous: typical mistakes are caught."""
    good = the("scale-out", "Deployment")
    validate(good, K8S_VERSIONS[0])

    misspelled_top = copy.deepcopy(good)
    misspelled_top["spec"]["replica"] = misspelled_top["spec"].pop("replicas")
    misspelled_deep = copy.deepcopy(good)
    the_container(misspelled_deep)["readinessProbe"]["httpGet"]["paht"] = "/readyz"
    wrong_type = copy.deepcopy(good)
    wrong_type["spec"]["replicas"] = "three"
    unknown_kind = {"apiVersion": "apps/v1", "kind": "Deploymnet", "metadata": {"name": "x"}, "spec": {}}
    for broken, words in (
        (misspelled_top, "replica"),
        (misspelled_deep, "paht"),
        (wrong_type, "three"),
        (unknown_kind, "Deploymnet"),
    ):
        with pytest.raises(AssertionError, match=words):
            validate(broken, K8S_VERSIONS[0])


def test_kustomizations_list_existing_files_and_every_manifest():
    listed: set[Path] = set()
    kustomizations = sorted(KUBERNETES.rglob(KUSTOMIZATION))
    assert {k.parent.name for k in kustomizations} == {"embedded", "scale-out", "credential-provider"}
    for k in kustomizations:
        (doc,) = documents(k)
        assert doc["apiVersion"] == "kustomize.config.k8s.io/v1beta1" and doc["kind"] == "Kustomization", k
        assert "namespace" not in doc, f"{k}: leave the namespace to the user"
        resources = doc.get("resources")
        assert resources, f"{k}: no resources"
        for name in resources:
            path = (k.parent / name).resolve()
            assert path.is_file(), f"{k} lists {name}, which does not exist"
            assert path.parent == k.parent, f"{k} lists {name} outside its directory"
            listed.add(path)
    # Every manifest is applied by its directory's kustomization, except the
    # Secret examples (placeholders must not be applied by accident) and the
    # kubelet's node file.
    for path in yaml_files():
        if path.name == KUSTOMIZATION or path == KUBELET_CONFIG:
            continue
        if path.name.endswith(".example.yaml"):
            assert path not in listed, f"{path.name} is an example and must not be in a kustomization"
            assert {d["kind"] for d in documents(path)} == {"Secret"}, path
        else:
            assert path in listed, f"{path.relative_to(REPO_ROOT)} is in no kustomization.yaml"


# --------------------------------------------- Kubernetes: what matters


def assert_hardened_pod(workload: dict) -> None:
    name = f"{workload['kind']}/{workload['metadata']['name']}"
    spec = workload["spec"]["template"]["spec"]
    pod = spec["securityContext"]
    assert pod["runAsNonRoot"] is True, name
    assert pod["runAsUser"] == pod["runAsGroup"] == pod["fsGroup"] == NONROOT, name
    assert pod["seccompProfile"]["type"] == "RuntimeDefault", name
    c = the_container(workload)
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True, name
    assert sc["allowPrivilegeEscalation"] is False, name
    assert sc["capabilities"]["drop"] == ["ALL"] and not sc["capabilities"].get("add"), name
    assert sc.get("privileged") in (None, False), name
    assert c["image"] == "berth:latest", f"{name}: the placeholder image is berth:latest (see the comment)"
    assert c["resources"]["requests"].get("cpu") and c["resources"]["requests"].get("memory"), name
    # The server listens on 5000; readiness is /readyz, liveness /healthz.
    assert [p["containerPort"] for p in c["ports"]] == [PORT], name
    ready = c["readinessProbe"]["httpGet"]
    assert ready["path"] == "/readyz" and container_port(c, ready["port"]) == PORT, name
    live = c["livenessProbe"]["httpGet"]
    assert live["path"] == "/healthz" and container_port(c, live["port"]) == PORT, name
    if "startupProbe" in c:
        assert c["startupProbe"]["httpGet"]["path"] == "/healthz", name
    assert "0.0.0.0:5000" in c["args"], f"{name}: berth must listen on all addresses in the pod"
    # The root file system is read-only: the data directory is a volume.
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert "/var/lib/berth" in mounts, f"{name}: /var/lib/berth is not writable"
    assert spec.get("automountServiceAccountToken") is False, f"{name}: berth needs no API token"


def assert_service_reaches(service: dict, workload: dict) -> None:
    template = workload["spec"]["template"]
    assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
    assert selects(service["spec"]["selector"], template["metadata"]["labels"])
    (port,) = service["spec"]["ports"]
    assert port["port"] == PORT
    assert container_port(the_container(workload), port["targetPort"]) == PORT
    assert selects(workload["spec"]["selector"]["matchLabels"], template["metadata"]["labels"])


def grace_after_sigterm(workload: dict, shutdown_grace: int) -> None:
    c = the_container(workload)
    pause = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    period = workload["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert period > shutdown_grace + pause, (
        f"terminationGracePeriodSeconds {period} leaves no room for the drain "
        f"({shutdown_grace} s) after the preStop pause ({pause} s)"
    )


def test_embedded_is_one_hardened_pod_on_a_volume():
    sts = the("embedded", "StatefulSet")
    assert sts["spec"]["replicas"] == 1, "an embedded registry locks its data directory: one replica"
    assert_hardened_pod(sts)
    c = the_container(sts)
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert mounts["/var/lib/berth"] == claim["metadata"]["name"]
    grace_after_sigterm(sts, DEFAULT_SHUTDOWN_GRACE)
    assert_service_reaches(the("embedded", "Service"), sts)

    # The owner's first password comes from the example Secret, optionally.
    env = {e["name"]: e for e in c["env"]}
    assert set(env) <= KNOWN_BERTH_ENV, set(env) - KNOWN_BERTH_ENV
    ref = env["BERTH_AUTH__INITIAL_OWNER_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert ref["optional"] is True, "without the Secret berth generates the password"
    secret = the("embedded", "Secret")
    assert ref["name"] == secret["metadata"]["name"]
    assert ref["key"] in secret_data(secret)


def test_scale_out_is_spread_disruption_budgeted_and_configured():
    deploy = the("scale-out", "Deployment")
    assert deploy["spec"]["replicas"] == 3
    assert_hardened_pod(deploy)
    spec = deploy["spec"]["template"]["spec"]
    c = the_container(deploy)
    labels = deploy["spec"]["template"]["metadata"]["labels"]

    # Spread over machines: preferred, so a small cluster still runs all three.
    spread = spec.get("topologySpreadConstraints", [])
    anti = spec.get("affinity", {}).get("podAntiAffinity", {})
    assert any(
        t["topologyKey"] == "kubernetes.io/hostname" and selects(t["labelSelector"]["matchLabels"], labels)
        for t in spread
    ) or anti.get("preferredDuringSchedulingIgnoredDuringExecution"), "the nodes are not spread over machines"

    pdb = the("scale-out", "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert selects(pdb["spec"]["selector"]["matchLabels"], labels)
    assert_service_reaches(the("scale-out", "Service"), deploy)

    # The configuration: the ConfigMap's berth.toml, mounted read-only at /etc/berth.
    args = c["args"]
    assert args[0] == "serve" and args[args.index("--config") + 1] == "/etc/berth/berth.toml", args
    cm = the("scale-out", "ConfigMap")
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    config_mount = mounts["/etc/berth"]
    assert config_mount.get("readOnly") is True
    assert volumes[config_mount["name"]]["configMap"]["name"] == cm["metadata"]["name"]
    assert "emptyDir" in volumes[mounts["/var/lib/berth"]["name"]], "nodes keep nothing: data_dir is an emptyDir"
    toml = tomllib.loads(cm["data"]["berth.toml"])
    assert toml["storage"]["kind"] == "s3" and toml["storage"]["bucket"] and toml["storage"]["endpoint"]
    # No secret in the ConfigMap: they come from the Secret.
    assert not {"access_key_id", "secret_access_key"} & set(toml["storage"]), "S3 keys belong in the Secret"
    assert "url" not in toml.get("metadata", {}), "the PostgreSQL URL (with its password) belongs in the Secret"
    grace_after_sigterm(deploy, toml["server"].get("shutdown_grace_seconds", DEFAULT_SHUTDOWN_GRACE))
    assert spec["terminationGracePeriodSeconds"] == 45

    # Secrets: all of them from the (required) Secret, as environment.
    secret = the("scale-out", "Secret")
    (env_from,) = c["envFrom"]
    assert env_from["secretRef"]["name"] == secret["metadata"]["name"]
    assert not env_from["secretRef"].get("optional"), "scale-out cannot start without the Secret"
    assert set(secret_data(secret)) == {
        "BERTH_STORAGE__ACCESS_KEY_ID",
        "BERTH_STORAGE__SECRET_ACCESS_KEY",
        "BERTH_METADATA__URL",
        "BERTH_AUTH__INITIAL_OWNER_PASSWORD",
    }
    assert secret_data(secret)["BERTH_METADATA__URL"].startswith("postgres://")


def test_secret_keys_are_berth_settings():
    secrets = [doc for _, doc in api_objects() if doc["kind"] == "Secret"]
    assert len(secrets) == 2
    for secret in secrets:
        data = secret_data(secret)
        unknown = set(data) - KNOWN_BERTH_ENV
        assert not unknown, f"Secret/{secret['metadata']['name']}: not berth settings: {sorted(unknown)}"
        for key, value in data.items():
            # Placeholders, plainly: nobody may mistake one for a real secret.
            assert "REPLACE-ME" in value, f"Secret/{secret['metadata']['name']} {key}: not a marked placeholder"


@requires_berth
def test_berth_accepts_the_scale_out_configuration_and_secret(tmp_path):
    """`berth config check` with the ConfigMap's file and the Secret as environment."""
    cm = the("scale-out", "ConfigMap")
    secret = secret_data(the("scale-out", "Secret"))
    text = with_data_dir(cm["data"]["berth.toml"], tmp_path / "data")
    config = tmp_path / "berth.toml"
    for variant in (text, uncomment_examples(text)):
        config.write_text(variant)
        got = effective(config_check(dict(clean_env(), **secret), config))
        assert got["storage"]["kind"] == "s3"
        assert got["storage"]["access_key_id"] == secret["BERTH_STORAGE__ACCESS_KEY_ID"]
        assert got["storage"]["secret_access_key"] == "***"
        assert got["metadata"]["url"].startswith("postgres://") and "REPLACE-ME" not in got["metadata"]["url"]
        assert got["server"]["listen"] == "0.0.0.0:5000"

    # ...and the check is real: a misspelled variable is refused by name.
    typo = dict(clean_env(), **secret, BERTH_STORAGE__SECRET_ACCES_KEY="x")
    res = run_fail([berth_binary(), "config", "check", "--config", config], typo)
    assert "secret_acces_key" in (res.stdout + res.stderr).lower(), res.stderr


@requires_berth
def test_berth_accepts_the_embedded_environment(tmp_path):
    sts = the("embedded", "StatefulSet")
    secret = secret_data(the("embedded", "Secret"))
    env = clean_env()
    for e in the_container(sts)["env"]:
        env[e["name"]] = e["value"] if "value" in e else secret[e["valueFrom"]["secretKeyRef"]["key"]]
    assert env["BERTH_DATA_DIR"] == "/var/lib/berth"
    env["BERTH_DATA_DIR"] = str(tmp_path / "data")
    got = effective(config_check(env))
    assert got["data_dir"] == str(tmp_path / "data")
    assert got["storage"]["kind"] == "filesystem"
    assert got["auth"]["initial_owner_password"] == "***"


@requires_berth
def test_manifest_flags_are_berth_serve_flags():
    help_text = run([berth_binary(), "serve", "--help"], clean_env()).stdout
    for directory, kind in (("embedded", "StatefulSet"), ("scale-out", "Deployment")):
        args = the_container(the(directory, kind))["args"]
        assert args[0] == "serve", args
        for flag in (a for a in args if a.startswith("--")):
            assert re.search(rf"(?m)^\s+(-\w, )?{re.escape(flag)}\b", help_text), f"{kind}: berth serve has no {flag}"


# ------------------------------------ Kubernetes: the credential provider

# The fields of kubelet.config.k8s.io/v1 CredentialProvider (Kubernetes 1.34).
PROVIDER_FIELDS = {"name", "matchImages", "defaultCacheDuration", "apiVersion", "args", "env", "tokenAttributes"}
TOKEN_ATTRIBUTE_FIELDS = {
    "serviceAccountTokenAudience",
    "cacheType",
    "requireServiceAccount",
    "requiredServiceAccountAnnotationKeys",
    "optionalServiceAccountAnnotationKeys",
}


def test_credential_provider_config_has_what_the_kubelet_needs():
    (config,) = documents(KUBELET_CONFIG)
    assert config["apiVersion"] == "kubelet.config.k8s.io/v1"
    assert config["kind"] == "CredentialProviderConfig"
    assert set(config) == {"apiVersion", "kind", "providers"}, set(config)
    (provider,) = config["providers"]
    assert set(provider) <= PROVIDER_FIELDS, set(provider) - PROVIDER_FIELDS
    # The kubelet runs <bin dir>/<name>: the installed binary is called berth.
    assert provider["name"] == "berth"
    assert provider["apiVersion"] == "credentialprovider.kubelet.k8s.io/v1"
    assert provider["matchImages"] and all(isinstance(m, str) and m for m in provider["matchImages"])
    assert re.fullmatch(r"(\d+(ms|s|m|h))+", provider["defaultCacheDuration"]), provider["defaultCacheDuration"]
    assert provider["args"][0] == "credential-provider"
    tokens = provider["tokenAttributes"]
    assert set(tokens) <= TOKEN_ATTRIBUTE_FIELDS, set(tokens) - TOKEN_ATTRIBUTE_FIELDS
    assert tokens["cacheType"] in ("Token", "ServiceAccount")
    assert isinstance(tokens["requireServiceAccount"], bool)

    # The kubelets may request tokens for exactly that audience.
    role = the("credential-provider", "ClusterRole")
    (rule,) = role["rules"]
    assert rule["apiGroups"] == [""]
    assert rule["resources"] == [tokens["serviceAccountTokenAudience"]]
    assert rule["verbs"] == ["request-serviceaccounts-token-audience"]
    binding = the("credential-provider", "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    assert {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:nodes"} in binding["subjects"]


def test_docs_show_the_same_credential_provider_files():
    """docs/kubernetes.md shows these files inline; they must not drift apart."""
    blocks = re.findall(r"```yaml\n(.*?)```", (REPO_ROOT / "docs" / "kubernetes.md").read_text(), re.S)
    shown = [d for block in blocks for d in yaml.safe_load_all(block) if d]
    rbac = KUBERNETES / "credential-provider" / "rbac.yaml"
    for path in (KUBELET_CONFIG, rbac):
        for doc in documents(path):
            same_kind = [d for d in shown if d.get("kind") == doc["kind"]]
            assert same_kind, f"docs/kubernetes.md shows no {doc['kind']}"
            assert doc in same_kind, f"docs/kubernetes.md shows a {doc['kind']} other than {path.relative_to(REPO_ROOT)}"


# ---------------------------------------------------------------- systemd


def unit_settings(text: str) -> dict[str, list[str]]:
    """Key -> values of a unit file (all sections; comments dropped)."""
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def unit_for_test(tmp_path: Path, executable: str) -> Path:
    """berth.service in a directory of its own, ExecStart pointed at ``executable``."""
    text = (SYSTEMD / "berth.service").read_text()
    text, n = re.subn(r"(?m)^ExecStart=/usr/bin/berth ", f"ExecStart={executable} ", text)
    assert n == 1, "ExecStart must run /usr/bin/berth"
    tmp_path.mkdir(parents=True, exist_ok=True)
    unit = tmp_path / "berth.service"
    unit.write_text(text)
    return unit


def stand_in_binary() -> str:
    """What ExecStart runs during the checks: the berth under test (any executable
    against the reference registry, where there may be no berth)."""
    return berth_binary() if E2E_REGISTRY == "berth" else require_tool("true")


def verify_findings(unit: Path) -> list[str]:
    """What `systemd-analyze verify` says about ``unit`` (warnings do not change its exit status)."""
    res = run([require_tool("systemd-analyze"), "verify", unit], check=False, cwd=unit.parent)
    lines = [l for l in (res.stdout + res.stderr).splitlines() if unit.name in l or str(unit.parent) in l]
    if res.returncode != 0:
        lines.append(f"exit status {res.returncode}")
    return lines


def test_unit_has_the_settings_that_matter():
    s = unit_settings((SYSTEMD / "berth.service").read_text())
    one = {k: v[-1] for k, v in s.items()}
    assert one["ExecStart"] == "/usr/bin/berth serve --config /etc/berth/berth.toml"
    assert one["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert (one["User"], one["Group"], one["DynamicUser"]) == ("berth", "berth", "no")
    assert (one["StateDirectory"], one["StateDirectoryMode"]) == ("berth", "0700")
    assert one["ConfigurationDirectory"] == "berth"
    assert one["Restart"] == "on-failure"
    assert one["UMask"] == "0077" and one["LimitNOFILE"] == "65536"
    # No capabilities (CAP_NET_BIND_SERVICE only by a drop-in, see the comment).
    assert s["CapabilityBoundingSet"] == [""] and s["AmbientCapabilities"] == [""]
    for key, value in {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "NoNewPrivileges": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes",
        "ProtectClock": "yes",
        "ProtectHostname": "yes",
        "RestrictNamespaces": "yes",
        "RestrictRealtime": "yes",
        "RestrictSUIDSGID": "yes",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes",
        "SystemCallArchitectures": "native",
    }.items():
        assert one.get(key) == value, f"{key}={one.get(key)}, want {value}"
    assert s["SystemCallFilter"][0] == "@system-service"
    # Above berth's own drain time after SIGTERM.
    assert int(one["TimeoutStopSec"].removesuffix("s")) > DEFAULT_SHUTDOWN_GRACE


def test_systemd_analyze_verify(tmp_path):
    unit = unit_for_test(tmp_path / "good", stand_in_binary())
    assert verify_findings(unit) == []

    # Not vacuous: verify exits 0 on an unknown key, but it says so.
    bad = unit_for_test(tmp_path / "bad", stand_in_binary())
    bad.write_text(bad.read_text().replace("ProtectSystem=strict", "ProtectSytem=strict"))
    assert any("ProtectSytem" in line for line in verify_findings(bad))


def test_systemd_analyze_security_exposure(tmp_path):
    analyze = require_tool("systemd-analyze")
    help_text = run([analyze, "security", "--help"]).stdout
    assert "--offline" in help_text, "this systemd-analyze cannot review a unit file offline"
    unit = unit_for_test(tmp_path, stand_in_binary())
    res = run([analyze, "security", "--offline=true", unit], cwd=tmp_path)
    m = re.search(r"Overall exposure level for berth\.service: (\d+\.\d+)", res.stdout)
    assert m, res.stdout
    score = float(m.group(1))
    print(f"systemd-analyze security: exposure {score}")
    assert score < 3.0, f"exposure {score} (want < 3.0):\n{res.stdout}"


def test_sysusers_creates_the_units_user(tmp_path):
    sysusers = require_tool("systemd-sysusers")
    (tmp_path / "etc").mkdir()
    res = run([sysusers, f"--root={tmp_path}", "--dry-run", SYSTEMD / "berth.sysusers"])
    said = res.stdout + res.stderr
    unit = {k: v[-1] for k, v in unit_settings((SYSTEMD / "berth.service").read_text()).items()}
    assert f"Creating user '{unit['User']}'" in said, said
    assert f"Creating group '{unit['Group']}'" in said, said
    # A system user whose home is the state directory, with no login shell.
    (line,) = [l for l in (SYSTEMD / "berth.sysusers").read_text().splitlines() if l and not l.startswith("#")]
    fields = line.split('"')
    assert fields[0].split() == ["u", "berth", "-"] and fields[2].split() == ["/var/lib/berth"], line


@requires_berth
def test_systemd_berth_toml_passes_config_check(tmp_path):
    text = (SYSTEMD / "berth.toml").read_text()
    assert 'data_dir = "/var/lib/berth"' in text
    config = tmp_path / "berth.toml"
    config.write_text(with_data_dir(text, tmp_path / "data"))
    got = effective(config_check(clean_env(), config))
    assert got["data_dir"] == str(tmp_path / "data")
    assert got["server"]["listen"] == "0.0.0.0:5000"
    assert got["log"]["format"] == "json"

    # The commented-out examples are valid too once enabled.
    enabled = uncomment_examples(with_data_dir(text, tmp_path / "data"))
    assert enabled != with_data_dir(text, tmp_path / "data")
    config.write_text(enabled)
    got = effective(config_check(clean_env(), config))
    assert got["server"]["tls_cert"] == "/etc/berth/tls.crt" and got["server"]["tls_key"] == "/etc/berth/tls.key"
    assert got["storage"]["kind"] == "s3"

    # And the check is real: an unknown key is refused by name.
    config.write_text(with_data_dir(text, tmp_path / "data").replace("[log]", "[log]\nformatt = \"json\""))
    res = run_fail([berth_binary(), "config", "check", "--config", config], clean_env())
    assert "formatt" in res.stdout + res.stderr, res.stderr
