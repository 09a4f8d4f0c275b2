// Package push wakes devices when their conversations change, without the
// push provider learning anything but that a device should wake up.
//
// Devices register a push token (registerDeviceToken); the token is sealed
// under a key kept outside the database (Keys, Sealer) before it is
// stored, and opened only here, to send. A conversation change is put on
// a Queue that never blocks its caller and holds a bounded number of
// conversations; the Sender worker drains it in rounds, resolves the
// devices of the changed conversations (each device once per round,
// however many of its conversations changed) and sends each a wake-up
// through its Provider: APNs or UnifiedPush (RFC 8030 with RFC 8291
// message encryption). The wake-up carries no conversation, no sender and
// no content. A provider that reports a token as gone gets it removed.
//
// This package holds no Caddy; caddymodules wires it into the cairn app.
package push
