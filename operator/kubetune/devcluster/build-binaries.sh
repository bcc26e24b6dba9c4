#!/usr/bin/env bash
# Builds the local control plane's binaries from the Go module proxy:
# kube-apiserver, kube-controller-manager, kube-scheduler, etcd, kwok and helm,
# all from ONE wrapper module so client-go and apimachinery compile once.
# The result is cached outside the checkout, keyed by every version involved,
# so a second run builds nothing. Prints the binary directory on stdout.
#
# Set KUBETUNE_BIN_DIR to a directory that already holds these binaries
# (an envtest assets directory plus kwok and helm, say) to skip the build.
set -euo pipefail

K8S=${KUBETUNE_K8S_VERSION:-v1.36.3}
KWOK=${KUBETUNE_KWOK_VERSION:-v0.8.0}
HELM=${KUBETUNE_HELM_VERSION:-v3.21.4}
CACHE=${KUBETUNE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubetune}
GOV=$(go env GOVERSION)
BIN=${KUBETUNE_BIN_DIR:-$CACHE/bin/k8s-$K8S-kwok-$KWOK-helm-$HELM-$GOV}
WANT=(kube-apiserver kube-controller-manager kube-scheduler etcd kwok helm)

complete() {
  for b in "${WANT[@]}"; do [ -x "$1/$b" ] || return 1; done
}
# Prometheus with Kubernetes service discovery (Debian's package has none), for the
# chart's scrape-config test; only that discovery is compiled in (build tags need v3.10+).
build_prometheus() {
  local P=${KUBETUNE_PROMETHEUS_VERSION:-v3.10.0}
  [ -x "$BIN/prometheus" ] && return 0
  [ -n "${KUBETUNE_BIN_DIR:-}" ] && return 0
  echo "[kubetune build] building Prometheus $P with Kubernetes discovery" >&2
  mkdir -p "$CACHE/src/prometheus-$P"
  (
    cd "$CACHE/src/prometheus-$P"
    export GOFLAGS=-modcacherw GOTOOLCHAIN=local CGO_ENABLED=0
    export GOPROXY=${GOPROXY_OVERRIDE:-$(go env GOPROXY | sed 's/,direct$//')}
    printf 'module local.test/kubetuneprom\n\ngo 1.25.0\n' > go.mod
    printf '//go:build tools\n\npackage tools\n\nimport _ "github.com/prometheus/prometheus/cmd/prometheus"\n' > tools.go
    go get "github.com/prometheus/prometheus@v0.3${P#v3.}" >&2
    go mod tidy >&2
    go build -trimpath -tags "remove_all_sd enable_kubernetes_sd" \
      -ldflags "-s -w -X github.com/prometheus/common/version.Version=${P#v}" \
      -o "$BIN/prometheus.tmp" github.com/prometheus/prometheus/cmd/prometheus >&2
    mv "$BIN/prometheus.tmp" "$BIN/prometheus"
  )
}

if complete "$BIN"; then build_prometheus; echo "$BIN"; exit 0; fi
if [ -n "${KUBETUNE_BIN_DIR:-}" ]; then
  echo "KUBETUNE_BIN_DIR=$KUBETUNE_BIN_DIR lacks one of: ${WANT[*]}" >&2; exit 1
fi

log() { echo "[kubetune build] $*" >&2; }
start=$(date +%s)
export GOFLAGS=-modcacherw CGO_ENABLED=0 GOTOOLCHAIN=local
# A git fallback cannot work offline; only the proxy can.
export GOPROXY=${GOPROXY_OVERRIDE:-$(go env GOPROXY | sed 's/,direct$//')}

W=$CACHE/src/wrap-$K8S-$KWOK-$HELM
mkdir -p "$W" "$BIN.tmp"
cd "$W"
STG=v0.${K8S#v1.}
MINOR=$(cut -d. -f2 <<<"$K8S")
printf 'module local.test/kubetunebins\n' > go.mod
MOD=$(go mod download -json "k8s.io/kubernetes@$K8S" | sed -n 's/.*"GoMod": "\([^"]*\)".*/\1/p')
{ echo 'module local.test/kubetunebins'; grep -m1 '^go ' "$MOD"; grep -m1 '^godebug' "$MOD" || true; } > go.mod
go mod edit -require="k8s.io/kubernetes@$K8S" -require="sigs.k8s.io/kwok@$KWOK" -require="helm.sh/helm/v3@$HELM"
# k8s.io/kubernetes points its staging modules at ./staging; replaces do not propagate.
for m in $(awk '$2=="=>" && $3 ~ /^\.\/staging\// {print $1}' "$MOD"); do
  go mod edit -replace="$m=$m@$STG"
done
cat > tools.go <<'G'
//go:build tools

package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "helm.sh/helm/v3/cmd/helm"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "sigs.k8s.io/kwok/cmd/kwok"
)
G
log "resolving modules for Kubernetes $K8S, kwok $KWOK, helm $HELM"
go mod tidy >&2

LD="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  LD+=" -X $p.gitVersion=$K8S -X $p.gitMajor=1 -X $p.gitMinor=$MINOR -X $p.gitTreeState=clean"
  LD+=" -X $p.gitCommit=0000000000000000000000000000000000000000 -X $p.buildDate=2000-01-01T00:00:00Z"
done
H=helm.sh/helm/v3
LD+=" -X $H/internal/version.version=$HELM"
LD+=" -X $H/pkg/chartutil.k8sVersionMajor=1 -X $H/pkg/chartutil.k8sVersionMinor=$MINOR"
LD+=" -X $H/pkg/lint/rules.k8sVersionMajor=1 -X $H/pkg/lint/rules.k8sVersionMinor=$MINOR"
LD+=" -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK"

log "compiling (a cold build takes a long while on few cores)"
go build -trimpath -ldflags "$LD" -o "$BIN.tmp/" \
  go.etcd.io/etcd/server/v3 \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler sigs.k8s.io/kwok/cmd/kwok $H/cmd/helm >&2
for n in server v3; do [ -e "$BIN.tmp/$n" ] && mv "$BIN.tmp/$n" "$BIN.tmp/etcd"; done
"$BIN.tmp/kube-apiserver" --version >&2
rm -rf "$BIN" && mv "$BIN.tmp" "$BIN"
build_prometheus
log "built in $(( $(date +%s) - start ))s"
echo "$BIN"
