#!/usr/bin/env bash
# Build the sandbox and CPU pipeline images with podman, on a Debian base made here with
# debootstrap (no registry needed), and record their IDs in results/images/images.json.
#
#   sudo scripts/build-images.sh            # root; installs debootstrap, podman, runc, runsc
#   sudo scripts/build-images.sh --run      # then run the execution stage in the images and
#                                           # check it keeps the host's bytes (pytest -m containers)
#
# Idempotent and cheap to rerun: the debootstrap rootfs is cached as a tarball
# ($SELFALIGN_IMAGE_CACHE, default /var/cache/selfalign), the base is imported only when the
# tarball changed, and podman's layer cache skips unchanged build steps.
#
# Environment:
#   SELFALIGN_IMAGE_CACHE  cache directory (default /var/cache/selfalign)
#   DEBIAN_MIRROR          debootstrap mirror (default http://deb.debian.org/debian)
#   TORCH_WHEELS           directory with the CPU torch wheel, mounted into the pipeline build
#                          (default /opt/wheels if it exists; empty: the official CPU index)
#   IMAGES                 which images to build (default "sandbox pipeline")
#   BUILD_RUNTIME          OCI runtime for build steps (default runc; crun fails on this host)
#   BUILD_CA               CA bundle for HTTPS inside the builds, for a TLS-inspecting proxy
#                          (default: $PIP_CERT when set; empty: the images' own CAs)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${SELFALIGN_IMAGE_CACHE:-/var/cache/selfalign}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
BASE_IMAGE=localhost/selfalign/debian:$SUITE
IMAGES=${IMAGES:-sandbox pipeline}
BUILD_RUNTIME=${BUILD_RUNTIME:-runc}
if [[ -z ${TORCH_WHEELS+x} ]]; then
    TORCH_WHEELS=$([[ -d /opt/wheels ]] && echo /opt/wheels || true)
fi
BUILD_CA=${BUILD_CA-${PIP_CERT:-}}
OUT_DIR=$REPO/results/images
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8

log() { printf '[build-images %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }

RUN_AFTER=0
case "${1:-}" in
    "") ;;
    --run) RUN_AFTER=1 ;;
    *) echo "usage: build-images.sh [--run]" >&2; exit 2 ;;
esac

if [[ $(id -u) -ne 0 ]]; then
    echo "build-images.sh: run as root (debootstrap and rootful podman)" >&2
    exit 2
fi

# -- tools ------------------------------------------------------------------------------------
missing=()
for pair in debootstrap:debootstrap podman:podman runc:runc runsc:runsc; do
    command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
done
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

declare -A TIMES=()
mkdir -p "$CACHE" "$OUT_DIR"

