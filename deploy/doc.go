// Package deploy holds the configuration of the docker-compose demo
// (Prometheus, Alertmanager, Grafana provisioning, the OpenTelemetry
// Collector and the demo workload), the packaging files (packaging/: the
// systemd unit, the default configuration, nfpm's configuration) and the
// Kubernetes base (kubernetes/), and the tests that check them against the
// agent and each other.
//
// It is a module of its own so that the heavy dependencies of these checks
// (compose-go, Kubernetes API types, kustomize) stay out of the library's
// module graph. It imports nothing from the library: it builds and runs the
// agent and genrules from the repository's root with the go command.
package deploy
