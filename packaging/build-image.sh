#!/usr/bin/env bash
# Build barkserve's OCI image from Debian packages and PyPI only: no Docker, no registry base image.
#
#   packaging/build-image.sh [--variant cpu|cuda] [--out DIR] [--tag TAG] [--work DIR] [--rootfs DIR]
#
# 1. wheels: barkserve's own wheel, then every pinned dependency (packaging/constraints.txt) and
#    PyTorch (2.13.0: the CPU build for `cpu`, PyPI's CUDA build for `cuda`) as wheels, with this
#    machine's pip and its configuration (indexes, find-links, proxies);
# 2. a Debian root filesystem (mmdebstrap, minbase + python3 + ca-certificates);
# 3. a venv in it (/opt/barkserve) filled from those wheels offline, slimmed (no pip, no tests, no C
#    headers), a non-root user (10001, group 0) and group-0-writable data folders, so that any UID
#    with group 0 can run it (OpenShift);
# 4. an OCI image layout written by umoci: one layer, the user, entry point, volumes, port, env and
#    the OCI labels (source, version, revision, licenses) plus the health check as labels.
# --rootfs DIR skips steps 1-3 and packs a copy of DIR instead (the tests' quick check of step 4).
#
# Needs root (chroot) and the Debian packages mmdebstrap and umoci (.ci/system-deps.sh installs them),
# and a Python with pip (PYTHON, default python3) of the image's Python release: on Debian bookworm its
# own /usr/bin/python3 (3.11.2, python3-pip).
# Settings (environment): SUITE (bookworm), MIRROR (http://deb.debian.org/debian), PYTHON,
# TORCH_INDEX_URL (the cpu variant's extra index, https://download.pytorch.org/whl/cpu; empty: only
# pip's own configuration), IMAGE_SOURCE (the source label; default: the git remote "origin").
set -euo pipefail

variant=cpu
out=dist/oci
tag=
work=
from_rootfs=
while [ $# -gt 0 ]; do
  case "$1" in
    --variant) variant=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    --rootfs) from_rootfs=$2; shift 2 ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

repo=$(cd "$(dirname "$0")/.." && pwd)
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
PYTHON=${PYTHON:-python3}
TORCH_VERSION=2.13.0
UID_=10001
case "$variant" in
  cpu) torch_req="torch==${TORCH_VERSION}+cpu"; TORCH_INDEX_URL=${TORCH_INDEX_URL-https://download.pytorch.org/whl/cpu} ;;
  # PyPI's Linux torch wheel is the CUDA build (its CUDA libraries come as nvidia-* wheels); the driver
  # comes from the host at run time (the NVIDIA container toolkit or device plugin).
  cuda) torch_req="torch==${TORCH_VERSION}"; TORCH_INDEX_URL=${TORCH_INDEX_URL-} ;;
  *) echo "--variant must be cpu or cuda; got $variant" >&2; exit 2 ;;
esac

if [ "$(id -u)" -ne 0 ]; then
  echo "build-image.sh needs root (mmdebstrap and chroot); run it with sudo" >&2
  exit 1
fi
for tool in mmdebstrap umoci; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: apt-get install $tool (or bash .ci/system-deps.sh)" >&2; exit 1; }
done

