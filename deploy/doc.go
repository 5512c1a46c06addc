// Package deploy holds what it takes to run dpopgate, and no code: the
// container image (Dockerfile), Kubernetes manifests (kubernetes/sidecar,
// kubernetes/shared, kubernetes/ingress) and example configs (examples/).
//
// Its tests check those files: every example config and every config in a
// ConfigMap passes the validation of "dpopgate check-config"; every
// Kubernetes document decodes strictly into its API type and its
// references resolve; the Envoy ext_authz config says what forward auth
// needs; the Dockerfile builds the binary as .ci/run does. Nothing imports
// this package, so the Kubernetes API modules its tests use never reach the
// binary.
package deploy
