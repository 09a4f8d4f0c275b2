package realtime

import (
	"errors"
	"maps"
	"strings"
	"testing"
)

func TestCursorRoundTrip(t *testing.T) {
	for _, p := range []position{
		{},
		{Floor: 42},
		{Floor: 7, Convos: map[string]int64{"abc": 9, "d&e=f": 1 << 40, "low": 3}},
	} {
		s := p.encode()
		tok, err := decodeCursor(s)
		if err != nil {
			t.Fatalf("decode %q: %v", s, err)
		}
		convos := map[string]struct{}{"abc": {}, "d&e=f": {}, "low": {}, "other": {}}
		got := tok.resolve(convos)
		for _, c := range []string{"abc", "d&e=f", "low", "other"} {
			if got.after(c) != p.after(c) {
				t.Errorf("%+v: after(%q) = %d, want %d", p, c, got.after(c), p.after(c))
			}
		}
		if again := tok.encode(); again != s {
			t.Errorf("re-encoding %q gave %q", s, again)
		}
		if strings.Contains(string(mustBase64(t, s)), "abc") {
			t.Errorf("cursor %q carries a conversation id in clear", s)
		}
	}
}

// TestCursorUnknownKey ignores exceptions for conversations the stream no
// longer follows.
func TestCursorUnknownKey(t *testing.T) {
	tok := token{Floor: 5, Keys: map[string]int64{convoKey("a"): 9, convoKey("gone"): 20}}
	p := tok.resolve(map[string]struct{}{"a": {}, "b": {}})
	if p.after("a") != 9 || p.after("b") != 5 || len(p.Convos) != 1 {
		t.Errorf("resolved %+v", p)
	}
}

// TestCursorRaise drops the exceptions a raised floor covers.
func TestCursorRaise(t *testing.T) {
	p := position{Floor: 10}
	p.mark("a", 12)
	p.mark("b", 20)
	if p.after("a") != 12 || p.after("c") != 10 {
		t.Fatalf("after wrong for %+v", p)
	}
	p.raise(15)
	if _, ok := p.Convos["a"]; ok || p.after("b") != 20 || p.after("a") != 15 {
		t.Errorf("after raise: %+v", p)
	}
}

// TestCursorLower pins the other conversations when the floor drops.
func TestCursorLower(t *testing.T) {
	p := position{Floor: 10}
	p.mark("a", 12)
	p.lower(5, []string{"a", "b"})
	if p.after("a") != 12 || p.after("b") != 10 || p.after("new") != 5 {
		t.Errorf("after lower: %+v", p)
	}
}

func TestCursorInvalid(t *testing.T) {
	for _, raw := range []string{"", "1", "2.1", "1.-1", "1.1&AAAAAAAAAAA=0", "1.1&=2", "1.1&short=2", "1.1&AAAAAAAAAAA=x", "1.x"} {
		s := b64(raw)
		if _, err := decodeCursor(s); !errors.Is(err, ErrInvalidCursor) {
			t.Errorf("decode %q (%q): %v, want ErrInvalidCursor", s, raw, err)
		}
	}
	if _, err := decodeCursor("!"); !errors.Is(err, ErrInvalidCursor) {
		t.Errorf("non-base64: %v", err)
	}
}

func FuzzDecodeCursor(f *testing.F) {
	f.Add((&position{Floor: 3, Convos: map[string]int64{"x": 5}}).encode())
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := decodeCursor(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidCursor) {
				t.Fatalf("%q: %v, want ErrInvalidCursor", s, err)
			}
			return
		}
		again, err := decodeCursor(tok.encode())
		if err != nil || again.Floor != tok.Floor || !maps.Equal(again.Keys, tok.Keys) {
			t.Fatalf("%q: re-decode %+v vs %+v: %v", s, again, tok, err)
		}
	})
}
