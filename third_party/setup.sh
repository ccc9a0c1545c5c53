#!/usr/bin/env bash
# Installs, idempotently, the Debian 12 packages that bnlab's build, tests and apps need.
#
#   third_party/setup.sh            # everything (build + tests + apps)
#   BNLAB_SETUP_DRY_RUN=1 third_party/setup.sh   # only say what would be installed
#
# Works as root or through sudo; skips packages that are already installed; runs
# `apt-get update` only when a needed package has no installation candidate (or the
# package lists are missing), never on a machine that already has everything.
set -euo pipefail

log() { printf '[bnlab setup] %s\n' "$*" >&2; }

packages=(
  # toolchain
  build-essential cmake ninja-build ccache git pkg-config
  # LibTorch (CPU, 1.13.1) and the real PyTorch used as the reference by the tests
  libtorch-dev libsleef-dev python3-torch python3-numpy
  # an optimized BLAS: LibTorch and python3-torch otherwise get the reference libblas3
  libopenblas0-pthread
  # libraries
  libfmt-dev libspdlog-dev libgtest-dev libgmock-dev libbenchmark-dev
  libcli11-dev nlohmann-json3-dev zlib1g-dev
  libprotobuf-dev protobuf-compiler python3-protobuf
  libgloo-dev
  # tests: CSV check with pandas, HTML report rendered in headless Chromium
  python3-pandas chromium
)

is_installed() {
  dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null | grep -qx installed
}

missing=()
for p in "${packages[@]}"; do
  if ! is_installed "$p"; then missing+=("$p"); fi
done

if [ ${#missing[@]} -eq 0 ]; then
  log "all ${#packages[@]} packages already installed; nothing to do"
  exit 0
fi

log "missing packages: ${missing[*]}"
if [ "${BNLAB_SETUP_DRY_RUN:-0}" = 1 ]; then
  log "dry run: not installing"
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo)
  log "not root: using sudo"
else
  log "error: need root or sudo to install: ${missing[*]}"
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive

needs_update=0
if [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v -e '^lock$' -e '^partial$' -e '^auxfiles$')" ]; then
  needs_update=1
else
  for p in "${missing[@]}"; do
    cand=$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/ {print $2}')
    if [ -z "$cand" ] || [ "$cand" = "(none)" ]; then needs_update=1; break; fi
  done
fi
if [ "$needs_update" = 1 ]; then
  log "package lists are missing or stale: apt-get update"
  "${SUDO[@]}" apt-get update -q
fi

log "apt-get install ${missing[*]}"
if ! "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"; then
  # A stale list can point at versions the mirror no longer has: refresh once and retry.
  log "install failed; refreshing package lists and retrying once"
  "${SUDO[@]}" apt-get update -q
  "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
log "done"
