#!/usr/bin/env bash
# Builds the nines container image with buildah (Debian: apt-get install buildah), from a binary
# built on this host with the `dist` profile: no image is pulled from a registry. Prints the
# image's size.
#
#   deploy/container/build.sh                  # → localhost/nines:<version>
#   TAG=nines:dev deploy/container/build.sh
#   SKIP_BUILD=1 deploy/container/build.sh     # reuse $CARGO_TARGET_DIR/dist/nines
#   ROOTFS=compiled deploy/container/build.sh  # compile inside the Rust image instead (needs a registry)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
TAG="${TAG:-nines:$VERSION}"
ROOTFS="${ROOTFS:-prebuilt}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

command -v buildah >/dev/null || { echo "build.sh: buildah is missing (apt-get install buildah)" >&2; exit 1; }

if [[ "$ROOTFS" == prebuilt ]]; then
  if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    cargo build --locked --profile dist -p nines
  fi
  binary="$TARGET_DIR/dist/nines"
  [[ -x "$binary" ]] || { echo "build.sh: no binary at $binary" >&2; exit 1; }
  # The build context is the repository; the root file system goes where the Containerfile
  # looks for it (target/ is ignored by git, and everything else by .containerignore).
  deploy/container/rootfs.sh "$binary" "$ROOT/target/container/rootfs"
fi

buildah bud --format docker --layers=false \
  --build-arg ROOTFS="$ROOTFS" \
  -f deploy/container/Containerfile -t "$TAG" .

size="$(buildah images --format '{{.Size}}' --filter "reference=$TAG" | head -1)"
echo "build.sh: built $TAG ($size uncompressed)"
