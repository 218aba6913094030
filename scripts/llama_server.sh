#!/usr/bin/env sh
# Builds (once) llama.cpp's llama-server from the llama.cpp vendored in the same
# llama-cpp-python release as the wheel, with the same CMake flags (scripts/llama_cmake_args.sh),
# and prints the binary's path. Cached outside the repo beside the wheels, keyed the same
# way (version, flags), so a machine builds it once (about 6 minutes on 2 cores).
# Usage: llama_server.sh PYTHON VERSION
set -eu
py="$1"; version="$2"
here=$(cd "$(dirname "$0")" && pwd)
args=$("$here/llama_cmake_args.sh")
key=$(printf '%s|%s|llama-server' "$version" "$args" | sha256sum | cut -c1-16)
root="${MMLUPRO_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mmlupro-local/wheels}"
cache="$(dirname "$root")/llama-server/$key"
if [ ! -x "$cache/llama-server" ]; then
  echo "building llama-server from llama-cpp-python $version's llama.cpp with '$args' (once)" >&2
  tmp="$cache.tmp.$$"
  rm -rf "$tmp"; mkdir -p "$tmp"
  "$py" -m pip download --quiet --no-deps --no-binary :all: -d "$tmp" "llama-cpp-python==$version" >&2
  tar -xzf "$tmp"/llama_cpp_python-*.tar.gz -C "$tmp"
  src=$(ls -d "$tmp"/llama_cpp_python-*/vendor/llama.cpp)
  # shellcheck disable=SC2086  # $args is a list of flags
  cmake -S "$src" -B "$tmp/build" $args -DLLAMA_CURL=OFF -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DCMAKE_BUILD_TYPE=Release >&2
  cmake --build "$tmp/build" -j "$(nproc 2>/dev/null || echo 2)" --target llama-server >&2
  mkdir -p "$tmp/out"
  cp "$tmp/build/bin/llama-server" "$tmp/out/llama-server"
  rm -rf "$cache"; mv "$tmp/out" "$cache"; rm -rf "$tmp"
fi
echo "$cache/llama-server"
