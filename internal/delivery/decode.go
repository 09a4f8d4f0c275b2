package delivery

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cairn-chat/cairn-caddy/internal/xrpc"
)

// rawJSON is a handler result that is already an encoded response (a
// replayed idempotent write).
type rawJSON []byte

// encodeJSON encodes v as a response body.
func encodeJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// readLimited reads r to the end, refusing more than limit bytes with 413.
func readLimited(r io.Reader, limit int64) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, xrpc.Errorf(http.StatusRequestEntityTooLarge, "PayloadTooLarge", "request body too large")
		}
		return nil, xrpc.Errorf(http.StatusBadRequest, "InvalidRequest", "could not read request body")
	}
	if int64(len(body)) > limit {
		return nil, xrpc.Errorf(http.StatusRequestEntityTooLarge, "PayloadTooLarge", "request body exceeds %d bytes", limit)
	}
	return body, nil
}

// badRequest is the 400 InvalidRequest every malformed input gets.
func badRequest(format string, args ...any) *xrpc.Error {
	return xrpc.Errorf(http.StatusBadRequest, "InvalidRequest", format, args...)
}

// decodeBody decodes a JSON object body into v. Unknown fields are allowed
// (lexicons evolve by adding optional fields); wrong types, trailing data
// and anything but one object are refused with InvalidRequest naming the
// field.
func decodeBody(body []byte, v any) error {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return badRequest("request body must be a JSON object")
	}
	if !utf8.Valid(trimmed) {
		return badRequest("request body must be UTF-8")
	}
	// PostgreSQL text cannot hold NUL; no field of these lexicons needs it.
	if bytes.Contains(trimmed, []byte(`\u0000`)) {
		return badRequest("strings must not contain NUL")
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			if te.Field != "" {
				return badRequest("field %s: wrong type (want %s)", te.Field, jsonKind(te.Type.Kind().String()))
			}
			return badRequest("wrong JSON type: %s", te.Value)
		}
		var be *xrpc.BytesError
		if errors.As(err, &be) {
			return badRequest("%s", be.Error())
		}
		return badRequest("malformed JSON body")
	}
	if dec.More() {
		return badRequest("trailing data after JSON body")
	}
	if _, err := dec.Token(); err != io.EOF {
		return badRequest("trailing data after JSON body")
	}
	return nil
}

func jsonKind(k string) string {
	switch k {
	case "int64", "int", "uint64":
		return "integer"
	case "ptr":
		return "value"
	}
	return k
}

// lexBytes is a lexicon "bytes" value: {"$bytes": "<base64>"} in JSON.
type lexBytes = xrpc.Bytes

// base64Field decodes a string field holding base64 bytes, with a maximum
// decoded size (0: none).
func base64Field(name, s string, max int) ([]byte, error) {
	if max > 0 && len(s) > base64.StdEncoding.EncodedLen(max)+2 {
		return nil, errTooLarge(name, max)
	}
	b, err := xrpc.DecodeBase64(s)
	if err != nil {
		return nil, badRequest("%s is not valid base64", name)
	}
	if max > 0 && len(b) > max {
		return nil, errTooLarge(name, max)
	}
	return b, nil
}

func errTooLarge(name string, max int) error {
	return xrpc.Errorf(http.StatusRequestEntityTooLarge, "PayloadTooLarge", "%s exceeds %d bytes", name, max)
}

// encodeB64 is the encoding of "Base64-encoded" string fields.
func encodeB64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// encodeB64URL is the encoding of "Base64url-encoded" string fields.
func encodeB64URL(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// maxLen refuses a string longer than max characters (lexicon maxLength
// counts UTF-8 bytes for strings; graphemes are not used here).
func maxLen(name, s string, max int) error {
	if len(s) > max {
		return badRequest("%s exceeds %d characters", name, max)
	}
	return nil
}

// required refuses an empty required string.
func required(name, s string) error {
	if s == "" {
		return badRequest("%s is required", name)
	}
	return nil
}

// validDID checks the shape of an atproto DID, with an optional #fragment
// when allowFragment.
func validDID(s string, allowFragment bool) bool {
	if len(s) > 2048 || !strings.HasPrefix(s, "did:") {
		return false
	}
	base, frag, hasFrag := strings.Cut(s, "#")
	if hasFrag && (!allowFragment || frag == "" || strings.ContainsAny(frag, "#/?")) {
		return false
	}
	method, rest, ok := strings.Cut(base[len("did:"):], ":")
	if !ok || method == "" || rest == "" || strings.HasSuffix(rest, ":") {
		return false
	}
	for _, r := range method {
		if r < 'a' || r > 'z' {
			return false
		}
	}
	for _, r := range rest {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._:%-", r)) {
			return false
		}
	}
	return true
}

