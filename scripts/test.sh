#!/usr/bin/env bash
# Runs every test of corewal, installing what is missing first (pinned):
# formatting and lints, then CMake, which builds the library once with
# `cargo build --release` and runs ctest: the C and C++ tests and `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

CMAKE_VERSION=3.31.10          # from PyPI's `cmake` package
TOOLS="$PWD/.tools"

if ! "$TOOLS/venv/bin/cmake" --version 2>/dev/null | grep -q "version $CMAKE_VERSION"; then
  echo "== installing cmake $CMAKE_VERSION into .tools/venv"
  python3 -m venv "$TOOLS/venv"
  "$TOOLS/venv/bin/python" -m pip install --quiet --disable-pip-version-check "cmake==$CMAKE_VERSION"
fi
export PATH="$TOOLS/venv/bin:$PATH"

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy"
cargo clippy --release --all-targets --quiet -- -D warnings

echo "== cmake configure + build"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)"

echo "== ctest (C, C++ and cargo test)"
cd build
ctest --output-on-failure
