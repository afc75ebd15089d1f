#!/usr/bin/env bash
# Installs every Debian 12 package careloop needs to build, test and run.
# Idempotent: when everything is present it only checks (no apt-get update).
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev librocksdb-dev libssl-dev openssl
  libgtest-dev libgmock-dev libbenchmark-dev
  libspdlog-dev libfmt-dev libcli11-dev libtomlplusplus-dev nlohmann-json3-dev libcpp-httplib-dev
  libcurl4-openssl-dev
  python3 clang clang-format clang-tidy
  e2fsprogs mount  # the disk-full test: mkfs.ext4 and a loop mount
  chromium fonts-dejavu-core  # the console's browser tests (and Node.js, below)
)
# Node.js and npm: the machine's own when present (a newer one than
# Debian's may be installed, with npm inside it), else Debian's.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  PACKAGES+=(nodejs npm)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
else
  echo "install-deps: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The browser tests' npm packages, pinned by tests/browser/package-lock.json.
browser="$(dirname "$0")/../tests/browser"
if ! (cd "$browser" && npm ls --silent >/dev/null 2>&1); then
  echo "install-deps: installing the browser tests' npm packages"
  (cd "$browser" && npm ci --no-audit --no-fund --loglevel=error)
fi