# -- 1. the Debian base: debootstrap minbase, cached as a tarball -----------------------------
TARBALL=$CACHE/debian-$SUITE-minbase.tar
t0=$(now)
if [[ ! -s $TARBALL ]]; then
    log "debootstrap $SUITE (minbase) from $MIRROR"
    work=$(mktemp -d "$CACHE/rootfs.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    debootstrap --variant=minbase --merged-usr "$SUITE" "$work/rootfs" "$MIRROR" >"$work/log" 2>&1 \
        || { tail -20 "$work/log" >&2; exit 1; }
    # Smaller and free of this machine's traces: no package cache, lists or logs.
    rm -rf "$work/rootfs"/var/cache/apt/archives/*.deb "$work/rootfs"/var/lib/apt/lists/* \
        "$work/rootfs"/var/log/* "$work/rootfs"/tmp/* "$work/rootfs"/root/.cache
    : >"$work/rootfs/etc/resolv.conf"  # podman provides one at run time
    tar --numeric-owner --xattrs --sort=name -C "$work/rootfs" -cf "$TARBALL.tmp" .
    mv "$TARBALL.tmp" "$TARBALL"
    rm -rf "$work"
    trap - EXIT
fi
TIMES[debootstrap]=$(since "$t0")
TAR_SHA=$(sha256sum "$TARBALL" | cut -d' ' -f1)

t0=$(now)
have_sha=$(podman image inspect --format '{{index .Labels "org.selfalign.rootfs-sha256"}}' \
    "$BASE_IMAGE" 2>/dev/null || true)
if [[ $have_sha != "$TAR_SHA" ]]; then
    log "importing the rootfs as $BASE_IMAGE"
    podman import \
        --change "LABEL org.selfalign.rootfs-sha256=$TAR_SHA" \
        --change "LABEL org.selfalign.debootstrap=$SUITE-minbase" \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["/bin/bash"]' \
        "$TARBALL" "$BASE_IMAGE" >/dev/null
fi
TIMES[base_import]=$(since "$t0")

# -- 2. the images, from a context of only the files they copy --------------------------------
CONTEXT=$(mktemp -d)
trap 'rm -rf "$CONTEXT"' EXIT
mkdir -p "$CONTEXT/envs"
cp "$REPO/envs/pipeline.txt" "$REPO/envs/sandbox.txt" "$REPO/envs/sample-release.txt" \
    "$REPO/envs/sample-livecodebench.txt" "$CONTEXT/envs/"
cp "$REPO/pyproject.toml" "$REPO/README.md" "$CONTEXT/"
# The package as git tracks it plus uncommitted edits, without caches (stable layer digests).
(cd "$REPO" && git ls-files -co --exclude-standard -- src) | while read -r path; do
    [[ -f $REPO/$path ]] && install -D -m 0644 "$REPO/$path" "$CONTEXT/$path"
done
find "$CONTEXT" -exec touch -h -d @0 {} +

CA_ARGS=()
if [[ -n $BUILD_CA ]]; then
    CA_ARGS=(--volume "$(realpath "$BUILD_CA"):/run/build-ca.crt:ro"
        --build-arg PIP_CERT=/run/build-ca.crt)
fi

build() {  # name, extra podman build args...
    local name=$1
    shift
    local t0 old
    t0=$(now)
    old=$(podman image inspect --format '{{.Id}}' "localhost/selfalign/$name:latest" 2>/dev/null || true)
    log "building localhost/selfalign/$name on $BASE_IMAGE"
    podman build --runtime "$BUILD_RUNTIME" --network host --layers \
        -f "$REPO/containers/$name.Dockerfile" --build-arg "BASE=$BASE_IMAGE" \
        -t "localhost/selfalign/$name:latest" "${CA_ARGS[@]}" "$@" "$CONTEXT" >"$OUT_DIR/build-$name.log" 2>&1 \
        || { tail -30 "$OUT_DIR/build-$name.log" >&2; exit 1; }
    TIMES[$name]=$(since "$t0")
    # The image this build replaced, now untagged: ours, and no longer referenced.
    if [[ -n $old && $old != $(podman image inspect --format '{{.Id}}' "localhost/selfalign/$name:latest") ]]; then
        podman rmi "$old" >/dev/null 2>&1 || true
    fi
}

for name in $IMAGES; do
    case $name in
        sandbox) build sandbox ;;
        pipeline)
            node_ca=()  # pyright fetches its npm package at build time
            [[ -n $BUILD_CA ]] && node_ca=(--build-arg NODE_EXTRA_CA_CERTS=/run/build-ca.crt)
            if [[ -n $TORCH_WHEELS ]]; then
                build pipeline "${node_ca[@]}" --volume "$TORCH_WHEELS:/wheels:ro" \
                    --build-arg TORCH_INDEX= --build-arg TORCH_FIND_LINKS=/wheels
            else
                build pipeline "${node_ca[@]}"
            fi
            ;;
        *) echo "unknown image $name (sandbox, pipeline)" >&2; exit 2 ;;
    esac
done

# -- 3. what was built: IDs, digests, sizes ---------------------------------------------------
record() {  # name -> one JSON object
    local ref=$1
    podman image inspect --format \
        '{"image": "{{index .RepoTags 0}}", "id": "sha256:{{.Id}}", "digest": "{{.Digest}}", "size": {{.Size}}}' \
        "$ref"
}
{
    printf '{\n  "base": %s,\n  "base_rootfs_sha256": "%s",\n' "$(record "$BASE_IMAGE")" "$TAR_SHA"
    for name in sandbox pipeline; do  # every image there is, not only those built now
        podman image exists "localhost/selfalign/$name:latest" || continue
        printf '  "%s": %s,\n' "$name" "$(record "localhost/selfalign/$name:latest")"
    done
    printf '  "seconds": {'
    sep=
    for key in "${!TIMES[@]}"; do printf '%s"%s": %s' "$sep" "$key" "${TIMES[$key]}"; sep=', '; done
    printf '}\n}\n'
} >"$OUT_DIR/images.json.tmp"
python3 -m json.tool "$OUT_DIR/images.json.tmp" >"$OUT_DIR/images.json"
rm -f "$OUT_DIR/images.json.tmp"
if [[ " $IMAGES " == *" sandbox "* ]]; then
    # A config overlay: generated code runs in exactly this sandbox image, named by its ID.
    sandbox_id=$(podman image inspect --format 'sha256:{{.Id}}' localhost/selfalign/sandbox:latest)
    cat >"$OUT_DIR/sandbox-config.yaml" <<YAML
# Written by scripts/build-images.sh: run every sample in the sandbox image just built.
#   snakemake --configfile config.yaml $OUT_DIR/sandbox-config.yaml ...
execution:
  backend: podman
  image: $sandbox_id
evaluation:
  sandbox:
    backend: podman
    image: $sandbox_id
YAML
fi
for name in debian sandbox pipeline; do
    ref=localhost/selfalign/$name:latest
    [[ $name == debian ]] && ref=$BASE_IMAGE
    podman image exists "$ref" || continue
    podman image inspect --format "$ref  id=sha256:{{.Id}}  digest={{.Digest}}  size={{.Size}}" "$ref"
done
log "wrote $OUT_DIR/images.json (seconds: $(for k in "${!TIMES[@]}"; do printf '%s=%s ' "$k" "${TIMES[$k]}"; done))"

if ((RUN_AFTER)); then
    # The execution stage on the host (gVisor), with every sample in the sandbox image, and as a
    # whole inside the pipeline image: tests/test_containers.py requires the same bytes from all.
    "$REPO/scripts/setup.sh"
    cd "$REPO"
    exec .venv/bin/python -m pytest -p no:cacheprovider -m containers
fi
