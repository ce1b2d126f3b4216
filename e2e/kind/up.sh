#!/usr/bin/env bash
# Brings up the kind cluster the end-to-end suite runs on:
#   1. a kind cluster (default name eddy-e2e; its kubeconfig is written to
#      target/kind/kubeconfig, your ~/.kube/config is left alone),
#   2. the operator and processor images built from this checkout
#      (docker/*.Dockerfile, tagged :e2e) and loaded into the node,
#   3. MinIO (bucket eddy-checkpoints), Apache Kafka 4.1 (KRaft) and
#      PostgreSQL 17 from e2e/kind/manifests/,
#   4. the chart (charts/eddy) with the :e2e images, as release eddy in
#      eddy-system watching the namespace eddy-jobs only (for trying the
#      examples by hand: the e2e tests install their own release, watching
#      their own namespace, so the two never reconcile the same jobs),
# then writes target/kind/env with the same variables scripts/test-servers
# writes (EDDY_TEST_KUBECONFIG, EDDY_TEST_KAFKA_BROKERS, ...), pointing at
# the cluster from the host, plus EDDY_E2E_CLUSTER_* with the addresses
# the pods use and EDDY_E2E_IMAGE_TAG. Load it with
#
#   set -a; . target/kind/env; set +a
#
# Needs docker (with BuildKit), kind, kubectl and helm on PATH. Rerunning it
# reuses the cluster, rebuilds the images and upgrades the release.
#
# Settings (environment):
#   EDDY_KIND_CLUSTER     cluster name (default eddy-e2e)
#   EDDY_KIND_NODE_IMAGE  kindest/node image (default: kind's own default)
#   EDDY_KIND_SKIP_BUILD  set to 1 to load the :e2e images already built
#   EDDY_KIND_SKIP_CHART  set to 1 to leave the chart out (step 4)
#
# NOTE: written without a container runtime at hand; it has not been run yet.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/e2e/kind"
CLUSTER="${EDDY_KIND_CLUSTER:-eddy-e2e}"
STATE="$ROOT/target/kind"
KUBECONFIG_FILE="$STATE/kubeconfig"
RELEASE=eddy
RELEASE_NAMESPACE=eddy-system
JOBS_NAMESPACE=eddy-jobs
OPERATOR_IMAGE=ghcr.io/eddy-dev/eddy-operator:e2e
PROCESSOR_IMAGE=ghcr.io/eddy-dev/eddy-processor:e2e

log() { printf '[kind-up] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null || die "$tool is not on PATH (see e2e/kind/README.md)"
done
docker info >/dev/null 2>&1 || die "docker is installed but its daemon does not answer"

mkdir -p "$STATE"
export KUBECONFIG="$KUBECONFIG_FILE"

# 1. The cluster.
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  log "reusing kind cluster $CLUSTER"
  kind export kubeconfig --name "$CLUSTER" --kubeconfig "$KUBECONFIG_FILE" >/dev/null
else
  log "creating kind cluster $CLUSTER"
  kind create cluster --name "$CLUSTER" --config "$HERE/kind-config.yaml" \
    --kubeconfig "$KUBECONFIG_FILE" --wait 120s \
    ${EDDY_KIND_NODE_IMAGE:+--image "$EDDY_KIND_NODE_IMAGE"}
fi

# 2. The images (BuildKit for the Dockerfiles' cache mounts).
if [ "${EDDY_KIND_SKIP_BUILD:-}" != 1 ]; then
  log "building $OPERATOR_IMAGE"
  DOCKER_BUILDKIT=1 docker build -f "$ROOT/docker/operator.Dockerfile" -t "$OPERATOR_IMAGE" "$ROOT"
  log "building $PROCESSOR_IMAGE"
  DOCKER_BUILDKIT=1 docker build -f "$ROOT/docker/processor.Dockerfile" -t "$PROCESSOR_IMAGE" "$ROOT"
fi
log "loading the images into the node"
kind load docker-image --name "$CLUSTER" "$OPERATOR_IMAGE" "$PROCESSOR_IMAGE"

# 3. The servers the jobs use.
log "deploying MinIO, Kafka and PostgreSQL"
kubectl apply -f "$HERE/manifests/"
kubectl --namespace storage rollout status deployment/minio --timeout=300s
kubectl --namespace storage wait --for=condition=complete job/minio-bucket --timeout=300s
kubectl --namespace streaming rollout status statefulset/kafka --timeout=300s
kubectl --namespace databases rollout status deployment/postgres --timeout=300s

# 4. The chart. Its crds/ are installed on first install only (Helm's rule):
#    apply the CRD as well, so a rerun after a CRD change picks it up.
kubectl apply --server-side --force-conflicts -f "$ROOT/charts/eddy/crds/streamjob.yaml"
if [ "${EDDY_KIND_SKIP_CHART:-}" != 1 ]; then
  log "installing the chart (release $RELEASE in $RELEASE_NAMESPACE, watching $JOBS_NAMESPACE)"
  kubectl create namespace "$JOBS_NAMESPACE" --dry-run=client -o yaml | kubectl apply -f -
  helm upgrade --install "$RELEASE" "$ROOT/charts/eddy" \
    --namespace "$RELEASE_NAMESPACE" --create-namespace \
    --set image.tag=e2e --set processorImage.tag=e2e \
    --set watchNamespace="$JOBS_NAMESPACE" \
    --wait --timeout 5m
fi

# The environment the tests read (scripts/test-servers' names).
NODE="$(kubectl get nodes -o jsonpath='{.items[0].metadata.name}')"
cat >"$STATE/env.tmp" <<EOF
EDDY_TEST_KUBECONFIG=$KUBECONFIG_FILE
EDDY_TEST_KUBE_NODE=$NODE
EDDY_TEST_KUBECTL=$(command -v kubectl)
EDDY_TEST_HELM=$(command -v helm)
EDDY_TEST_KAFKA_BROKERS=127.0.0.1:30092
EDDY_TEST_S3_ENDPOINT=http://127.0.0.1:30900
EDDY_TEST_S3_ACCESS_KEY=eddytest
EDDY_TEST_S3_SECRET_KEY=eddytest-secret
EDDY_TEST_POSTGRES_URL=postgres://eddy:eddy@127.0.0.1:30432/eddy
EDDY_E2E_IMAGE_TAG=e2e
EDDY_E2E_CLUSTER_KAFKA=kafka.streaming.svc.cluster.local:9092
EDDY_E2E_CLUSTER_S3=http://minio.storage.svc.cluster.local:9000
EDDY_E2E_CLUSTER_POSTGRES=postgres://eddy:eddy@postgres.databases.svc.cluster.local:5432/eddy
EDDY_E2E_KIND_CLUSTER=$CLUSTER
EDDY_E2E_KIND_RELEASE=$RELEASE
EDDY_E2E_KIND_RELEASE_NAMESPACE=$RELEASE_NAMESPACE
EDDY_E2E_KIND_JOBS_NAMESPACE=$JOBS_NAMESPACE
EOF
mv "$STATE/env.tmp" "$STATE/env"
log "cluster $CLUSTER is up; environment in $STATE/env (set -a; . $STATE/env; set +a)"
