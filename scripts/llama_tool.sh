#!/usr/bin/env sh
# Builds (once) one of llama.cpp's programs (llama-server, llama-quantize) from the
# llama.cpp vendored in the same llama-cpp-python release as the wheel, with the same
# CMake flags (scripts/llama_cmake_args.sh), and prints the binary's path. Cached beside
# the wheels, keyed by version, flags, program, system and architecture, so a machine
# builds each once (about 6 minutes on 2 cores). CMake and Ninja come from the package
# index (into PYTHON's environment): no system cmake needed.
# Usage: llama_tool.sh PYTHON VERSION PROGRAM
set -eu
py="$1"; version="$2"; tool="$3"
here=$(cd "$(dirname "$0")" && pwd)
. "$here/portable.sh"
args=$("$here/llama_cmake_args.sh")
key=$(tool_key "$version" "$args" "$tool")
cache="$(cache_root)/$tool/$key"
if [ ! -x "$cache/$tool" ]; then
  echo "building $tool from llama-cpp-python $version's llama.cpp with '$args' (once)" >&2
  "$py" -m pip install --quiet "cmake>=3.21,<5" "ninja>=1.11" >&2
  bin=$("$py" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
  tmp="$cache.tmp.$$"
  rm -rf "$tmp"; mkdir -p "$tmp"
  # the sdist only: ":all:" would also build its build tools (CMake) from source
  "$py" -m pip download --quiet --no-deps --no-binary llama-cpp-python -d "$tmp" "llama-cpp-python==$version" >&2
  tar -xzf "$tmp"/llama_cpp_python-*.tar.gz -C "$tmp"
  src=$(ls -d "$tmp"/llama_cpp_python-*/vendor/llama.cpp)
  # no prebuilt web UI: fetching it is a download at build time, and no test uses it
  # shellcheck disable=SC2086  # $args is a list of flags
  "$bin/cmake" -S "$src" -B "$tmp/build" -G Ninja -DCMAKE_MAKE_PROGRAM="$bin/ninja" $args \
    -DLLAMA_CURL=OFF -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_USE_PREBUILT_UI=OFF -DCMAKE_BUILD_TYPE=Release >&2
  "$bin/cmake" --build "$tmp/build" -j "$(cpu_count)" --target "$tool" >&2
  mkdir -p "$tmp/out"
  cp "$tmp/build/bin/$tool" "$tmp/out/$tool"
  rm -rf "$cache"; mkdir -p "$(dirname "$cache")"; mv "$tmp/out" "$cache"; rm -rf "$tmp"
fi
echo "$cache/$tool"
