package seal

import (
	"bytes"
	"errors"
	"io/fs"
	"path/filepath"
	"testing"
)

func TestSealOpensOnlyWithItsKeyAndData(t *testing.T) {
	k1, _ := NewKey()
	k2, _ := NewKey()
	b1, err := New(k1)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := New(k2)
	sealed, err := b1.Seal([]byte("row 1"), []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("hello")) {
		t.Fatal("sealed value holds the plaintext")
	}
	if got, err := b1.Open([]byte("row 1"), sealed); err != nil || string(got) != "hello" {
		t.Fatalf("open = %q, %v", got, err)
	}
	for name, open := range map[string]func() ([]byte, error){
		"other row": func() ([]byte, error) { return b1.Open([]byte("row 2"), sealed) },
		"other key": func() ([]byte, error) { return b2.Open([]byte("row 1"), sealed) },
		"truncated": func() ([]byte, error) { return b1.Open([]byte("row 1"), sealed[:10]) },
	} {
		if _, err := open(); !errors.Is(err, ErrOpen) {
			t.Errorf("%s: %v, want ErrOpen", name, err)
		}
	}
	if _, err := New([]byte("short")); err == nil {
		t.Fatal("a short key was accepted")
	}
}

func TestKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k.key")
	if _, err := ReadKeyFile(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	k, _ := NewKey()
	if err := WriteKeyFile(path, k); err != nil {
		t.Fatal(err)
	}
	if err := WriteKeyFile(path, k); err == nil {
		t.Fatal("an existing key file was replaced")
	}
	got, err := ReadKeyFile(path)
	if err != nil || !bytes.Equal(got, k) {
		t.Fatalf("read = %x, %v", got, err)
	}
}
