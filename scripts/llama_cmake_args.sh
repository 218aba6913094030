#!/usr/bin/env sh
# Prints CMAKE_ARGS for building llama-cpp-python on this CPU.
# GGML_NATIVE is off because some CPUs report AMX that the kernel has not enabled
# (a native build then dies with "Illegal instruction" in tileloadd); instead we turn on
# exactly the x86 extensions /proc/cpuinfo lists, and never AMX.
set -eu
if [ -n "${MMLUPRO_CMAKE_ARGS:-}" ]; then echo "$MMLUPRO_CMAKE_ARGS"; exit 0; fi
case "$(uname -s)-$(uname -m)" in
  Darwin-arm64) echo "-DGGML_METAL=ON"; exit 0 ;;
  # llama-cpp-python forces these off on Intel Macs (its CMakeLists.txt): the server
  # is built the same way, so both run the same kernels
  Darwin-x86_64) echo "-DGGML_NATIVE=OFF -DGGML_AVX=OFF -DGGML_AVX2=OFF -DGGML_FMA=OFF -DGGML_F16C=OFF -DGGML_METAL=ON"; exit 0 ;;
  Linux-x86_64) ;;
  *) echo "-DGGML_NATIVE=OFF"; exit 0 ;;
esac
flags=$(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2)
has() { echo " $flags " | grep -q " $1 "; }
args="-DGGML_NATIVE=OFF"
has avx && args="$args -DGGML_AVX=ON"
has avx2 && args="$args -DGGML_AVX2=ON"
has bmi2 && args="$args -DGGML_BMI2=ON"
has fma && args="$args -DGGML_FMA=ON"
has f16c && args="$args -DGGML_F16C=ON"
has avx_vnni && args="$args -DGGML_AVX_VNNI=ON"
has avx512f && args="$args -DGGML_AVX512=ON"
has avx512_vnni && args="$args -DGGML_AVX512_VNNI=ON"
has avx512_bf16 && args="$args -DGGML_AVX512_BF16=ON"
has avx512vbmi && args="$args -DGGML_AVX512_VBMI=ON"
echo "$args"
