#!/usr/bin/env bash
# Deletes the kind cluster e2e/kind/up.sh made (default name eddy-e2e) and
# the kubeconfig and env file it wrote under target/kind/.
#
# NOTE: written without a container runtime at hand; it has not been run yet.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CLUSTER="${EDDY_KIND_CLUSTER:-eddy-e2e}"
STATE="$ROOT/target/kind"

command -v kind >/dev/null || { echo "[kind-down] error: kind is not on PATH" >&2; exit 1; }
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  kind delete cluster --name "$CLUSTER" --kubeconfig "$STATE/kubeconfig"
else
  echo "[kind-down] no kind cluster named $CLUSTER" >&2
fi
rm -f "$STATE/kubeconfig" "$STATE/env"
