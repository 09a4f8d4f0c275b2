// Package deploy holds no code: its tests check the deployment artifacts in
// this directory (Prometheus rules, Grafana dashboards, the log-shipping
// configurations) against the real gateway's metrics and logs and the
// tools that load them, and the install script (install.sh) with
// shellcheck, bats, expect and a real install as root.
package deploy
