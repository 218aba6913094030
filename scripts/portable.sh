# Sourced by the build scripts: the few facts they need, from POSIX tools or with
# fallbacks for macOS (no sha256sum before macOS 15, no nproc), failing loudly rather
# than with an empty answer (an empty cache key once let a build delete every cached
# wheel: issue 27).

# sha256_16: the first 16 hex digits of the SHA-256 of standard input.
sha256_16() {
  if command -v sha256sum >/dev/null 2>&1; then
    digest=$(sha256sum | cut -d' ' -f1)
  elif command -v shasum >/dev/null 2>&1; then
    digest=$(shasum -a 256 | cut -d' ' -f1)
  elif command -v openssl >/dev/null 2>&1; then
    digest=$(openssl dgst -sha256 | sed 's/.*= *//')
  else
    echo "error: no sha256sum, shasum or openssl to hash the build cache key with" >&2
    return 1
  fi
  case "$digest" in
    *[!0-9a-f]* | "") echo "error: could not hash the build cache key (got '$digest')" >&2; return 1 ;;
  esac
  [ "${#digest}" -eq 64 ] || { echo "error: a SHA-256 digest of ${#digest} digits" >&2; return 1; }
  printf '%s\n' "$digest" | cut -c1-16
}

# cpu_count: the processors online (for build jobs).
cpu_count() {
  n=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || sysctl -n hw.ncpu 2>/dev/null || echo "")
  case "$n" in
    "" | *[!0-9]* | 0) echo "warning: cannot count the processors; building with 2 jobs" >&2; echo 2 ;;
    *) echo "$n" ;;
  esac
}

# cache_root: the tool's own cache directory, by the rule of mmlupro_local/config.py
# (cache_dir), so that `mmlupro-local cache info` and `cache clear` cover builds:
# $MMLUPRO_LOCAL_CACHE (a leading ~ is the home folder; relative to this folder), else an
# absolute $XDG_CACHE_HOME (a relative one is invalid), else ~/Library/Caches on macOS
# and ~/.cache elsewhere; the home folder is $HOME, else the password database's.
cache_root() {
  if [ -n "${MMLUPRO_LOCAL_CACHE:-}" ]; then
    case "$MMLUPRO_LOCAL_CACHE" in
      "~" | "~/"*) home=$(home_dir) || return 1; dir="$home${MMLUPRO_LOCAL_CACHE#"~"}" ;;
      *) dir=$MMLUPRO_LOCAL_CACHE ;;
    esac
    case "$dir" in
      /*) echo "$dir" ;;
      *) echo "$(pwd -P)/$dir" ;;
    esac
    return
  fi
  case "${XDG_CACHE_HOME:-}" in
    /*) echo "$XDG_CACHE_HOME/mmlupro-local"; return ;;
  esac
  home=$(home_dir) || return 1
  if [ "$(uname -s)" = Darwin ]; then
    echo "$home/Library/Caches/mmlupro-local"
  else
    echo "$home/.cache/mmlupro-local"
  fi
}

# home_dir: $HOME, else the user's entry in the password database (a service or a
# container may run without HOME).
home_dir() {
  if [ -n "${HOME:-}" ]; then
    echo "$HOME"
    return
  fi
  user=$(id -un) || return 1
  home=$(eval "echo ~$user")
  case "$home" in
    /*) echo "$home" ;;
    *) echo "error: HOME is not set and user $user has no home folder; set HOME or MMLUPRO_LOCAL_CACHE" >&2; return 1 ;;
  esac
}

# python_arch PYTHON: the machine architecture that Python runs as (x86_64 under
# Rosetta on an Apple-Silicon Mac: then a warning, for that build is slow).
python_arch() {
  arch=$("$1" -c 'import platform; print(platform.machine())')
  [ -n "$arch" ] || { echo "error: $1 did not say its architecture" >&2; return 1; }
  if [ "$arch" = x86_64 ] && [ "$(uname -s)" = Darwin ] &&
    [ "$(sysctl -n hw.optional.arm64 2>/dev/null || echo 0)" = 1 ]; then
    echo "warning: $1 is an x86_64 Python running under Rosetta on an Apple-Silicon Mac:" \
      "llama.cpp builds for x86_64 without Metal and runs about 10x slower. Use an arm64" \
      "Python (python.org's universal installer, or Homebrew's in /opt/homebrew)." >&2
  fi
  echo "$arch"
}

# wheel_key PYTHON VERSION ARGS / tool_key VERSION ARGS PROGRAM: the build caches' keys
# (server_key: llama-server's, as it always was).
wheel_key() {
  pytag=$("$1" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
  arch=$(python_arch "$1")
  printf '%s|%s|%s|%s-%s' "$2" "$3" "$pytag" "$(uname -s)" "$arch" | sha256_16
}
tool_key() {
  printf '%s|%s|%s|%s-%s' "$1" "$2" "$3" "$(uname -s)" "$(uname -m)" | sha256_16
}
server_key() {
  tool_key "$1" "$2" llama-server
}
