#!/usr/bin/env bash
# Installs the Debian packages the tests, the demo and the benchmarks need. Idempotent; quick when
# everything is present. Runs as root (CI) or through sudo.
#   PostgreSQL, etcd, Go (the Kubernetes build), OpenSSL (test PKI), gopher-lua (Argo CD's Lua), …
#   the real node: containerd, runc, the CNI plugins, Debian's docker-registry, iproute2;
#   images without a Docker engine: buildah (builds), mmdebstrap (the Debian base).
set -euo pipefail
packages=(postgresql etcd-server golang-go rsync jq openssl unzip dpkg-dev ca-certificates procps time git golang-github-yuin-gopher-lua-dev
  build-essential containerd runc containernetworking-plugins docker-registry iproute2 buildah mmdebstrap)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then exit 0; fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
echo "installing Debian packages: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
