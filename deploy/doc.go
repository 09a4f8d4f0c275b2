// Package deploy holds no code: its tests check the deployment artifacts in
// this directory (Prometheus rules and Grafana dashboards) against the real
// gateway's metrics and the tools that load them.
package deploy
