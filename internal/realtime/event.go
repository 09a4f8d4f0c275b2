package realtime

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"sync"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/cairn-chat/cairn-caddy/internal/store"
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
	ID          string   `json:"id"`
	ConvoID     string   `json:"convoId"`
	Ciphertext  lexBytes `json:"ciphertext"`
	Epoch       int64    `json:"epoch"`
	Seq         int64    `json:"seq"`
	CreatedAt   string   `json:"createdAt"`
	MessageType string   `json:"messageType"`
}

// lexBytes is a lexicon bytes value, {"$bytes": "<base64>"} in JSON.
type lexBytes []byte

func (b lexBytes) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Bytes string `json:"$bytes"`
	}{base64.RawStdEncoding.EncodeToString(b)})
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

// sharedView is a message's messageView in JSON, encoded on first use: a
// message fanned out to a thousand SSE streams is encoded once, not a
// thousand times.
type sharedView struct {
	once sync.Once
	json []byte
	err  error
}

// messageJSON returns the JSON of ev's messageView.
func (ev Event) messageJSON() ([]byte, error) {
	if ev.view == nil {
		return json.Marshal(newMessageView(*ev.Message))
	}
	ev.view.once.Do(func() { ev.view.json, ev.view.err = json.Marshal(newMessageView(*ev.Message)) })
	return ev.view.json, ev.view.err
}

// datetime formats t as a lexicon datetime.
func datetime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }
