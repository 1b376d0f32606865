// Package deploy holds fedstat's deployment files (Dockerfile, compose,
// Kubernetes manifests, systemd units and example configs) and the tests
// that validate them. It has no code of its own.
package deploy
