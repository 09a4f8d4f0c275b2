package caller

import (
	"context"
	"testing"
)

func TestFromReportsOnlyAVerifiedDID(t *testing.T) {
	if _, ok := From(context.Background()); ok {
		t.Fatal("empty context reported an identity")
	}
	if _, ok := From(With(context.Background(), Identity{})); ok {
		t.Fatal("identity without a DID reported as present")
	}
	want := Identity{DID: "did:plc:abc", DeviceID: "phone"}
	got, ok := From(With(context.Background(), want))
	if !ok || got != want {
		t.Fatalf("From = %+v, %v; want %+v, true", got, ok, want)
	}
}
