package mlswire

import (
	"bytes"
	"errors"
	"testing"
)

// messageVectors loads messages.json: one map per vector from field name
// to hex-encoded structure.
func messageVectors(t testing.TB) []map[string]string {
	t.Helper()
	var vs []map[string]string
	readJSON(t, "messages.json", &vs)
	if len(vs) == 0 {
		t.Fatal("no message vectors")
	}
	return vs
}

// vectorFields maps each field of messages.json to a fresh value of the
// structure it holds and, for MLSMessage fields, the wire format expected.
var vectorFields = []struct {
	field string
	new   func() Value
	wf    WireFormat
}{
	{"mls_welcome", func() Value { return new(Message) }, WireFormatWelcome},
	{"mls_group_info", func() Value { return new(Message) }, WireFormatGroupInfo},
	{"mls_key_package", func() Value { return new(Message) }, WireFormatKeyPackage},
	{"ratchet_tree", func() Value { return new(RatchetTree) }, 0},
	{"group_secrets", func() Value { return new(GroupSecrets) }, 0},
	{"add_proposal", func() Value { return new(Add) }, 0},
	{"update_proposal", func() Value { return new(Update) }, 0},
	{"remove_proposal", func() Value { return new(Remove) }, 0},
	{"pre_shared_key_proposal", func() Value { return new(PreSharedKey) }, 0},
	{"re_init_proposal", func() Value { return new(ReInit) }, 0},
	{"external_init_proposal", func() Value { return new(ExternalInit) }, 0},
	{"group_context_extensions_proposal", func() Value { return new(GroupContextExtensions) }, 0},
	{"commit", func() Value { return new(Commit) }, 0},
	{"public_message_application", func() Value { return new(Message) }, WireFormatPublicMessage},
	{"public_message_proposal", func() Value { return new(Message) }, WireFormatPublicMessage},
	{"public_message_commit", func() Value { return new(Message) }, WireFormatPublicMessage},
	{"private_message", func() Value { return new(Message) }, WireFormatPrivateMessage},
}

// TestMessageVectorsRoundTrip decodes every structure of every vector in
// messages.json and re-encodes it to exactly the same bytes.
func TestMessageVectorsRoundTrip(t *testing.T) {
	vs := messageVectors(t)
	for _, f := range vectorFields {
		t.Run(f.field, func(t *testing.T) {
			for i, v := range vs {
				hexs, ok := v[f.field]
				if !ok {
					t.Fatalf("vector %d has no %s", i, f.field)
				}
				in := unhex(t, hexs)
				val := f.new()
				if err := Unmarshal(in, val); err != nil {
					t.Fatalf("vector %d: decode: %v", i, err)
				}
				if m, ok := val.(*Message); ok && m.WireFormat != f.wf {
					t.Fatalf("vector %d: wire format %v, want %v", i, m.WireFormat, f.wf)
				}
				out, err := Marshal(val)
				if err != nil {
					t.Fatalf("vector %d: encode: %v", i, err)
				}
				if !bytes.Equal(in, out) {
					t.Fatalf("vector %d: re-encoding differs\n in: %x\nout: %x", i, in, out)
				}
			}
		})
	}
}

// TestMessageVectorsHeader checks the routing fields ParseMessage exposes on
// the framed vectors.
func TestMessageVectorsHeader(t *testing.T) {
	tests := []struct {
		field string
		want  ContentType
	}{
		{"public_message_application", ContentTypeApplication},
		{"public_message_proposal", ContentTypeProposal},
		{"public_message_commit", ContentTypeCommit},
	}
	vs := messageVectors(t)
	for _, tt := range tests {
		for i, v := range vs {
			m, err := ParseMessage(unhex(t, v[tt.field]))
			if err != nil {
				t.Fatalf("%s %d: %v", tt.field, i, err)
			}
			h, ok := m.Header()
			if !ok || h.ContentType != tt.want || !bytes.Equal(h.GroupID, m.PublicMessage.Content.GroupID) || h.Epoch != m.PublicMessage.Content.Epoch {
				t.Fatalf("%s %d: header %+v, %v", tt.field, i, h, ok)
			}
		}
	}
	for i, v := range vs {
		m, err := ParseMessage(unhex(t, v["private_message"]))
		if err != nil {
			t.Fatalf("private_message %d: %v", i, err)
		}
		h, ok := m.Header()
		if !ok || !h.ContentType.valid() || !bytes.Equal(h.GroupID, m.PrivateMessage.GroupID) {
			t.Fatalf("private_message %d: header %+v, %v", i, h, ok)
		}
		w, err := ParseMessage(unhex(t, v["mls_welcome"]))
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := w.Header(); ok {
			t.Fatalf("welcome %d has a header", i)
		}
		if len(w.Welcome.NewMembers()) != len(w.Welcome.Secrets) {
			t.Fatalf("welcome %d: NewMembers length mismatch", i)
		}
	}
}