version=$("$PYTHON" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$repo/pyproject.toml")
revision=$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)
IMAGE_SOURCE=${IMAGE_SOURCE:-$(git -C "$repo" remote get-url origin 2>/dev/null || echo unknown)}
tag=${tag:-$version-$variant}
if [ -z "$work" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work"
rootfs=$work/rootfs
wheels=$work/wheels
start=$(date +%s)
step() { echo "[build-image $(( $(date +%s) - start ))s] $*" >&2; }

if [ -n "$from_rootfs" ]; then
  rm -rf "$rootfs" && cp -a "$from_rootfs" "$rootfs"
else
step "1/4 wheels (barkserve $version, $torch_req)"
rm -rf "$wheels" && mkdir -p "$wheels"
# A current pip, run from its wheel here and in the image (where it is not installed): Debian's pip is older.
"$PYTHON" -m pip download --quiet --no-deps -d "$wheels" pip
pip_wheel=$(cd "$wheels" && echo pip-*.whl)
pip=("$PYTHON" "$wheels/$pip_wheel/pip")
"${pip[@]}" wheel --quiet --no-deps -w "$wheels" "$repo"
project_wheel=$(cd "$wheels" && echo barkserve-*.whl)
# torch alone from its index (PyTorch's CPU builds are not on PyPI), then the rest from pip's usual sources.
if [ -n "$TORCH_INDEX_URL" ]; then
  "${pip[@]}" wheel --quiet --no-deps -w "$wheels" --index-url "$TORCH_INDEX_URL" "$torch_req"
fi
"${pip[@]}" wheel --quiet -w "$wheels" --find-links "$wheels" -c "$repo/packaging/constraints.txt" \
  "$wheels/$project_wheel[postgres,redis]" "$torch_req"

step "2/4 Debian $SUITE root filesystem"
rm -rf "$rootfs"
# Documentation, manual pages and translations are left out of every package.
mmdebstrap --quiet --variant=minbase --include=python3,ca-certificates \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  "$SUITE" "$rootfs" "$MIRROR"
# The same Python release: markers such as python_full_version < "3.11.3" decide which wheels are needed.
image_python=$(chroot "$rootfs" python3 -c 'import platform; print(platform.python_version())')
host_python=$("$PYTHON" -c 'import platform; print(platform.python_version())')
if [ "$image_python" != "$host_python" ]; then
  echo "the image has Python $image_python but PYTHON ($PYTHON) is $host_python: wheels must match; set PYTHON" >&2
  exit 1
fi

step "3/4 venv, user and folders"
cp -r "$wheels" "$rootfs/tmp/wheels"
cp "$repo/packaging/constraints.txt" "$rootfs/tmp/wheels/constraints.txt"
chroot "$rootfs" python3 -m venv --without-pip /opt/barkserve
chroot "$rootfs" /opt/barkserve/bin/python "/tmp/wheels/$pip_wheel/pip" install --quiet --no-index \
  --no-cache-dir --disable-pip-version-check --find-links /tmp/wheels -c /tmp/wheels/constraints.txt \
  "barkserve[postgres,redis]" "$torch_req"
rm -rf "$rootfs/tmp/wheels"
site=$(echo "$rootfs"/opt/barkserve/lib/python3*/site-packages)
# Slimming: test suites, C/C++ headers and CMake files (no compiler in the image), static libraries.
find "$site" -depth -type d \( -name tests -o -name test \) -not -path '*/torch/testing*' -exec rm -rf {} +
rm -rf "$site"/torch/include "$site"/torch/share/cmake "$site"/caffe2
# torch/bin: its C++ test programs and protoc; torch_shm_manager is needed (torch checks for it at import).
find "$site"/torch/bin -mindepth 1 -maxdepth 1 -not -name torch_shm_manager -exec rm -rf {} +
find "$site" -name '*.a' -delete
find "$rootfs" -depth -name __pycache__ -path '*/tests/*' -exec rm -rf {} +
# Byte-code for the venv, written now: at run time the folders are not writable for the server's user.
chroot "$rootfs" /opt/barkserve/bin/python -m compileall -q -j 0 /opt/barkserve/lib >/dev/null || true
chroot "$rootfs" useradd --uid "$UID_" --gid 0 --home-dir /home/barkserve --create-home --shell /usr/sbin/nologin barkserve
install -m 0755 "$repo/packaging/healthcheck.py" "$rootfs/usr/local/bin/barkserve-healthcheck"
sed -i '1s|.*|#!/opt/barkserve/bin/python|' "$rootfs/usr/local/bin/barkserve-healthcheck"
mkdir -p "$rootfs"/data/{hf-cache,voices,output,jobs}
# Any UID with group 0 can write them (OpenShift runs images under an arbitrary UID in group 0).
chown -R "$UID_:0" "$rootfs/data" "$rootfs/home/barkserve"
chmod -R g=u "$rootfs/data" "$rootfs/home/barkserve"
rm -rf "$rootfs"/var/cache/apt/* "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/* "$rootfs"/tmp/*
fi

step "4/4 OCI image $out:$tag"
[ -f "$out/index.json" ] || umoci init --layout "$out"
umoci new --image "$out:$tag"
bundle=$work/bundle
rm -rf "$bundle"
umoci unpack --image "$out:$tag" "$bundle" >/dev/null
rm -rf "$bundle/rootfs"
mv "$rootfs" "$bundle/rootfs"
umoci repack --image "$out:$tag" "$bundle"
rm -rf "$bundle"
health_cmd='["/usr/local/bin/barkserve-healthcheck"]'
labels=(
  "org.opencontainers.image.title=barkserve"
  "org.opencontainers.image.description=Text-to-speech server for Suno's Bark ($variant)"
  "org.opencontainers.image.source=$IMAGE_SOURCE"
  "org.opencontainers.image.version=$version"
  "org.opencontainers.image.revision=$revision"
  "org.opencontainers.image.licenses=MIT"
  "org.opencontainers.image.created=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  # OCI has no HEALTHCHECK: the check, for compose files, Kubernetes probes and people.
  "io.barkserve.healthcheck.path=/health"
  "io.barkserve.healthcheck.port=8000"
  "io.barkserve.healthcheck.cmd=$health_cmd"
  "io.barkserve.variant=$variant"
)
config_args=(
  --config.user "$UID_:0"
  --config.workingdir /data
  --config.entrypoint /opt/barkserve/bin/barkserve
  --config.cmd serve --config.cmd --host --config.cmd 0.0.0.0
  --config.exposedports 8000/tcp
  --config.env PATH=/opt/barkserve/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  --config.env HOME=/home/barkserve
  --config.env HF_HOME=/data/hf-cache
  --config.env BARKSERVE_VOICES_DIR=/data/voices
  --config.env BARKSERVE_OUTPUT_DIR=/data/output
  --config.env BARKSERVE_JOBS_DIR=/data/jobs
  --config.env BARKSERVE_AUTH=on
  --config.env BARKSERVE_REFUSE_ROOT=1
  --config.env PYTHONUNBUFFERED=1
  --config.volume /data/hf-cache --config.volume /data/voices
  --config.volume /data/output --config.volume /data/jobs
)
for label in "${labels[@]}"; do
  config_args+=(--config.label "$label" --manifest.annotation "$label")
done
umoci config --image "$out:$tag" "${config_args[@]}"
umoci gc --layout "$out"
size=$(du -sb "$out" | cut -f1)
step "done: $out:$tag, $(( size / 1048576 )) MiB compressed layout, $(( $(date +%s) - start )) s"
