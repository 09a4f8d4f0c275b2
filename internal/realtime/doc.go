// Package realtime streams conversation events to subscribers: the event
// hub, the resume cursor, the Server-Sent Events transport
// (blue.catbird.mls.streamConvoEvents), WebSocket tickets
// (blue.catbird.mls.getSubscriptionTicket) and the WebSocket transport
// (blue.catbird.mls.subscribeConvoEvents).
//
// The hub carries no event data. A write calls Hub.Notify with the
// conversation's id (delivery.Config.OnChange); the Notifier spreads that id
// to every node; each subscription then reads the new events from the store
// after its own position. Replay on resume and live delivery are therefore
// one code path, and a subscriber that falls behind costs no memory: it is
// closed and resumes by cursor.
//
// A process runs one Node (StartNode): the hub over the store, the notifier
// ChooseNotifier picks for the backend (in process on SQLite, LISTEN/NOTIFY
// or Redis pub/sub on a shared PostgreSQL), and the ticket service, keyed by
// TicketKey from the secret every node shares. The cairn app starts it when
// the server starts and keeps it across reloads.
//
// It does not authenticate HTTP requests (cairn_auth puts the verified
// caller into the context) and it does not import Caddy.
package realtime
