// Package deploy holds no code: its tests check the deployment artifacts in
// this directory (Prometheus rules, Grafana dashboards, the log-shipping
// configurations, the production Compose file) against the real gateway's
// metrics and logs and the tools that load them (promtool, rsyslogd, the
// OpenTelemetry Collector built from tools/otelcol-cairn); the install script
// (install.sh) with shellcheck, bats, expect and a real install as root;
// and the Ansible role and playbooks (ansible/) with ansible-lint and a
// converge into a debootstrapped Debian root through a chroot connection.
package deploy
