#!/usr/bin/env sh
# Prints the Python to build the environment with, before anything is built: PYTHON if
# given (it must be 3.10 or newer), else python3 if new enough, else the newest python3.N
# (N >= 10) on PATH. macOS's /usr/bin/python3 (Xcode command line tools) is 3.9, and
# pyproject's requires-python would refuse it only after the ten-minute llama.cpp build.
# Usage: find_python.sh [PYTHON]
set -eu
wanted="${1:-}"

version_of() {
  "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true
}

new_enough() {
  case "$1" in
    3.[0-9]) return 1 ;;
    3.[1-9][0-9]) return 0 ;;
    *) return 1 ;;
  esac
}

hint="Install Python 3.10 or newer (python.org, or 'brew install python@3.12' on a Mac, or 'apt-get install python3.11') and run again, or point make at one: make install PYTHON=/path/to/python3.12"

if [ -n "$wanted" ]; then
  found=$(version_of "$wanted")
  if [ -z "$found" ]; then
    echo "error: PYTHON=$wanted does not run. $hint" >&2
    exit 1
  fi
  if ! new_enough "$found"; then
    echo "error: PYTHON=$wanted is Python $found; mmlupro-local needs 3.10 or newer. $hint" >&2
    exit 1
  fi
  command -v "$wanted"
  exit 0
fi

found=""
if command -v python3 >/dev/null 2>&1; then
  found=$(version_of python3)
  if new_enough "$found"; then
    command -v python3
    exit 0
  fi
fi
n=30
while [ "$n" -ge 10 ]; do
  if command -v "python3.$n" >/dev/null 2>&1 && new_enough "$(version_of "python3.$n")"; then
    command -v "python3.$n"
    exit 0
  fi
  n=$((n - 1))
done
if [ -n "$found" ]; then
  echo "error: python3 ($(command -v python3)) is Python $found, and no python3.10 or newer is on PATH; mmlupro-local needs 3.10 or newer. $hint" >&2
else
  echo "error: no python3 on PATH. $hint" >&2
fi
exit 1
