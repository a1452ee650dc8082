#!/usr/bin/env bash
# One-shot setup for a fresh Debian bookworm machine: install build/test dependencies, then build.
# Usage: scripts/setup.sh [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential cmake ninja-build pkg-config
  libopenblas-dev libopenblas-openmp-dev liblapacke-dev
  nlohmann-json3-dev libsentencepiece-dev libcli11-dev libfmt-dev
  libgtest-dev libgmock-dev libbenchmark-dev libomp-dev libbz2-dev libpcre2-dev libutf8proc-dev
  clang libclang-rt-14-dev  # fuzz harnesses (FBQ_FUZZ)
  chromium  # fbq report: the page is checked in headless Chromium (tests/test_report.cpp)
  python3-torch python3-numpy python3-sentencepiece python3-jinja2  # test oracles only (Debian's /usr/bin/python3)
)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The real llama.cpp (npm's node-llama-cpp with its prebuilt linux-x64 CPU binary, pinned in
# tools/llama-cpp/package-lock.json) for the GGUF export tests; they skip visibly without it.
if command -v npm >/dev/null 2>&1; then
  (cd tools/llama-cpp && npm ci --omit=optional --no-audit --no-fund --loglevel=error) ||
    echo "setup: npm could not install tools/llama-cpp (registry unreachable?); the llama.cpp tests will skip" >&2
else
  echo "setup: npm not found (node-llama-cpp needs Node.js >= 20); the llama.cpp tests will skip" >&2
fi

[ "${1:-}" = "--no-build" ] && exit 0
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)"
