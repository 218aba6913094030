#!/usr/bin/env sh
# Makes (once) a lower quantization of a test model (scripts/test_model.sh) with
# llama.cpp's own llama-quantize, built from the llama.cpp vendored in the same
# llama-cpp-python release as llama-server (scripts/llama_tool.sh), and prints its path.
# Cached beside the model, keyed by the quantizer build, so a machine makes each once.
# Usage: quant_model.sh PYTHON VERSION qwen-0.5b|qwen-1.5b TYPE   (TYPE: Q2_K, Q3_K_S, ...)
set -eu
py="$1"; version="$2"; name="$3"; type="$4"
here=$(cd "$(dirname "$0")" && pwd)
. "$here/portable.sh"
quantize=$("$here/llama_tool.sh" "$py" "$version" llama-quantize)
base=$("$here/test_model.sh" "$py" "$name")
key=$(basename "$(dirname "$quantize")")
lower=$(printf '%s' "$type" | tr 'A-Z' 'a-z')
out="$(dirname "$base")/$(basename "$base" .gguf | sed 's/q[0-9]_[a-z0-9_]*$//')$lower.$key.gguf"
if [ ! -s "$out" ]; then
  echo "quantizing $(basename "$base") to $type with llama-quantize (once)" >&2
  tmp="$out.tmp.$$"
  # the base is already quantized: --allow-requantize, as the issue asks
  "$quantize" --allow-requantize "$base" "$tmp" "$type" "$(cpu_count)" >&2
  mv "$tmp" "$out"
fi
echo "$out"
