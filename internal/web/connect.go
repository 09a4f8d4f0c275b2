package web

import (
	"fmt"
	"net/url"
	"strings"

	qr "github.com/piglig/go-qr"
)

// ConnectURI is the URI a phone scans to connect to this instance:
// cairn://connect?server=<service URL>&did=<service DID>, both
// percent-encoded (docs/web.md).
func (c *Config) ConnectURI() string {
	return "cairn://connect?server=" + url.QueryEscape(c.ServiceURL) + "&did=" + url.QueryEscape(c.ServiceDID)
}

// QRSVG renders text as a QR code (error correction level M) in SVG: one
// path of unit squares on a white square with the four-module quiet zone
// the standard asks for, scaled by the viewBox. It holds no script and no
// text from the input, only numbers.
func QRSVG(text, title string) (string, error) {
	code, err := qr.EncodeText(text, qr.Medium)
	if err != nil {
		return "", fmt.Errorf("encode the QR code: %w", err)
	}
	const border = 4
	n := code.Size()
	full := n + 2*border
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" shape-rendering="crispEdges" role="img" aria-labelledby="qr-title" id="qr">`, full, full)
	b.WriteString(`<title id="qr-title">`)
	b.WriteString(escapeXML(title))
	b.WriteString(`</title>`)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#fff"/><path fill="#000" d="`, full, full)
	// One rectangle per horizontal run of dark modules.
	for y := 0; y < n; y++ {
		for x := 0; x < n; {
			if !code.Module(x, y) {
				x++
				continue
			}
			run := 1
			for x+run < n && code.Module(x+run, y) {
				run++
			}
			fmt.Fprintf(&b, "M%d %dh%dv1h-%dz", x+border, y+border, run, run)
			x += run
		}
	}
	b.WriteString(`"/></svg>`)
	return b.String(), nil
}

var xmlEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&#39;")

func escapeXML(s string) string { return xmlEscaper.Replace(s) }
