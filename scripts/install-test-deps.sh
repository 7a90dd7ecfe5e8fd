#!/usr/bin/env bash
# Install what the real-client end-to-end suite (tests/e2e) needs.
#
# Idempotent and non-interactive; run as root:  bash scripts/install-test-deps.sh
# - Debian packages: apt-get runs (one `apt-get update`, then install) only when
#   at least one package is missing according to dpkg-query.
# - Python packages: pinned versions, installed with `python3 -m pip` only when
#   the installed version differs.
# Package maintainer scripts are not allowed to start services (dockerd,
# containerd, docker-registry, dnsmasq, tinyproxy): the tests start their own
# private instances on loopback/unix sockets.
set -euo pipefail

APT_PACKAGES=(
  skopeo
  umoci
  containerd
  runc
  podman
  buildah
  golang-github-containers-common # /etc/containers/policy.json for podman/buildah
  docker.io
  docker-registry   # the reference registry (distribution 2.8) for E2E_REGISTRY=reference
  dnsmasq
  tinyproxy
  iptables
  uidmap
  fuse-overlayfs
  curl
  jq
  openssl         # certificates for the TLS diagnostics scenarios
  apache2-utils   # htpasswd: the artifact-cache tests' upstream registry logins
  ca-certificates
  postgresql      # scale-out metadata (scripts/scale-out-services.sh starts a private server)
  postgresql-client
  util-linux      # runuser, to run PostgreSQL as the postgres user
  rclone          # copies a bucket in the scale-out backup test (the documented procedure)
  systemd         # systemd-analyze, systemd-sysusers: test_packaging.py checks the unit (not started)
  chromium        # test_portal.py: the portal in a real headless browser
  chromium-driver # ... driven by Selenium through chromedriver
)

# Garage, the S3-compatible object store of the scale-out tests, from
# crates.io. Built once per machine (about 15 minutes on 2 cores) and kept in
# GARAGE_ROOT, so later runs on the same machine reuse it.
GARAGE_VERSION=2.5.0
GARAGE_ROOT=${GARAGE_ROOT:-/opt/garage}

PIP_PACKAGES=(
  "oras==0.2.43"
  "pytest==9.2.0"
  "requests==2.34.2"
  "boto3==1.44.5"   # lists the bucket in the scale-out garbage-collection test
  "kubernetes-validate==1.37.0"   # test_packaging.py: the manifests under packaging/kubernetes
  "PyYAML==6.0.4"   # test_packaging.py reads the manifests
  "selenium==4.51.0"   # test_portal.py drives Debian's chromium (4.52+ need a certifi newer than PyPI's mirror here)
)

# axe-core, the accessibility checker test_portal.py runs inside each page:
# the npm registry's tarball, checked against its published sha512 (npm's
# own client is not needed for one file).
AXE_VERSION=4.14.1
AXE_SHA512=1477dafa598d8d065f273d6af302aa203c02e83131707b7fa648cd41bd3d6b734f8c22a0dab86ee6a6f64b8afbe804b214d36db85a2826965edfb3a0b9d546b5
AXE_ROOT=${AXE_ROOT:-/opt/axe-core}

log() { printf '[install-test-deps] %s\n' "$*"; }

if [[ $(id -u) -ne 0 ]]; then
  echo "install-test-deps.sh must run as root" >&2
  exit 1
fi

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null || true)
  if [[ $status != "ii "* ]]; then
    missing+=("$pkg")
  fi
done

# python3 itself, and pip for it, if the machine has neither.
if ! command -v python3 >/dev/null 2>&1; then
  missing+=(python3 python3-pip)
elif ! python3 -m pip --version >/dev/null 2>&1; then
  missing+=(python3-pip)
fi

if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  policy_rc=/usr/sbin/policy-rc.d
  created_policy=0
  if [[ ! -e $policy_rc ]]; then
    # Deny service starts from maintainer scripts while we install.
    printf '#!/bin/sh\nexit 101\n' >"$policy_rc"
    chmod 0755 "$policy_rc"
    created_policy=1
  fi
  cleanup() { if ((created_policy)); then rm -f "$policy_rc"; fi; }
  trap cleanup EXIT
  apt-get update
  apt-get install -y --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    "${missing[@]}"
  cleanup
  trap - EXIT
