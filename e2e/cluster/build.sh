#!/usr/bin/env bash
# Build kube-apiserver, kube-controller-manager, kube-scheduler and kubelet from
# Debian's `kubernetes` source package and cache them outside the repository, once
# per machine: the control plane and the real node of the end-to-end tests.
#
#   e2e/cluster/build.sh            # build if the cache is empty (seconds if it is not)
#   e2e/cluster/build.sh --force    # rebuild even if cached
#   e2e/cluster/build.sh --print-bin-dir   # print the cache directory and exit
#
# Runs as root on Debian 12 (bookworm): it installs packages with apt-get and
# needs network access to Debian's mirrors only.
#
# Environment:
#   DM_CACHE_DIR         cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/digest-migrations)
#   DM_BUILD_HEARTBEAT   seconds between progress lines during `make` (default 15)
#   DM_KEEP_BUILD=1      keep the temporary source tree (for debugging)
#
# Result: $DM_CACHE_DIR/kubernetes-v1.20.2/bin/{kube-apiserver,kube-controller-manager,kube-scheduler,kubelet}
# and `pause` (the pod sandbox's process, build/pause/linux/pause.c of the same source, linked statically);
# etcd comes from Debian's etcd-server (/usr/bin/etcd). The full build log is kept
# at $DM_CACHE_DIR/kubernetes-v1.20.2/build.log.
set -euo pipefail

# Upstream version inside Debian's 1.20.5+really1.20.2 source package. It is the
# cache key, so it must be known before anything is downloaded; the source tree
# is checked against it after extraction.
KUBE_VERSION=v1.20.2
DEBIAN_SUITE=bookworm
APT_PACKAGES=(golang-go etcd-server rsync jq dpkg-dev build-essential libc6-dev ca-certificates)
SRC_LIST=/etc/apt/sources.list.d/digest-migrations-deb-src.sources

CACHE_ROOT=${DM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/digest-migrations}
VERSION_DIR=$CACHE_ROOT/kubernetes-$KUBE_VERSION
BIN_DIR=$VERSION_DIR/bin
LOG=$VERSION_DIR/build.log
HEARTBEAT=${DM_BUILD_HEARTBEAT:-15}
FORCE=0

for arg in "$@"; do
  case $arg in
    --force) FORCE=1 ;;
    --print-bin-dir) echo "$BIN_DIR"; exit 0 ;;
    -h | --help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build.sh: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

START=$SECONDS
say() { printf '[build.sh +%3ds] %s\n' "$((SECONDS - START))" "$*"; }
die() { say "ERROR: $*" >&2; exit 1; }

BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubelet)
have_binaries() {
  local b
  for b in "${BINARIES[@]}" pause; do [[ -x $BIN_DIR/$b ]] || return 1; done
}
have_etcd() { command -v etcd >/dev/null 2>&1 || [[ -x /usr/bin/etcd ]]; }

# ---- fast path: nothing to do --------------------------------------------------
if [[ $FORCE == 0 ]] && have_binaries && have_etcd; then
  say "cached: $BIN_DIR (etcd: $(command -v etcd || echo /usr/bin/etcd))"
  exit 0
fi

[[ $(id -u) == 0 ]] || die "needs root (apt-get); run: sudo $0   (cache: $BIN_DIR)"
if ! grep -qs "VERSION_CODENAME=$DEBIAN_SUITE" /etc/os-release; then
  die "expected Debian 12 ($DEBIAN_SUITE); found: $(. /etc/os-release && echo "${PRETTY_NAME:-unknown}")"
fi

mkdir -p "$VERSION_DIR"
# Parallel test runs may all find the cache empty: build once, under a lock.
exec 9>"$CACHE_ROOT/.build.lock"
if ! flock -n 9; then
  say "another build.sh is running; waiting for it (see $LOG)"
  flock 9
fi
if [[ $FORCE == 0 ]] && have_binaries && have_etcd; then
  say "cached (built by a concurrent run): $BIN_DIR"
  exit 0
fi

# Keep the previous attempt's log (a concurrent run waiting on the lock must not erase
# the evidence of a failure).
[[ -s $LOG ]] && mv -f "$LOG" "$LOG.1"
: >"$LOG"
say "full log: $LOG"

