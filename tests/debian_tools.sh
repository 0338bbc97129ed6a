#!/usr/bin/env bash
# The Debian packages a group of tests needs, installed where missing: by apt-get when make runs as root;
# otherwise one line naming the packages, why they are not installed, and the tests that skip without them.
# Usage: tests/debian_tools.sh "WHAT NEEDS THEM" "A COMMAND THAT SUCCEEDS ONCE INSTALLED" PACKAGE...
set -u
what=$1 check=$2
shift 2
present() { bash -c "$check" >/dev/null 2>&1; }
present && exit 0
install() { apt-get install -y -q --no-install-recommends "$@" >/dev/null 2>&1; }
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  { install "$@" || { apt-get update -q >/dev/null 2>&1 && install "$@"; }; } && present && exit 0
  echo "make: apt-get could not install $* ('apt-get install $*' says why): $what will skip" >&2
  exit 0
fi
if [ "$(id -u)" = 0 ]; then why="this machine has no apt-get"; else why="make runs as $(id -un), not root"; fi
echo "make: $what need the Debian packages $*, which are missing ($why): install them (sudo apt-get install $*), or those tests skip (and fail under CI)" >&2
