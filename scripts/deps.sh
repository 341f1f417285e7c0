#!/usr/bin/env bash
# Installs the Debian packages jugglite needs to build, test and run, if any are missing.
# Sourced or run by scripts/run and scripts/test; safe to run again.
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  liburing-dev libhiredis-dev libfmt-dev libcxxopts-dev libsimdjson-dev
  doctest-dev libbenchmark-dev libcpp-jwt-dev nlohmann-json3-dev libcurl4-openssl-dev
  redis-server redis-tools curl
)

# `deps.sh test`: also Prometheus (promtool checks /metrics; a test scrapes it for real)
# and gnuplot (the soak plots).
if [[ "${1:-}" == test ]]; then
  packages+=(prometheus gnuplot-nox)
fi

# `deps.sh e2e`: also what the e2e tests need (nginx, Chromium, Node.js).
if [[ "${1:-}" == e2e ]]; then
  packages+=(nginx chromium)
  command -v node >/dev/null && command -v npm >/dev/null || packages+=(nodejs npm)
fi

# `deps.sh fuzz`: clang and libFuzzer for tests/fuzz (clang 16: see CMakeLists.txt).
if [[ "${1:-}" == fuzz ]]; then
  packages+=(clang-16 libclang-rt-16-dev)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "jugglite: installing ${missing[*]}" >&2
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
