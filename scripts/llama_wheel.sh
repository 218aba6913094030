#!/usr/bin/env sh
# Builds (once) and prints the path of a llama-cpp-python wheel for this CPU.
# The wheel is cached outside the repo, under the tool's own cache directory, keyed by
# version, CMake flags, Python tag, system and the architecture Python runs as, because
# pip's own cache reuses a wheel whatever CMAKE_ARGS say, so a bad build would stick.
# Usage: llama_wheel.sh PYTHON VERSION
set -eu
py="$1"; version="$2"
here=$(cd "$(dirname "$0")" && pwd)
. "$here/portable.sh"
args=$("$here/llama_cmake_args.sh")
key=$(wheel_key "$py" "$version" "$args")
cache="${MMLUPRO_WHEEL_CACHE:-$(cache_root)/wheels}/$key"
wheel=$(ls "$cache"/llama_cpp_python-*.whl 2>/dev/null | head -n1 || true)
if [ -z "$wheel" ]; then
  echo "building llama-cpp-python $version with CMAKE_ARGS='$args' (about 8 minutes on 2 cores, once)" >&2
  tmp="$cache.tmp.$$"
  rm -rf "$tmp"; mkdir -p "$tmp"
  # CMake and Ninja come from the package index when the system has none
  CMAKE_ARGS="$args" CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(cpu_count)}" \
    "$py" -m pip wheel --no-deps --no-cache-dir --no-binary llama-cpp-python -w "$tmp" "llama-cpp-python==$version" >&2
  rm -rf "$cache"; mv "$tmp" "$cache"
  wheel=$(ls "$cache"/llama_cpp_python-*.whl | head -n1)
fi
echo "$wheel"
