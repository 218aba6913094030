#!/usr/bin/env sh
# Builds (once) and prints the path of a llama-cpp-python wheel for this CPU.
# The wheel is cached outside the repo, keyed by version and CMake flags, because
# pip's own cache reuses a wheel whatever CMAKE_ARGS say, so a bad build would stick.
# Usage: llama_wheel.sh PYTHON VERSION
set -eu
py="$1"; version="$2"
here=$(cd "$(dirname "$0")" && pwd)
args=$("$here/llama_cmake_args.sh")
pytag=$("$py" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
key=$(printf '%s|%s|%s' "$version" "$args" "$pytag" | sha256sum | cut -c1-16)
cache="${MMLUPRO_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mmlupro-local/wheels}/$key"
wheel=$(ls "$cache"/llama_cpp_python-*.whl 2>/dev/null | head -n1 || true)
if [ -z "$wheel" ]; then
  echo "building llama-cpp-python $version with CMAKE_ARGS='$args' (about 8 minutes on 2 cores, once)" >&2
  tmp="$cache.tmp.$$"
  rm -rf "$tmp"; mkdir -p "$tmp"
  CMAKE_ARGS="$args" CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 2)}" \
    "$py" -m pip wheel --no-deps --no-cache-dir --no-binary llama-cpp-python -w "$tmp" "llama-cpp-python==$version" >&2
  rm -rf "$cache"; mv "$tmp" "$cache"
  wheel=$(ls "$cache"/llama_cpp_python-*.whl | head -n1)
fi
echo "$wheel"
