#!/usr/bin/env sh
# Builds (once) llama.cpp's llama-server (scripts/llama_tool.sh) and prints its path.
# Usage: llama_server.sh PYTHON VERSION
exec "$(dirname "$0")/llama_tool.sh" "$1" "$2" llama-server