// TestMessageVectorsTruncatedAndTrailing cuts every MLSMessage vector at
// every length and appends a byte to it: each cut must fail with
// ErrTruncated (or ErrTrailingData when the cut lands on a structure
// boundary of a shorter valid reading), and the extended one with
// ErrTrailingData.
func TestMessageVectorsTruncatedAndTrailing(t *testing.T) {
	vs := messageVectors(t)
	fields := []string{"mls_welcome", "mls_group_info", "mls_key_package", "public_message_application", "public_message_proposal", "public_message_commit", "private_message"}
	// Every cut of every vector is quadratic; a slice of them covers each
	// field's structures and keeps the test quick.
	n := min(len(vs), 40)
	if testing.Short() {
		n = 3
	}
	for _, f := range fields {
		for i := range n {
			in := unhex(t, vs[i][f])
			for cut := range len(in) {
				_, err := ParseMessage(in[:cut])
				if err == nil {
					t.Fatalf("%s %d cut at %d of %d: parsed", f, i, cut, len(in))
				}
				if !errors.Is(err, ErrTruncated) {
					t.Fatalf("%s %d cut at %d: err = %v, want ErrTruncated", f, i, cut, err)
				}
			}
			_, err := ParseMessage(append(in[:len(in):len(in)], 0))
			if !errors.Is(err, ErrTrailingData) {
				t.Fatalf("%s %d with trailing byte: err = %v, want ErrTrailingData", f, i, err)
			}
		}
	}
}

func TestParseMessageErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"empty", "", ErrTruncated},
		{"version only", "0001", ErrTruncated},
		{"version 2", "00020002", ErrUnsupported},
		{"wire format 0", "00010000", ErrUnsupported},
		{"wire format 6", "00010006", ErrUnsupported},
		// PrivateMessage: group_id "ab", epoch 1, content type 0.
		{"private content type 0", "0001000201ab" + "0000000000000001" + "00" + "000000", ErrMalformed},
		{"private content type 4", "0001000201ab" + "0000000000000001" + "04" + "000000", ErrMalformed},
		{"private non-minimal group_id length", "000100024001ab" + "0000000000000001" + "01" + "000000", ErrInvalidVarint},
		{"private 0b11 length", "00010002c0", ErrInvalidVarint},
		{"private length beyond input", "0001000280100000", ErrTruncated},
		{"private ok plus garbage", "0001000201ab" + "0000000000000001" + "01" + "000000" + "ff", ErrTrailingData},
		// PublicMessage: group_id "ab", epoch 1, sender type 9.
		{"public sender type 9", "0001000101ab" + "0000000000000001" + "09", ErrMalformed},
		// PublicMessage with a proposal of unknown type 0x0a0a.
		{"public unknown proposal", "0001000101ab" + "0000000000000001" + "0100000000" + "00" + "02" + "0a0a", ErrUnsupported},
		// Commit whose path presence octet is 2.
		{"public commit bad optional", "0001000101ab" + "0000000000000001" + "0100000000" + "00" + "03" + "00" + "02", ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseMessage(unhex(t, tt.in))
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := ParseMessage(make([]byte, MaxMessageSize+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized: err = %v, want ErrTooLarge", err)
	}
}

// TestPrivateMessageHeader checks the fields the delivery service routes on
// for a hand-built application PrivateMessage.
func TestPrivateMessageHeader(t *testing.T) {
	in := unhex(t, "0001000203abcdef"+"000000000000002a"+"01"+"00"+"02aaaa"+"03bbbbbb")
	m, err := ParseMessage(in)
	if err != nil {
		t.Fatal(err)
	}
	h, ok := m.Header()
	if !ok || !bytes.Equal(h.GroupID, []byte{0xab, 0xcd, 0xef}) || h.Epoch != 42 || h.ContentType != ContentTypeApplication {
		t.Fatalf("header = %+v, %v", h, ok)
	}
	out, err := Marshal(m)
	if err != nil || !bytes.Equal(out, in) {
		t.Fatalf("re-encode = %x, %v", out, err)
	}
}

// TestElementBudget checks that a vector with more elements than
// MaxElements is refused rather than materialised.
func TestElementBudget(t *testing.T) {
	// A ratchet tree of MaxElements+1 blank nodes: one 0x00 octet each.
	n := MaxElements + 1
	in, _ := appendVarint(nil, uint64(n))
	in = append(in, make([]byte, n)...)
	var rt RatchetTree
	if err := Unmarshal(in, &rt); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
}

func TestMarshalRejectsInconsistentValues(t *testing.T) {
	tests := []struct {
		name string
		v    Value
	}{
		{"message without body", &Message{Version: 1, WireFormat: WireFormatWelcome}},
		{"unknown wire format", &Message{Version: 1, WireFormat: 9}},
		{"proposal without body", &Proposal{Type: ProposalTypeAdd}},
		{"unknown credential", &Credential{Type: 7}},
		{"private content type 0", &PrivateMessage{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Marshal(tt.v); !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
		})
	}
}
