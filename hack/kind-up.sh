#!/usr/bin/env bash
# A kind cluster running kubetune end to end: creates the cluster from
# kind-config.yaml, builds and loads the operator and trainer images, installs
# the chart with its bundled Prometheus, advertises fake nvidia.com/gpu on the
# worker (kind nodes have no GPUs; trials then train on the CPU) and applies
# examples/mnist-asha.yaml. Needs docker, kind, kubectl and helm. Re-running it
# reuses the cluster and upgrades the release.
#
#   KIND_CLUSTER_NAME   cluster name (default kubetune)
#   KUBETUNE_FAKE_GPUS  nvidia.com/gpu to advertise per worker (default 4; 0 skips the patch)
set -euo pipefail

CLUSTER=${KIND_CLUSTER_NAME:-kubetune}
GPUS=${KUBETUNE_FAKE_GPUS:-4}
NAMESPACE=kubetune-system
OPERATOR_IMAGE=kubetune:dev
TRAINER_IMAGE=kubetune-trainer
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null 2>&1 || { echo "kind-up: $tool is not installed" >&2; exit 1; }
done
log() { echo "[kind-up] $*" >&2; }

if kind get clusters | grep -qx "$CLUSTER"; then
  log "reusing kind cluster $CLUSTER"
else
  log "creating kind cluster $CLUSTER"
  kind create cluster --name "$CLUSTER" --config kind-config.yaml --wait 120s
fi
kubectl config use-context "kind-$CLUSTER" >/dev/null

log "building $OPERATOR_IMAGE and $TRAINER_IMAGE"
docker build -t "$OPERATOR_IMAGE" .
docker build -f trainer_image/Dockerfile -t "$TRAINER_IMAGE" .
kind load docker-image "$OPERATOR_IMAGE" "$TRAINER_IMAGE" --name "$CLUSTER"

if [ "$GPUS" -gt 0 ]; then
  # Extended resources are advertised through the node's status subresource; the
  # kubelet copies capacity to allocatable on its next status update.
  for node in $(kubectl get nodes -l kubetune.io/fake-gpu=true -o name); do
    log "advertising $GPUS fake nvidia.com/gpu on $node"
    kubectl patch "$node" --subresource=status --type=json \
      -p "[{\"op\": \"add\", \"path\": \"/status/capacity/nvidia.com~1gpu\", \"value\": \"$GPUS\"}]"
    kubectl wait "$node" --for="jsonpath={.status.allocatable.nvidia\.com/gpu}=$GPUS" --timeout=60s
  done
fi

log "installing the chart into $NAMESPACE"
helm upgrade --install kubetune charts/kubetune \
  --namespace "$NAMESPACE" --create-namespace \
  --set image.repository="${OPERATOR_IMAGE%%:*}" --set image.tag="${OPERATOR_IMAGE##*:}" \
  --set image.pullPolicy=IfNotPresent \
  --set prometheus.bundled.enabled=true \
  --wait --timeout 5m

log "applying examples/mnist-asha.yaml"
kubectl apply -f examples/mnist-asha.yaml
log "done: watch it with  kubectl get kubetune -w"
