package xrpc

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math/rand/v2"
	"testing"
)

// TestBytesMarshalsAsTheDataModelSays holds Bytes' hand-built JSON
// to what encoding/json writes for {"$bytes": <unpadded standard base64>},
// for empty, nil and random values of every length up to 300 bytes, and
// checks each one decodes back to the same bytes. Both ways of writing
// are held: json.Marshal (which uses MarshalJSONTo where the toolchain
// has it, and that inside a struct) and a direct MarshalJSON call.
func TestBytesMarshalsAsTheDataModelSays(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	values := []Bytes{nil, {}}
	for n := 1; n <= 300; n++ {
		v := make(Bytes, n)
		for i := range v {
			v[i] = byte(rng.Uint32())
		}
		values = append(values, v)
	}
	for _, v := range values {
		got, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("marshal %d bytes: %v", len(v), err)
		}
		want, err := json.Marshal(struct {
			Bytes string `json:"$bytes"`
		}{base64.RawStdEncoding.EncodeToString(v)})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%d bytes: got %s, want %s", len(v), got, want)
		}
		direct, err := v.MarshalJSON()
		if err != nil || !bytes.Equal(direct, want) {
			t.Fatalf("%d bytes: MarshalJSON gave %s, %v; want %s", len(v), direct, err, want)
		}
		inStruct, err := json.Marshal(struct {
			A Bytes `json:"a"`
			B int   `json:"b"`
		}{v, 1})
		if wantStruct := `{"a":` + string(want) + `,"b":1}`; err != nil || string(inStruct) != wantStruct {
			t.Fatalf("%d bytes: in a struct gave %s, %v; want %s", len(v), inStruct, err, wantStruct)
		}
		var back Bytes
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("%d bytes: unmarshal %s: %v", len(v), got, err)
		}
		if !bytes.Equal(back, v) {
			t.Fatalf("%d bytes: round trip changed the value", len(v))
		}
	}
}