else
  log "all Debian packages already installed"
fi

pip_needed=()
for spec in "${PIP_PACKAGES[@]}"; do
  name=${spec%%==*}
  want=${spec##*==}
  have=$(python3 -c 'import sys, importlib.metadata as m
try:
    print(m.version(sys.argv[1]))
except m.PackageNotFoundError:
    pass' "$name" 2>/dev/null || true)
  if [[ $have != "$want" ]]; then
    pip_needed+=("$spec")
  fi
done

if ((${#pip_needed[@]})); then
  log "installing Python packages: ${pip_needed[*]}"
  pip_args=(install --disable-pip-version-check --no-input)
  if ! python3 -m pip "${pip_args[@]}" "${pip_needed[@]}"; then
    # Debian's system python refuses plain `pip install` (PEP 668).
    log "retrying pip with --break-system-packages"
    python3 -m pip "${pip_args[@]}" --break-system-packages "${pip_needed[@]}"
  fi
else
  log "Python packages already at pinned versions"
fi

# cryptography signs the service-account tokens of the federation tests. Any
# version will do (Debian's python3-cryptography, say): pinning one would make
# pip fight the distribution's copy.
if ! python3 -c 'import cryptography' >/dev/null 2>&1; then
  log "installing Python package: cryptography"
  if ! python3 -m pip install --disable-pip-version-check --no-input "cryptography>=3.4"; then
    python3 -m pip install --disable-pip-version-check --no-input --break-system-packages "cryptography>=3.4"
  fi
fi

if [[ -x $GARAGE_ROOT/bin/garage ]] && "$GARAGE_ROOT/bin/garage" --version 2>/dev/null | grep -q "$GARAGE_VERSION"; then
  log "garage $GARAGE_VERSION already installed in $GARAGE_ROOT"
else
  log "building garage $GARAGE_VERSION from crates.io into $GARAGE_ROOT (once per machine)"
  garage_build=${GARAGE_BUILD_DIR:-/var/tmp/garage-build}
  CARGO_TARGET_DIR=$garage_build \
    cargo install garage --version "$GARAGE_VERSION" --locked --root "$GARAGE_ROOT"
  rm -rf "$garage_build" # gigabytes of build products; the binary is kept
fi

if [[ -f $AXE_ROOT/axe.min.js && $(cat "$AXE_ROOT/VERSION" 2>/dev/null) == "$AXE_VERSION" ]]; then
  log "axe-core $AXE_VERSION already in $AXE_ROOT"
else
  log "fetching axe-core $AXE_VERSION into $AXE_ROOT"
  axe_tmp=$(mktemp -d)
  curl -sSfL --retry 3 -o "$axe_tmp/axe.tgz" "https://registry.npmjs.org/axe-core/-/axe-core-$AXE_VERSION.tgz"
  echo "$AXE_SHA512  $axe_tmp/axe.tgz" | sha512sum -c --quiet -
  tar -xzf "$axe_tmp/axe.tgz" -C "$axe_tmp" package/axe.min.js
  mkdir -p "$AXE_ROOT"
  mv "$axe_tmp/package/axe.min.js" "$AXE_ROOT/axe.min.js"
  echo "$AXE_VERSION" >"$AXE_ROOT/VERSION"
  rm -rf "$axe_tmp"
fi

# Sanity: every tool the suite calls is on PATH.
for tool in skopeo umoci containerd ctr podman buildah dockerd docker docker-registry htpasswd python3 psql pg_dump pg_restore rclone runuser systemd-analyze systemd-sysusers chromium chromedriver; do
  command -v "$tool" >/dev/null 2>&1 || { echo "missing after install: $tool" >&2; exit 1; }
done
"$GARAGE_ROOT/bin/garage" --version >/dev/null || { echo "garage does not run" >&2; exit 1; }
python3 -c 'import oras.client, pytest, requests, boto3, cryptography, kubernetes_validate, yaml, selenium' || { echo "python packages not importable" >&2; exit 1; }
log "ok"
