package web

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
)

// BlockID is the id of the config block in index.html.
const BlockID = "cairn-config"

// JSON returns the config as JSON that is safe inside an HTML <script>
// element: encoding/json escapes <, > and & as \u003c, \u003e and \u0026
// (and U+2028, U+2029), so no value can close the element, open a comment
// or start markup, and the text still parses as the same JSON.
func (c *Config) JSON() ([]byte, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode the instance config: %w", err)
	}
	return b, nil
}

// Block returns the config as a non-executable data block:
// <script type="application/json" id="cairn-config">…</script>. Browsers
// never run a script whose type is not JavaScript, so the CSP's
// script-src 'self' is untouched; a client reads it with
// JSON.parse(document.getElementById("cairn-config").textContent).
func (c *Config) Block() ([]byte, error) {
	j, err := c.JSON()
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.WriteString(`<script type="application/json" id="` + BlockID + `">`)
	b.Write(j)
	b.WriteString(`</script>`)
	return b.Bytes(), nil
}

var headClose = regexp.MustCompile(`(?i)</head\s*>`)

// Inject puts block into an index.html: just before the first </head>, or
// at the very start when the page has no </head>. A block the page already
// holds under the same id is left alone and the new one comes first, so
// getElementById finds the server's.
func Inject(index, block []byte) []byte {
	out := make([]byte, 0, len(index)+len(block)+1)
	if loc := headClose.FindIndex(index); loc != nil {
		out = append(out, index[:loc[0]]...)
		out = append(out, block...)
		out = append(out, '\n')
		return append(out, index[loc[0]:]...)
	}
	out = append(out, block...)
	out = append(out, '\n')
	return append(out, index...)
}
