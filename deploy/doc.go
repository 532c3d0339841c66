// Package deploy holds the configuration of the docker-compose demo
// (Prometheus, Alertmanager, Grafana provisioning, the OpenTelemetry
// Collector and the demo workload) and the tests that check
// docker-compose.yml, the Dockerfile and these files against each other.
// It has no code of its own.
package deploy
