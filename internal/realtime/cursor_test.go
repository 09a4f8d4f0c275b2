package realtime

import (
	"errors"
	"maps"
	"testing"
)

func TestCursorRoundTrip(t *testing.T) {
	for _, p := range []position{
		{},
		{Floor: 42},
		{Floor: 7, Convos: map[string]int64{"abc": 9, "d&e=f": 1 << 40}},
	} {
		s := p.encode()
		got, err := decodePosition(s)
		if err != nil {
			t.Fatalf("decode %q: %v", s, err)
		}
		if got.Floor != p.Floor || !maps.Equal(got.Convos, p.Convos) && len(p.Convos)+len(got.Convos) > 0 {
			t.Errorf("round trip of %+v gave %+v", p, got)
		}
		if again := got.encode(); again != s {
			t.Errorf("re-encoding %q gave %q", s, again)
		}
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
	for _, s := range []string{"!", "MQ", "Mi4x", "MS4tMQ", "MS4xJmE9MA", "MS4xJj0y", "MS4xJmE9eA"} {
		if _, err := decodePosition(s); !errors.Is(err, ErrInvalidCursor) {
			t.Errorf("decode %q: %v, want ErrInvalidCursor", s, err)
		}
	}
}

func FuzzDecodePosition(f *testing.F) {
	f.Add((&position{Floor: 3, Convos: map[string]int64{"x": 5}}).encode())
	f.Fuzz(func(t *testing.T, s string) {
		p, err := decodePosition(s)
		if err != nil {
			return
		}
		q, err := decodePosition(p.encode())
		if err != nil || q.Floor != p.Floor || !maps.Equal(q.Convos, p.Convos) && len(p.Convos)+len(q.Convos) > 0 {
			t.Fatalf("%q: re-decode %+v vs %+v: %v", s, q, p, err)
		}
	})
}
