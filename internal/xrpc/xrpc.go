// Package xrpc holds the small pieces of the atproto XRPC wire protocol that
// every cairn handler shares: mapping a request path to its method NSID, the
// bounded set of method NSIDs this server knows, and the error body
// {"error":"Name","message":"…"} that every refusal carries.
//
// It does not route or serve methods; the delivery service does that.
//
// # The error path
//
// Every cairn handler, in internal/ and in caddymodules alike, answers its
// own errors: it builds an [*Error] and writes it with [RespondError] (or
// [WriteError]), and it never hands an error to the server to render, nor
// writes part of a response and then fails. A handler is given a
// [ServerErrorFunc] by its adapter and passes it to RespondError, which
// calls it once for each server fault ([Error.ServerFault]): the adapter
// logs it, once, at error level, with the request ID. An Error's Err is the
// cause for that log line, so it must never hold an identity (a DID, a
// conversation or device ID, a token, a cursor, an address).
package xrpc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// PathPrefix starts the path of every XRPC method.
const PathPrefix = "/xrpc/"

// MethodType is the lexicon type of an XRPC method.
type MethodType int

// The lexicon method types.
const (
	Query MethodType = iota + 1
	Procedure
	Subscription
)

// OtherNSID is the metric label used for any method outside the known set, so
// that label values stay bounded whatever paths clients send.
const OtherNSID = "other"

// NSIDFromPath returns the method NSID named by an XRPC request path
// ("/xrpc/<nsid>"), and false when the path is not an XRPC call. The NSID is
// returned as sent; use KnownNSID before using it as a label.
func NSIDFromPath(path string) (string, bool) {
	nsid, ok := strings.CutPrefix(path, PathPrefix)
	if !ok || nsid == "" || strings.ContainsRune(nsid, '/') {
		return "", false
	}
	return nsid, true
}

// Lookup reports the lexicon type of a known method NSID.
func Lookup(nsid string) (MethodType, bool) {
	t, ok := knownNSIDs[nsid]
	return t, ok
}

// LabelFor returns nsid if it is a known method, and OtherNSID otherwise. Use
// it for every metric label derived from a request path.
func LabelFor(nsid string) string {
	if _, ok := knownNSIDs[nsid]; ok {
		return nsid
	}
	return OtherNSID
}

// KnownNSIDs returns every known method NSID, in no particular order.
func KnownNSIDs() []string {
	out := make([]string, 0, len(knownNSIDs))
	for n := range knownNSIDs {
		out = append(out, n)
	}
	return out
}

// Error is an XRPC error: an HTTP status, a lexicon error name and a message
// for humans. It is the one error type handlers return for a refusal; the
// edge turns it into the standard body.
type Error struct {
	Status  int    // HTTP status code, 4xx or 5xx
	Name    string // the lexicon error name, e.g. "InvalidRequest"
	Message string // a sentence a client developer can act on
	// Header holds extra response headers, such as Retry-After.
	Header http.Header
	// Err is the underlying cause, for logs; it is never sent to the client.
	Err error
}

// Errorf returns an *Error with a formatted message.
func Errorf(status int, name, format string, args ...any) *Error {
	return &Error{Status: status, Name: name, Message: fmt.Sprintf(format, args...)}
}

// Error implements error.
func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Name, e.Message, e.Err)
	}
	return e.Name + ": " + e.Message
}

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

// Body is the JSON error body of the XRPC protocol.
type Body struct {
	Error   string `json:"error"`
	Message string `json:"message,omitempty"`
}

// ServerFault reports whether e is the server's failure, one an operator
// must hear of: a 5xx other than 501 Not Implemented. A 501 answers a call
// to a method this server does not serve; a client can ask for any number
// of them, and they are counted in metrics, not logged as errors.
func (e *Error) ServerFault() bool {
	return e.Status >= 500 && e.Status != http.StatusNotImplemented
}

// ServerErrorFunc is told of a server fault a handler answered, with the
// request and the error written; it logs it. See the package doc.
type ServerErrorFunc func(r *http.Request, e *Error)

// RespondError writes err as the XRPC error response to r and, if it is a
// server fault, calls report (when not nil) exactly once. It is the one
// error path of cairn's handlers.
func RespondError(w http.ResponseWriter, r *http.Request, err error, report ServerErrorFunc) {
	xe := WriteError(w, err)
	if report != nil && xe.ServerFault() {
		report(r, xe)
	}
}

// WriteError writes err as an XRPC error response and returns the *Error
// it wrote. An error that is not an *Error (anywhere in its chain) becomes a
// 500 InternalServerError whose message reveals nothing of the cause, and
// whose Err is err. Handlers use RespondError, which also reports server
// faults.
func WriteError(w http.ResponseWriter, err error) *Error {
	var xe *Error
	if !errors.As(err, &xe) {
		xe = &Error{Status: http.StatusInternalServerError, Name: "InternalServerError", Message: "internal error", Err: err}
	}
	h := w.Header()
	for k, vs := range xe.Header {
		h[k] = append([]string(nil), vs...)
	}
	WriteJSON(w, xe.Status, Body{Error: xe.Name, Message: xe.Message})
	return xe
}

// WriteJSON writes v as a JSON response with the given status. Characters
// such as < and & are written as they are, not HTML-escaped: XRPC bodies are
// JSON for programs, never embedded in HTML.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	var body []byte
	if err := enc.Encode(v); err != nil {
		status = http.StatusInternalServerError
		body = []byte(`{"error":"InternalServerError","message":"response encoding failed"}` + "\n")
	} else {
		body = buf.Bytes()
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Del("Content-Length")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
