package sqlite

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

// TestCheckpointsLeaveTheCommitPath checks that no commit checkpoints the
// WAL (the database file does not change while the checkpointer is
// stopped, however much is committed) and that the checkpointer does.
func TestCheckpointsLeaveTheCommitPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.db")
	s, err := Open(t.Context(), Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.CreateConvo(t.Context(), store.NewConvo{ID: "c", CreatorDID: "did:plc:a", CipherSuite: "x",
		Members: []store.NewMember{{MemberDID: "did:plc:a#d", UserDID: "did:plc:a"}}}); err != nil {
		t.Fatal(err)
	}
	// Let the checkpointer catch up with the set-up, then stop it.
	time.Sleep(2 * checkpointGap)
	s.cp.close()
	size := func() int64 {
		t.Helper()
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	before := size()
	// Well past SQLite's default checkpoint size of 1,000 WAL pages.
	ct := make([]byte, 4096)
	for i := range 1500 {
		if _, err := s.AppendMessage(t.Context(), store.NewMessage{ConvoID: "c", MsgID: "m" + strconv.Itoa(i), Ciphertext: ct, PaddedSize: 4096}); err != nil {
			t.Fatal(err)
		}
	}
	if got := size(); got != before {
		t.Fatalf("the database file went from %d to %d bytes with the checkpointer stopped: a commit checkpointed", before, got)
	}

	s.cp = newCheckpointer(s.ck)
	s.cp.committed()
	deadline := time.Now().Add(30 * time.Second)
	for size() == before {
		if time.Now().After(deadline) {
			t.Fatal("the checkpointer did not move the WAL into the database file")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
