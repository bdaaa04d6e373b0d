#!/usr/bin/env bash
# The Node.js 24 base image of the end-to-end tests, made without a Docker engine and without any
# public image registry: a Debian 12 root filesystem from Debian's archive (mmdebstrap, minbase),
# the Node.js binary of the npm package `node` that package-lock.json pins, and npm from the npm
# registry. It stands in for the public `node:24-bookworm-slim` that Dockerfile.reconciler and
# Dockerfile.plugin name by default (their NODE_IMAGE build argument), and is the base of every test
# application image.
#
#   e2e/node/base-image.sh              # make it if buildah's storage does not hold it yet; print its name
#   e2e/node/base-image.sh --force      # make it again
#
# Runs as root on Debian 12. The root filesystem tarball is cached in
# $DM_CACHE_DIR/images (default ${XDG_CACHE_HOME:-$HOME/.cache}/digest-migrations/images), so a
# later run on the same machine takes seconds. Prints the image name as the last line.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
SUITE=bookworm
NPM_VERSION=11.19.1
NPM_INTEGRITY='sha512-ztsxKxt/kkIaAs+2i0GU6I+DRmUdrNasxTZKJe9TCdSjKxlhah/4r/hl5ygMD6XAg1qZ9c2TNomR4qgOydp10g=='
NODE_BIN=$repo/node_modules/node/bin/node
[[ -x $NODE_BIN ]] || { echo "base-image.sh: $NODE_BIN missing: run npm ci first" >&2; exit 1; }
NODE_VERSION=$("$NODE_BIN" --version)
NODE_VERSION=${NODE_VERSION#v}
IMAGE=${DM_BASE_IMAGE:-localhost/digest-migrations-e2e/node:${NODE_VERSION}-${SUITE}-slim}
CACHE=${DM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/digest-migrations}/images
ROOTFS=$CACHE/debian-$SUITE-minbase.tar
KEY="node=$NODE_VERSION npm=$NPM_VERSION debian=$SUITE-minbase"
FORCE=0
[[ ${1:-} == --force ]] && FORCE=1

start=$SECONDS
say() { printf '[base-image +%3ds] %s\n' "$((SECONDS - start))" "$*" >&2; }

if [[ $FORCE == 0 ]] && [[ $(buildah inspect --type image --format '{{index .ImageAnnotations "net.digest-migrations.base"}}' "$IMAGE" 2>/dev/null) == "$KEY" ]]; then
  say "cached: $IMAGE ($KEY)"
  echo "$IMAGE"
  exit 0
fi

mkdir -p "$CACHE"
exec 9>"$CACHE/.base-image.lock"
flock 9

if [[ $FORCE == 1 || ! -s $ROOTFS ]]; then
  mirror=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  say "mmdebstrap --variant=minbase $SUITE from ${mirror:-http://deb.debian.org/debian} (about 1.5 min)"
  # ca-certificates: TLS clients in the images (npm) need a trust store.
  mmdebstrap --quiet --variant=minbase --include=ca-certificates "$SUITE" "$ROOTFS.tmp" "${mirror:-http://deb.debian.org/debian}" >&2
  mv "$ROOTFS.tmp" "$ROOTFS"
fi

work=$(mktemp -d)
container=
cleanup() {
  [[ -n $container ]] && buildah rm "$container" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

say "npm $NPM_VERSION from the npm registry"
(cd "$work" && npm pack --silent "npm@$NPM_VERSION" >/dev/null)
tgz=$work/npm-$NPM_VERSION.tgz
got="sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)"
[[ $got == "$NPM_INTEGRITY" ]] || { echo "base-image.sh: npm-$NPM_VERSION.tgz has integrity $got, expected $NPM_INTEGRITY" >&2; exit 1; }
mkdir -p "$work/npm"
tar -xzf "$tgz" -C "$work/npm" --strip-components=1

say "assembling $IMAGE"
container=$(buildah from --pull=never scratch)
buildah add --quiet "$container" "$ROOTFS" / >/dev/null
buildah copy --quiet --chmod 0755 "$container" "$NODE_BIN" /usr/local/bin/node >/dev/null
buildah copy --quiet "$container" "$work/npm" /usr/local/lib/node_modules/npm >/dev/null
# The layout of the official image: npm and npx on PATH as links into the npm package.
buildah run --network none "$container" -- sh -c '
  ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm &&
  ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx &&
  node --version >/dev/null && npm --version >/dev/null'
buildah config \
  --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env NODE_VERSION="$NODE_VERSION" \
  --cmd node \
  --annotation "net.digest-migrations.base=$KEY" \
  "$container"
buildah commit --quiet --rm "$container" "$IMAGE" >/dev/null
container=
say "done: $IMAGE"
echo "$IMAGE"
