package realtime

import (
	"encoding/json"
	"strings"
	"sync"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/cairn-chat/cairn-caddy/internal/store"
	"github.com/cairn-chat/cairn-caddy/internal/xrpc"
)

// Method NSIDs served by this package.
const (
	NSIDStream    = "blue.catbird.mls.streamConvoEvents"
	NSIDSubscribe = "blue.catbird.mls.subscribeConvoEvents"
	NSIDGetTicket = "blue.catbird.mls.getSubscriptionTicket"
)

// actionNoLongerIn is the membershipChangeEvent action for a subscriber
// who is no longer a member. The event row does not say whether they left
// or were removed; "removed" covers both for the client.
const actionNoLongerIn = "removed"

// messageView is blue.catbird.mls.defs#messageView; like the store, it
// has no sender.
type messageView struct {
	ID          string     `json:"id"`
	ConvoID     string     `json:"convoId"`
	Ciphertext  xrpc.Bytes `json:"ciphertext"`
	Epoch       int64      `json:"epoch"`
	Seq         int64      `json:"seq"`
	CreatedAt   string     `json:"createdAt"`
	MessageType string     `json:"messageType"`
}

type messageEvent struct {
	Type    string      `json:"$type" cbor:"-"`
	Cursor  string      `json:"cursor"`
	Message messageView `json:"message"`
}

type membershipChangeEvent struct {
	Type    string `json:"$type" cbor:"-"`
	Cursor  string `json:"cursor"`
	ConvoID string `json:"convoId"`
	DID     string `json:"did"`
	Action  string `json:"action"`
	Epoch   int64  `json:"epoch"`
}

type infoEvent struct {
	Type   string `json:"$type" cbor:"-"`
	Cursor string `json:"cursor"`
	Info   string `json:"info"`
}

// dagCBOR encodes with DAG-CBOR's map key order (length first, then
// bytewise).
var dagCBOR = func() cbor.EncMode {
	em, err := cbor.EncOptions{Sort: cbor.SortCanonical}.EncMode()
	if err != nil {
		panic(err)
	}
	return em
}()

// frameHeader is the header of an atproto event-stream frame.
type frameHeader struct {
	Op int64  `cbor:"op"`
	T  string `cbor:"t,omitempty"`
}

// firehoseFrame returns ev as an atproto event-stream frame for
// subscribeConvoEvents: a DAG-CBOR header {op: 1, t: "#<event>"} followed
// by the DAG-CBOR body (bytes as byte strings, no $type).
func firehoseFrame(ev Event) ([]byte, error) {
	if ev.Type == EventMessage {
		return messageFrame(ev)
	}
	body := ev.lexicon(NSIDSubscribe)
	var t string
	switch b := body.(type) {
	case messageEvent:
		t = b.Type
	case membershipChangeEvent:
		t = b.Type
	case infoEvent:
		t = b.Type
	}
	head, err := dagCBOR.Marshal(frameHeader{Op: 1, T: strings.TrimPrefix(t, NSIDSubscribe)})
	if err != nil {
		return nil, err
	}
	data, err := dagCBOR.Marshal(body)
	if err != nil {
		return nil, err
	}
	return append(head, data...), nil
}

// messageFrame is firehoseFrame for a messageEvent, around the message's
// shared encoding: the body is the map {cursor, message}, in DAG-CBOR's key
// order (shorter keys first).
func messageFrame(ev Event) ([]byte, error) {
	view, err := ev.messageCBOR()
	if err != nil {
		return nil, err
	}
	head, err := dagCBOR.Marshal(frameHeader{Op: 1, T: "#messageEvent"})
	if err != nil {
		return nil, err
	}
	cursor, err := dagCBOR.Marshal(ev.Cursor)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(head)+len(cborKeyCursor)+len(cursor)+len(cborKeyMessage)+len(view)+1)
	out = append(out, head...)
	out = append(out, 0xa2) // a map of two entries
	out = append(out, cborKeyCursor...)
	out = append(out, cursor...)
	out = append(out, cborKeyMessage...)
	return append(out, view...), nil
}

// The DAG-CBOR text strings "cursor" and "message": major type 3 with the
// length in the initial byte.
const (
	cborKeyCursor  = "\x66cursor"
	cborKeyMessage = "\x67message"
)

// lexicon returns ev as the lexicon union member of the method nsid,
// tagged with its $type.
func (ev Event) lexicon(nsid string) any {
	switch ev.Type {
	case EventMessage:
		return messageEvent{Type: nsid + "#messageEvent", Cursor: ev.Cursor, Message: newMessageView(*ev.Message)}
	case EventRemoved:
		return membershipChangeEvent{Type: nsid + "#membershipChangeEvent", Cursor: ev.Cursor,
			ConvoID: ev.ConvoID, DID: ev.DID, Action: actionNoLongerIn, Epoch: ev.Epoch}
	default:
		return infoEvent{Type: nsid + "#infoEvent", Cursor: ev.Cursor, Info: ev.Info}
	}
}

func newMessageView(m store.Message) messageView {
	t := "app"
	if m.IsCommit {
		t = "commit"
	}
	return messageView{
		ID: m.MsgID, ConvoID: m.ConvoID, Ciphertext: m.Ciphertext, Epoch: m.Epoch, Seq: m.Seq,
		CreatedAt: datetime(m.ReceivedAt), MessageType: t,
	}
}

// sharedView is a message's messageView, encoded on first use in JSON (for
// SSE) and DAG-CBOR (for WebSocket): a message fanned out to a thousand
// streams is encoded once per encoding, not a thousand times.
type sharedView struct {
	jsonOnce, cborOnce sync.Once
	json, cbor         []byte
	jsonErr, cborErr   error
}

// messageJSON returns the JSON of ev's messageView.
func (ev Event) messageJSON() ([]byte, error) {
	if ev.view == nil {
		return json.Marshal(newMessageView(*ev.Message))
	}
	v := ev.view
	v.jsonOnce.Do(func() { v.json, v.jsonErr = json.Marshal(newMessageView(*ev.Message)) })
	return v.json, v.jsonErr
}

// messageCBOR returns the DAG-CBOR of ev's messageView.
func (ev Event) messageCBOR() ([]byte, error) {
	if ev.view == nil {
		return dagCBOR.Marshal(newMessageView(*ev.Message))
	}
	v := ev.view
	v.cborOnce.Do(func() { v.cbor, v.cborErr = dagCBOR.Marshal(newMessageView(*ev.Message)) })
	return v.cbor, v.cborErr
}

// datetime formats t as a lexicon datetime.
func datetime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }
