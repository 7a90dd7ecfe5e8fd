#!/usr/bin/env bash
# Builds berth's container image (OCI) from scratch with buildah: no base
# image is pulled. The image holds only
#   /usr/bin/berth                      the binary,
#   the shared libraries `ldd` lists    (and the dynamic loader), at their paths,
#   /etc/ssl/certs/ca-certificates.crt  the host's CA bundle (SSL_CERT_FILE),
#   /etc/passwd, /etc/group             root and berth (65532:65532, home /var/lib/berth),
#   /var/lib/berth                      the data volume, 65532:65532, mode 0700,
#   /tmp                                mode 1777,
# runs as 65532:65532 with `berth serve --listen 0.0.0.0:5000` by default and
# carries the org.opencontainers.image.* labels (also as manifest annotations).
# The result is an OCI layout directory (ref berth:TAG); --push also copies it
# to a registry. Run with --help for the options.
set -euo pipefail
umask 022 # install -D creates the image's directories: 0755

readonly UID_GID=65532
readonly DATA_DIR=/var/lib/berth
readonly CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

log() { printf '[build-image] %s\n' "$*" >&2; }
die() {
    printf '[build-image] error: %s\n' "$*" >&2
    exit 1
}

usage() {
    cat <<'EOF'
Usage: scripts/build-image.sh [OPTIONS]

Builds berth's OCI image from scratch (buildah; no base image is pulled) and
writes it as an OCI layout directory.

Options:
  --binary PATH          berth binary to package (default: run
                         `cargo build --release -p berth` and use
                         ${CARGO_TARGET_DIR:-target}/release/berth)
  --output DIR           OCI layout directory to write (default:
                         target/image/berth-oci); an existing layout there
                         is replaced. The image's ref in it is berth:TAG.
  --tag TAG              image tag (default: the berth version)
  --source URL           org.opencontainers.image.source (default: the git
                         remote "origin", else Cargo.toml's repository; the
                         label is left out when neither exists)
  --push docker://HOST/REPO:TAG
                         also push the image there (skopeo copy from the layout)
  --dest-creds USER:PASSWORD
                         credentials for --push (skopeo --dest-creds)
  --dest-tls-verify BOOL true (default) or false: for --push to a plain-HTTP
                         or self-signed registry
  --storage-root DIR     buildah storage (DIR/root, DIR/runroot; vfs driver);
                         default: a temporary directory removed at exit. The
                         built image stays in a given DIR as localhost/berth:TAG.
  -h, --help             this text

Needs buildah (and skopeo for --push); run as root, or it re-executes itself
under `buildah unshare`. Labels: org.opencontainers.image.{title,version,
revision,source,licenses,created}; revision is `git rev-parse HEAD`, with
-dirty when the work tree has changes.
EOF
}

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

binary=
output=
tag=
source_url=
push=
dest_creds=
dest_tls_verify=true
storage_root=

need_value() { [[ $# -ge 2 && -n $2 ]] || die "$1 needs a value (see --help)"; }
while [[ $# -gt 0 ]]; do
    case $1 in
    --*=*)
        opt=${1%%=*} val=${1#*=}
        shift
        set -- "$opt" "$val" "$@"
        continue
        ;;
    esac
    case $1 in
    --binary) need_value "$@"; binary=$2; shift 2 ;;
    --output) need_value "$@"; output=$2; shift 2 ;;
    --tag) need_value "$@"; tag=$2; shift 2 ;;
    --source) need_value "$@"; source_url=$2; shift 2 ;;
    --push) need_value "$@"; push=$2; shift 2 ;;
    --dest-creds) need_value "$@"; dest_creds=$2; shift 2 ;;
    --dest-tls-verify) need_value "$@"; dest_tls_verify=$2; shift 2 ;;
    --storage-root) need_value "$@"; storage_root=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
    esac
done