BUILD_DIR=
HB_PID=
cleanup() {
  local rc=$?
  [[ -n $HB_PID ]] && kill "$HB_PID" 2>/dev/null || true
  if [[ $rc != 0 ]]; then
    {
      echo "----- last 60 lines of $LOG -----"
      tail -n 60 "$LOG" || true
      echo "----- error lines in $LOG -----"
      grep -nE '\.go:[0-9]+:[0-9]+: |^(make|go|\+\+\+).*(Error|error|failed|Killed)|^!!! |^fatal|^panic' "$LOG" | tail -n 20 || true
      echo "----- build.sh failed (exit $rc); full log: $LOG -----"
    } >&2
  fi
  if [[ -n $BUILD_DIR && -d $BUILD_DIR ]]; then
    if [[ ${DM_KEEP_BUILD:-0} == 1 ]]; then
      echo "[build.sh] keeping build tree $BUILD_DIR (DM_KEEP_BUILD=1)" >&2
    else
      # Go marks module-cache files read-only; make them removable first.
      chmod -R u+w "$BUILD_DIR" 2>/dev/null || true
      rm -rf "$BUILD_DIR"
    fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- phase 1: packages ----------------------------------------------------------
# A deb-src entry for the suite, in deb822 format beside the system's debian.sources,
# reusing that file's mirror so a local mirror keeps working.
deb_src_entry() {
  local uri
  uri=$(awk -v suite="$DEBIAN_SUITE" '
      BEGIN { RS = ""; FS = "\n" }
      $0 ~ ("Suites:[^\n]*[ \t]" suite "([ \t]|\n|$)") && $0 ~ /Types:[^\n]*deb/ {
        for (i = 1; i <= NF; i++) if ($i ~ /^URIs:/) { sub(/^URIs:[ \t]*/, "", $i); split($i, u, /[ \t]+/); print u[1]; exit }
      }' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  printf 'Types: deb-src\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "${uri:-http://deb.debian.org/debian}" "$DEBIAN_SUITE"
}

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
want_src=$(deb_src_entry)
need_update=0
if [[ ! -f $SRC_LIST || $(cat "$SRC_LIST") != "$want_src" ]]; then
  say "adding deb-src entry $SRC_LIST"
  printf '%s\n' "$want_src" >"$SRC_LIST"
  need_update=1
fi
[[ ${#missing[@]} -gt 0 ]] && need_update=1
if ! have_binaries || [[ $FORCE == 1 ]]; then
  # `apt-get source` needs the Sources index; fetch it if it is not there yet.
  apt-cache showsrc kubernetes 2>/dev/null | grep -q '^Package: kubernetes' || need_update=1
fi
export DEBIAN_FRONTEND=noninteractive
if [[ $need_update == 1 ]]; then
  say "phase: apt-get update"
  apt-get update >>"$LOG" 2>&1
fi
if [[ ${#missing[@]} -gt 0 ]]; then
  say "phase: apt-get install ${missing[*]}"
  apt-get install -y --no-install-recommends "${missing[@]}" >>"$LOG" 2>&1
fi
have_etcd || die "etcd not found after installing etcd-server"
say "etcd: $(command -v etcd) ($(etcd --version 2>/dev/null | head -1))"
say "go: $(go version)"

if [[ $FORCE == 0 ]] && have_binaries; then
  say "binaries already cached in $BIN_DIR"
  exit 0
fi

# ---- phase 2: source -------------------------------------------------------------
BUILD_DIR=$(mktemp -d "${TMPDIR:-/tmp}/digest-migrations-k8s-build.XXXXXX")
say "phase: apt-get source kubernetes (into $BUILD_DIR)"
(cd "$BUILD_DIR" && apt-get source kubernetes) >>"$LOG" 2>&1
SRC=$(find "$BUILD_DIR" -mindepth 1 -maxdepth 1 -type d -name 'kubernetes-*' | head -n 1)
[[ -n $SRC && -f $SRC/Makefile ]] || die "apt-get source did not produce a kubernetes-* tree"
# The release tarball is a `git archive`; its tag is baked into hack/lib/version.sh.
src_version=$(grep -o "'tag: v[0-9.]*'" "$SRC/hack/lib/version.sh" | head -n 1 | tr -d "'" | sed 's/^tag: //')
[[ $src_version == "$KUBE_VERSION" ]] ||
  die "Debian's source is $src_version ($(basename "$SRC")), this script expects $KUBE_VERSION; update KUBE_VERSION"
say "source: $(basename "$SRC") = upstream $src_version"

# ---- phase 3: reflect2 fix ------------------------------------------------------------
# The vendored github.com/modern-go/reflect2 v1.0.1 declares runtime's map iterator as
# a two-field prefix and links to reflect.mapiterinit with the pre-Go-1.18 signature
# (returning a heap-allocated *hiter). Go 1.18 changed reflect.mapiterinit to
# mapiterinit(t, m, it *hiter), filling a caller-provided iterator, so the old code
# passes garbage as `it` and kube-apiserver dies with SIGSEGV in runtime.mapiterinit
# as soon as json-iterator encodes a map. reflect2 v1.0.2 (upstream commits 9f87197
# "update signature of mapiterinit of go 1.18" and 8358028) fixes it by declaring the
# full hiter layout and the three-argument linkname, and allocating the iterator in
# UnsafeIterate. We port exactly that (Go >= 1.18 only: Debian 12 ships Go 1.19)
# instead of re-vendoring, which would touch go.mod/go.sum/modules.txt.
say "phase: patch vendored modern-go/reflect2 v1.0.1 for Go >= 1.18 (v1.0.2 mapiterinit/hiter)"
R2=$SRC/vendor/github.com/modern-go/reflect2
grep -q '^# github.com/modern-go/reflect2 v1.0.1' "$SRC/vendor/modules.txt" ||
  die "vendored reflect2 is not v1.0.1; re-check whether the fix is still needed"
cp -a "$R2" "$R2.orig"
# The new declarations (as in reflect2 v1.0.2 go_above_118.go / unsafe_link.go):
HITER_GO=$(cat <<'EOF'
type hiter struct {
	key         unsafe.Pointer
	value       unsafe.Pointer
	t           unsafe.Pointer
	h           unsafe.Pointer
	buckets     unsafe.Pointer
	bptr        unsafe.Pointer
	overflow    *[]unsafe.Pointer
	oldoverflow *[]unsafe.Pointer
	startBucket uintptr
	offset      uint8
	wrapped     bool
	B           uint8
	i           uint8
	bucket      uintptr
	checkBucket uintptr
}
EOF
)
ITERATE_GO=$(cat <<'EOF'
func (type2 *UnsafeMapType) UnsafeIterate(obj unsafe.Pointer) MapIterator {
	var it hiter
	mapiterinit(type2.rtype, *(*unsafe.Pointer)(obj), &it)
	return &UnsafeMapIterator{
		hiter:      &it,
		pKeyRType:  type2.pKeyRType,
		pElemRType: type2.pElemRType,
	}
}
EOF
)
export HITER_GO ITERATE_GO
perl -0pi -e '
  s/^func mapiterinit\(rtype unsafe\.Pointer, m unsafe\.Pointer\) \*hiter$/func mapiterinit(rtype unsafe.Pointer, m unsafe.Pointer, it *hiter)/m
    or die "reflect2 patch: mapiterinit declaration not found\n";
  s/^type hiter struct \{\n.*?^\}$/$ENV{HITER_GO}/ms
    or die "reflect2 patch: hiter struct not found\n";
' "$R2/unsafe_link.go"
perl -0pi -e '
  s/^func \(type2 \*UnsafeMapType\) UnsafeIterate\(obj unsafe\.Pointer\) MapIterator \{\n.*?^\}$/$ENV{ITERATE_GO}/ms
    or die "reflect2 patch: UnsafeIterate not found\n";
' "$R2/unsafe_map.go"
# Syntax check only (upstream v1.0.1 files predate Go 1.17's //go:build formatting).
gofmt -e "$R2/unsafe_link.go" "$R2/unsafe_map.go" >/dev/null || die "patched reflect2 does not parse"
{ echo "== reflect2 patch =="; diff -ru "$R2.orig" "$R2" || true; } >>"$LOG"
rm -rf "$R2.orig"

# ---- phase 4: make ------------------------------------------------------------------
# The Kubernetes scripts set GOPATH and GOCACHE under _output/; keep the caller's Go
# settings from leaking in (GOFLAGS would also be misparsed into the build tags).
unset GOFLAGS GOOS GOARCH GO111MODULE GOPROXY GOCACHE GOPATH KUBE_GIT_VERSION_FILE KUBE_BUILD_PLATFORMS
make_targets="cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler cmd/kubelet"

# One line every $HEARTBEAT seconds: elapsed time, packages compiled so far (entries in
# the build's private Go cache; hack/lib/golang.sh sets GOCACHE=_output/local/go/cache),
# the current step of the Kubernetes build scripts, and what the compiler works on now.
heartbeat() {
  set +e +o pipefail # best effort: a vanished process must not end the heartbeat
  local t0=$SECONDS log_offset=$1 n stage now pid pkg
  while sleep "$HEARTBEAT"; do
    n=$(find "$SRC/_output/local/go/cache" -type f -name '*-d' 2>/dev/null | wc -l)
    stage=$(tail -c "+$((log_offset + 1))" "$LOG" 2>/dev/null | awk '
        /^\+\+\+ \[/ { sub(/^\+\+\+ \[[^]]*\] /, ""); s = $0; grab = /:$/; next }
        grab && NF { sub(/^ +/, ""); s = s " " $0; grab = 0 }
        END { print s }' | sed -E 's#(\./)?vendor/k8s.io/code-generator/cmd/##g' | cut -c1-80)
    now=
    for pid in $(pgrep -x compile 2>/dev/null); do
      [[ $(readlink "/proc/$pid/cwd" 2>/dev/null) == "$SRC"* ]] || continue
      pkg=$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | awk 'p == "-p" { print; exit } { p = $0 }')
      [[ $pkg == main ]] && pkg=$(readlink "/proc/$pid/cwd" 2>/dev/null) && pkg=${pkg#"$SRC"/}
      [[ -n $pkg ]] && now+="${now:+, }${pkg#k8s.io/kubernetes/vendor/}"
    done 2>/dev/null
    # The code generators (deepcopy-gen, conversion-gen, openapi-gen…) run silently for minutes.
    for pid in $(pgrep -f '^_output/bin/[a-z0-9-]+-gen ' 2>/dev/null); do
      [[ $(readlink "/proc/$pid/cwd" 2>/dev/null) == "$SRC"* ]] || continue
      pkg=$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | head -n 1)
      [[ -n $pkg ]] && now+="${now:+, }running ${pkg##*/}"
    done 2>/dev/null
    say "  make: $((SECONDS - t0))s, $n packages compiled; ${stage:-starting}${now:+ | now: $now}"
  done
}

say "phase: make WHAT=\"$make_targets\" (≈13 min on 2 cores; progress every ${HEARTBEAT}s)"
heartbeat "$(stat -c %s "$LOG")" &
HB_PID=$!
make_start=$SECONDS
rc=0
(cd "$SRC" && make WHAT="$make_targets") >>"$LOG" 2>&1 || rc=$?
if [[ $rc != 0 ]]; then
  echo "build.sh: make exited with status $rc" >>"$LOG"
  die "make failed (exit $rc) after $((SECONDS - make_start))s"
fi
kill "$HB_PID" 2>/dev/null || true
wait "$HB_PID" 2>/dev/null || true
HB_PID=
say "make done in $((SECONDS - make_start))s"

# ---- phase 5: install into the cache ---------------------------------------------------
say "phase: install into $BIN_DIR"
out=$SRC/_output/bin
[[ -x $out/kube-apiserver ]] || out=$SRC/_output/local/bin/linux/amd64
tmp_bin=$(mktemp -d "$VERSION_DIR/bin.XXXXXX")
for b in "${BINARIES[@]}"; do
  [[ -x $out/$b ]] || die "$b was not built (looked in $out)"
  cp "$out/$b" "$tmp_bin/$b"
  v=$("$tmp_bin/$b" --version 2>&1 | head -n 1)
  [[ $v == *"$KUBE_VERSION"* ]] || die "$b --version says '$v', expected $KUBE_VERSION"
  say "  $b: $v ($(du -h "$tmp_bin/$b" | cut -f1))"
done
# The pod sandbox image's process: no image can be pulled from outside this machine, so the pause
# image is made from this binary (e2e/node). Same flags as build/pause/Makefile; its TAG names the version.
pause_tag=$(sed -n 's/^TAG = //p' "$SRC/build/pause/Makefile")
gcc -Os -Wall -Werror -static "-DVERSION=v$pause_tag-debian" -o "$tmp_bin/pause" "$SRC/build/pause/linux/pause.c" >>"$LOG" 2>&1 ||
  die "compiling build/pause/linux/pause.c failed"
printf '%s\n' "$pause_tag" >"$tmp_bin/pause.version"
say "  pause: $("$tmp_bin/pause" -v) (static)"
printf 'source=%s\ngo=%s\nbuilt=%s\n' "$(basename "$SRC")" "$(go version)" "$(date -u +%FT%TZ)" >"$tmp_bin/BUILD-INFO"
rm -rf "$BIN_DIR"
mv "$tmp_bin" "$BIN_DIR"
chmod 755 "$BIN_DIR"
say "done in $((SECONDS - START))s: $BIN_DIR"
