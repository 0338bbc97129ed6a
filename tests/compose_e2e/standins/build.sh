#!/usr/bin/env bash
# Local stand-ins for the official base images the compose stack names (no image registry is reachable
# from the development machines): Debian bookworm from its own packages (debootstrap --variant=minbase),
# imported once, then one small Dockerfile per image, tagged under the official names. Nothing the product
# ships depends on them; an image that already exists under its name is kept as it is. Each Dockerfile
# installs its packages with apt (Debian's mirror over HTTP, which the containers reach).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
base=fracatlas-standin/bookworm-minbase:1
declare -A tags=(
  [python]="${PYTHON_IMAGE:-python:3.11.9-slim-bookworm}"
  [redis]="${REDIS_IMAGE:-redis:7.2.5-alpine}"
  [postgres]="${POSTGRES_IMAGE:-postgres:16.3-alpine}"
)

missing=()
for name in python redis postgres; do
  docker image inspect "${tags[$name]}" >/dev/null 2>&1 || missing+=("$name")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "stand-ins: ${tags[*]} exist"
  exit 0
fi

if ! docker image inspect "$base" >/dev/null 2>&1; then
  command -v debootstrap >/dev/null || apt-get install -y -q --no-install-recommends debootstrap >/dev/null
  root="$(mktemp -d)"
  trap 'rm -rf "$root"' EXIT
  echo "stand-ins: debootstrap --variant=minbase bookworm"
  debootstrap --variant=minbase --include=ca-certificates,passwd bookworm "$root" "$mirror" >"$root.log" 2>&1 ||
    { tail -20 "$root.log"; exit 1; }
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root.log"
  tar -C "$root" -c . | docker import - "$base" >/dev/null
fi
for name in "${missing[@]}"; do
  echo "stand-ins: ${tags[$name]}"
  docker build -q --build-arg BASE="$base" -t "${tags[$name]}" "$here/$name" >/dev/null
done
