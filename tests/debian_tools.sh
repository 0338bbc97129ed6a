#!/usr/bin/env bash
# The Debian packages groups of tests need, installed where missing: by apt-get when make runs as root;
# otherwise one line naming every missing package, what needs it, and why it was not installed.
# Usage: tests/debian_tools.sh "WHAT NEEDS THEM;A COMMAND THAT SUCCEEDS ONCE INSTALLED;PACKAGE..." ...
set -u
missing=() needs=()
for group in "$@"; do
  IFS=';' read -r what check packages <<<"$group"
  bash -c "$check" >/dev/null 2>&1 && continue
  missing+=($packages)
  needs+=("$packages for $what")
done
[ ${#missing[@]} -eq 0 ] && exit 0
install() { apt-get install -y -q --no-install-recommends "$@" >/dev/null 2>&1; }
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  install "${missing[@]}" || { apt-get update -q >/dev/null 2>&1 && install "${missing[@]}"; } && exit 0
  why="apt-get could not install them ('apt-get install ${missing[*]}' says why)"
elif [ "$(id -u)" = 0 ]; then
  why="this machine has no apt-get"
else
  why="make runs as $(id -un), not root"
fi
joined=$(printf '%s; ' "${needs[@]}")
echo "make: missing Debian packages (${joined%; }), not installed since $why: install them (sudo apt-get install ${missing[*]}), or those tests skip (and fail under CI)" >&2
