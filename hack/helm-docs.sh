#!/usr/bin/env bash
# Prints the path of helm-docs (the chart README's generator), installing the pinned
# version from the Go module proxy into the user's cache on first use.
#   "$(bash hack/helm-docs.sh)" --chart-search-root charts
set -euo pipefail
VERSION=v1.14.2
DIR="${XDG_CACHE_HOME:-$HOME/.cache}/kubetune/tools/helm-docs-$VERSION"
if [[ ! -x "$DIR/helm-docs" ]]; then
  mkdir -p "$DIR"
  GOBIN="$DIR" GOFLAGS=-modcacherw CGO_ENABLED=0 \
    go install -trimpath -ldflags "-s -w" "github.com/norwoodj/helm-docs/cmd/helm-docs@$VERSION" >&2
fi
echo "$DIR/helm-docs"