case $dest_tls_verify in
true | false) ;;
*) die "--dest-tls-verify takes true or false, not '$dest_tls_verify'" ;;
esac
if [[ -n $push && $push != docker://* ]]; then
    die "--push takes docker://HOST/REPO:TAG, not '$push'"
fi
if [[ -n $dest_creds && -z $push ]]; then
    die "--dest-creds is only used with --push"
fi

command -v buildah >/dev/null || die "buildah is not installed (scripts/install-test-deps.sh installs it)"
if [[ -n $push ]]; then
    command -v skopeo >/dev/null || die "skopeo is not installed (needed for --push)"
fi

# `buildah mount` (vfs) needs root, or a user namespace when not root.
if [[ $EUID -ne 0 && -z ${_CONTAINERS_USERNS_CONFIGURED:-} ]]; then
    log "not root: re-running under buildah unshare"
    exec buildah unshare -- bash "${BASH_SOURCE[0]}" \
        ${binary:+--binary "$binary"} ${output:+--output "$output"} ${tag:+--tag "$tag"} \
        ${source_url:+--source "$source_url"} ${push:+--push "$push"} \
        ${dest_creds:+--dest-creds "$dest_creds"} --dest-tls-verify "$dest_tls_verify" \
        ${storage_root:+--storage-root "$storage_root"}
fi

abspath() { # absolute path of $1 (need not exist), relative to the current directory
    case $1 in
    /*) printf '%s\n' "$1" ;;
    *) printf '%s/%s\n' "$PWD" "$1" ;;
    esac
}

# --- the binary ------------------------------------------------------------
if [[ -z $binary ]]; then
    command -v cargo >/dev/null || die "cargo is not installed; build berth elsewhere and pass --binary PATH"
    log "building: cargo build --release -p berth"
    (cd "$repo_root" && cargo build --release -p berth)
    target_dir=${CARGO_TARGET_DIR:-target}
    [[ $target_dir == /* ]] || target_dir=$repo_root/$target_dir
    binary=$target_dir/release/berth
fi
binary=$(abspath "$binary")
[[ -f $binary && -x $binary ]] || die "berth binary not found or not executable: $binary"

# --- metadata --------------------------------------------------------------
# The [workspace.package] value of KEY in the workspace Cargo.toml.
workspace_key() {
    awk -v key="$1" '
        /^\[/ { in_pkg = ($0 ~ /^\[workspace\.package\][[:space:]]*$/); next }
        in_pkg && $0 ~ "^[[:space:]]*" key "[[:space:]]*=" {
            sub(/^[^=]*=[[:space:]]*"/, ""); sub(/".*$/, ""); print; exit
        }' "$repo_root/Cargo.toml"
}

version=
if version_line=$("$binary" --version 2>/dev/null); then
    # "berth 0.1.0 (commit 1eb66303bda1-modified)" -> "0.1.0"
    version=$(printf '%s\n' "$version_line" | awk 'NR == 1 && $2 ~ /^[0-9]+\.[0-9]+/ { print $2 }')
fi
if [[ -z $version ]]; then
    log "'$binary --version' printed no version; using Cargo.toml's"
    version=$(workspace_key version)
fi
[[ -n $version ]] || die "cannot tell berth's version (neither '$binary --version' nor Cargo.toml)"
tag=${tag:-$version}
[[ $tag =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "invalid tag '$tag'"

licenses=$(workspace_key license)
[[ -n $licenses ]] || die "no license in Cargo.toml's [workspace.package]"

revision=unknown
if git -C "$repo_root" rev-parse --git-dir >/dev/null 2>&1; then
    revision=$(git -C "$repo_root" rev-parse HEAD)
    # Tracked changes or untracked files (not ignored ones) make it dirty.
    if [[ -n $(git -C "$repo_root" status --porcelain --untracked-files=normal 2>/dev/null) ]]; then
        revision=$revision-dirty
    fi
fi

if [[ -z $source_url ]]; then
    source_url=$(git -C "$repo_root" remote get-url origin 2>/dev/null || true)
fi
if [[ -z $source_url ]]; then
    source_url=$(workspace_key repository)
fi
[[ -n $source_url ]] || log "warning: no source URL (no git remote origin, no repository in Cargo.toml); org.opencontainers.image.source is left out"

created=$(date -u +%Y-%m-%dT%H:%M:%SZ)

output=$(abspath "${output:-$repo_root/target/image/berth-oci}")
image_name=localhost/berth:$tag
layout_ref=berth:$tag
# Checked now, replaced only once the image is built.
if [[ -e $output && ! -f $output/oci-layout ]] && ! [[ -d $output && -z $(ls -A "$output") ]]; then
    die "$output exists and is not an OCI layout; refusing to overwrite it"
fi

# --- storage and cleanup -----------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/berth-image.XXXXXX")
if [[ -n $storage_root ]]; then
    storage_root=$(abspath "$storage_root")
else
    storage_root=$work/storage
fi
mkdir -p "$storage_root/root" "$storage_root/runroot"
bah=(buildah --root "$storage_root/root" --runroot "$storage_root/runroot" --storage-driver vfs)

ctr=
cleanup() {
    local status=$?
    if [[ -n $ctr ]]; then
        "${bah[@]}" umount "$ctr" >/dev/null 2>&1 || true
        "${bah[@]}" rm "$ctr" >/dev/null 2>&1 || log "warning: could not remove the working container $ctr"
    fi
    # The default storage lives in $work; a given --storage-root is kept.
    # vfs layers may hold read-only directories: chmod before removing.
    chmod -R u+rwX "$work" 2>/dev/null || true
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "berth $version ($revision) from $binary"
log "buildah: $(buildah --version)"
log "storage: $storage_root (vfs)"

# --- the root filesystem -------------------------------------------------------
ctr=$("${bah[@]}" from --pull=false scratch)
mnt=$("${bah[@]}" mount "$ctr")
log "working container $ctr mounted at $mnt"

install -D -m 0755 "$binary" "$mnt/usr/bin/berth"

# The shared libraries and the loader, exactly as ldd lists them, copied
# (symlinks resolved) to the same paths.
if ldd_out=$(ldd "$binary" 2>&1); then
    if grep -q 'not found' <<<"$ldd_out"; then
        die "ldd cannot resolve every library of $binary:"$'\n'"$ldd_out"
    fi
    while read -r lib; do
        [[ -n $lib ]] || continue
        install -D -m 0755 "$(readlink -f "$lib")" "$mnt$lib"
        log "library $lib"
    done < <(awk '
        $2 == "=>" && $3 ~ /^\// { print $3; next }  # libc.so.6 => /lib/.../libc.so.6 (0x...)
        $1 ~ /^\// { print $1 }                      # /lib64/ld-linux-x86-64.so.2 (0x...)
    ' <<<"$ldd_out" | sort -u)
else
    log "ldd: $ldd_out"
    log "no shared libraries to copy (static binary)"
fi

[[ -f $CA_BUNDLE ]] || die "$CA_BUNDLE is missing on this host (install ca-certificates)"
install -D -m 0644 "$CA_BUNDLE" "$mnt$CA_BUNDLE"

install -d -m 0755 "$mnt/etc"
cat >"$mnt/etc/passwd" <<EOF
root:x:0:0:root:/root:/sbin/nologin
berth:x:$UID_GID:$UID_GID:berth container registry:$DATA_DIR:/sbin/nologin
EOF
cat >"$mnt/etc/group" <<EOF
root:x:0:
berth:x:$UID_GID:
EOF
chmod 0644 "$mnt/etc/passwd" "$mnt/etc/group"

install -d -m 0755 "$mnt/var" "$mnt/var/lib"
install -d -m 0700 -o "$UID_GID" -g "$UID_GID" "$mnt$DATA_DIR"
install -d -m 1777 "$mnt/tmp"

"${bah[@]}" umount "$ctr" >/dev/null

# --- the configuration ------------------------------------------------------------
labels=(
    "org.opencontainers.image.title=berth"
    "org.opencontainers.image.description=berth container registry"
    "org.opencontainers.image.version=$version"
    "org.opencontainers.image.revision=$revision"
    "org.opencontainers.image.licenses=$licenses"
    "org.opencontainers.image.created=$created"
)
[[ -z $source_url ]] || labels+=("org.opencontainers.image.source=$source_url")
label_args=()
for l in "${labels[@]}"; do
    label_args+=(--label "$l" --annotation "$l")
done

"${bah[@]}" config \
    --os linux \
    --user "$UID_GID:$UID_GID" \
    --entrypoint '["/usr/bin/berth"]' \
    --cmd '["serve", "--listen", "0.0.0.0:5000"]' \
    --env "BERTH_DATA_DIR=$DATA_DIR" \
    --env "SSL_CERT_FILE=$CA_BUNDLE" \
    --volume "$DATA_DIR" \
    --port 5000/tcp \
    --workingdir "$DATA_DIR" \
    --stop-signal SIGTERM \
    --created-by "scripts/build-image.sh (buildah from scratch)" \
    "${label_args[@]}" \
    "$ctr"

log "committing $image_name"
image_id=$("${bah[@]}" commit --quiet --format oci --rm "$ctr" "$image_name")
ctr= # --rm removed the working container

if [[ -e $output ]]; then
    if [[ -f $output/oci-layout ]]; then
        log "replacing the OCI layout at $output"
        rm -rf "$output"
    else
        rmdir "$output" # empty (checked above)
    fi
fi
mkdir -p "$(dirname "$output")"
log "writing oci:$output:$layout_ref"
"${bah[@]}" push --quiet "$image_name" "oci:$output:$layout_ref"

size=$(du -sh "$output" | cut -f1)
log "image $image_name (id ${image_id:0:12}), OCI layout $output ($size), ref $layout_ref"

if [[ -n $push ]]; then
    log "pushing to $push"
    # The source is the layout just built here: accept it without
    # signatures, whatever the host's policy.json says.
    printf '{"default": [{"type": "insecureAcceptAnything"}]}\n' >"$work/policy.json"
    push_args=(--dest-tls-verify="$dest_tls_verify")
    [[ -z $dest_creds ]] || push_args+=(--dest-creds "$dest_creds")
    skopeo --policy "$work/policy.json" copy --quiet "${push_args[@]}" "oci:$output:$layout_ref" "$push"
    log "pushed $push"
fi
log "done"
