// Package deploytest holds no code: its tests load the deployment files
// (deploy/Dockerfile, docker-compose.yml, deploy/prometheus, deploy/grafana,
// deploy/k8s) and check them against the worker itself — the settings its
// subcommands really accept (from the built binary's --help), the metrics it
// really exports (from the sources), its admin endpoints and its simulator's
// defaults — so that a renamed flag, metric, port or topic fails `make test`
// instead of a deployment.
package deploytest