// splitDID splits "did:plc:x#dev" into the user DID and the device.
func splitDID(s string) (user, device string) {
	user, device, _ = strings.Cut(s, "#")
	return user, device
}

// convoField checks a required convoId body field.
func convoField(s string) error {
	if err := required("convoId", s); err != nil {
		return err
	}
	return maxLen("convoId", s, 128)
}

// normConvoID normalises a conversation id (hex group id) to lower case.
func normConvoID(s string) string { return strings.ToLower(s) }

// validGroupID checks a hex group id.
func validGroupID(s string) bool {
	if s == "" || len(s) > 128 || len(s)%2 != 0 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// datetime formats a time as the lexicon datetime (RFC 3339, UTC, ms).
func datetime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// optDatetime formats t, or "" for the zero time (omitted with omitempty).
func optDatetime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return datetime(t)
}

// paramReader reads typed query parameters.
type paramReader struct{ v url.Values }

func newParamReader(raw string) (paramReader, error) {
	v, err := url.ParseQuery(raw)
	if err != nil {
		return paramReader{}, badRequest("malformed query string")
	}
	return paramReader{v: v}, nil
}

// str returns a string parameter ("" if absent). Repeating a scalar is an
// error.
func (p paramReader) str(name string, max int) (string, error) {
	vs := p.v[name]
	switch {
	case len(vs) == 0:
		return "", nil
	case len(vs) > 1:
		return "", badRequest("parameter %s given more than once", name)
	case !utf8.ValidString(vs[0]) || strings.ContainsRune(vs[0], 0):
		return "", badRequest("parameter %s must be UTF-8 without NUL", name)
	}
	if err := maxLen(name, vs[0], max); err != nil {
		return "", err
	}
	return vs[0], nil
}

// reqStr returns a required string parameter.
func (p paramReader) reqStr(name string, max int) (string, error) {
	s, err := p.str(name, max)
	if err == nil && s == "" {
		err = badRequest("parameter %s is required", name)
	}
	return s, err
}

// integer returns an integer parameter within [min, max], def if absent,
// and whether it was present.
func (p paramReader) integer(name string, min, max, def int64) (int64, bool, error) {
	s, err := p.str(name, 32)
	if err != nil || s == "" {
		return def, false, err
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, false, badRequest("parameter %s must be an integer", name)
	}
	if n < min || n > max {
		return 0, false, badRequest("parameter %s must be between %d and %d", name, min, max)
	}
	return n, true, nil
}

// list returns a repeated parameter; "name[]" is accepted as well.
func (p paramReader) list(name string, maxItems, maxLen int) ([]string, error) {
	vs := append(append([]string(nil), p.v[name]...), p.v[name+"[]"]...)
	if len(vs) > maxItems {
		return nil, badRequest("parameter %s takes at most %d values", name, maxItems)
	}
	for _, s := range vs {
		if len(s) > maxLen || !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
			return nil, badRequest("parameter %s has an invalid value", name)
		}
	}
	return vs, nil
}

// requireKey refuses a write without an idempotency key.
func requireKey(name, key string, max int) error {
	if key == "" {
		return xrpc.Errorf(http.StatusBadRequest, "IdempotencyKeyRequired", "%s is required: every write must carry one so a retry cannot apply twice", name)
	}
	if len(key) > max {
		return badRequest("%s exceeds %d characters", name, max)
	}
	return nil
}
