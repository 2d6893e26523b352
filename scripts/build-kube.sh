#!/usr/bin/env bash
# Build kube-apiserver and kube-scheduler from Debian's `kubernetes` source package with Debian's Go toolchain,
# install Debian's etcd-server, and cache the binaries under ~/.cache/optio-ci/kube so a machine builds them once.
# The Kubernetes runtime tests (tests/support/kube_cluster.py) run these real binaries; no container engine is needed
# because the node is a test double (tests/support/fake_kubelet.py).
#
# Prints the bin directory on the last line of stdout (`export OPTIO_KUBE_BIN=$(scripts/build-kube.sh | tail -1)`).
set -euo pipefail

CACHE="${OPTIO_KUBE_CACHE:-$HOME/.cache/optio-ci/kube}"
BIN="$CACHE/bin"
STAMP="$BIN/.built"

log() { echo "build-kube: $*" >&2; }

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

apt_install() {
  # Install only what is missing, so a warm run does no apt work.
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ "${#missing[@]}" -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  fi
}

# etcd: Debian's etcd-server package (3.4). Its service is not wanted; the tests start etcd themselves.
if ! [ -x "$BIN/etcd" ]; then
  apt_install etcd-server
  if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable --now etcd >/dev/null 2>&1 || true; fi
  mkdir -p "$BIN"
  ln -sf "$(command -v etcd || echo /usr/bin/etcd)" "$BIN/etcd"
fi

if [ -f "$STAMP" ] && [ -x "$BIN/kube-apiserver" ] && [ -x "$BIN/kube-scheduler" ]; then
  log "cached in $BIN"
  echo "$BIN"
  exit 0
fi

# The source: apt-get source needs a deb-src entry; add one for the same archive as the configured deb lines.
SRC_LIST=/etc/apt/sources.list.d/optio-kube-src.sources
if ! grep -rqs '^Types:.*deb-src\|^deb-src' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  log "adding deb-src entry $SRC_LIST"
  $SUDO tee "$SRC_LIST" >/dev/null <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  $SUDO apt-get update -qq >&2
fi

apt_install golang-go dpkg-dev make rsync

WORK="$CACHE/src"
mkdir -p "$WORK"
if ! ls -d "$WORK"/kubernetes-*/ >/dev/null 2>&1; then
  log "apt-get source kubernetes"
  (cd "$WORK" && apt-get source -qq kubernetes >&2)
fi
TREE="$(ls -d "$WORK"/kubernetes-*/ | head -1)"
log "building in $TREE with $(go version)"

# Kubernetes 1.20 builds in GOPATH mode from its vendor/ tree (hack/lib/init.sh sets GO111MODULE=off), and its
# generated code (OpenAPI definitions) is made by the Makefile's generators first. So this is what Debian's
# debian/rules does: `make WHAT=...` with the tree linked into a GOPATH. Debian's Go 1.19 builds it unchanged;
# nothing is fetched (GOPROXY=off). Module mode with -mod=vendor fails on this tree ("updates to go.mod needed").
export GO111MODULE=off GOFLAGS="" GOPROXY=off GOTOOLCHAIN=local CGO_ENABLED=0
export GOPATH="$TREE/.go" GOCACHE="$CACHE/gocache"
mkdir -p "$GOPATH/src/k8s.io" "$BIN" "$CACHE/home"
[ -L "$GOPATH/src/k8s.io/kubernetes" ] || ln -s ../../.. "$GOPATH/src/k8s.io/kubernetes"
(
  cd "$TREE"
  log "make WHAT='cmd/kube-apiserver cmd/kube-scheduler'"
  env HOME="$CACHE/home" GOLDFLAGS="-s -w" make WHAT="cmd/kube-apiserver cmd/kube-scheduler" >&2
)
for cmd in kube-apiserver kube-scheduler; do
  built="$(ls "$TREE"/_output/local/bin/linux/*/"$cmd" "$TREE/_output/bin/$cmd" 2>/dev/null | head -1)"
  [ -x "$built" ] || { log "no $cmd binary after make"; exit 1; }
  cp "$built" "$BIN/$cmd.tmp" && mv "$BIN/$cmd.tmp" "$BIN/$cmd"
done
"$BIN/kube-apiserver" --version >&2
touch "$STAMP"
# The source tree and Go's build cache (about 3 GB) are not needed once the binaries are in place.
if [ -z "${OPTIO_KUBE_KEEP_SRC:-}" ]; then rm -rf "$WORK" "$GOCACHE"; fi
log "built into $BIN"
echo "$BIN"
