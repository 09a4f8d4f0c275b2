package caddymodules_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestExampleRefusesUnknownHostsThroughThePipeline(t *testing.T) {
	eg := startExample(t)
	for _, tc := range []struct {
		name, url, host string
	}{
		// SNI names the public site (its certificate), the Host header
		// another name.
		{"https", eg.base + "/xrpc/blue.catbird.mls.getConvos", "unknown.example"},
		{"http", fmt.Sprintf("http://127.0.0.1:%d/", eg.httpPort), "unknown.example"},
		{"http by address", fmt.Sprintf("http://127.0.0.1:%d/xrpc/_health", eg.httpPort), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, tc.url, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.host != "" {
				req.Host = tc.host
			}
			client := *eg.client
			client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			assertXRPCError(t, tc.name+" unknown host", resp, body, http.StatusMisdirectedRequest, "InvalidRequest")
			assertSecurityHeaders(t, tc.name+" unknown host", resp)
			if resp.Header.Get("X-Request-ID") == "" {
				t.Errorf("%s: no X-Request-ID", tc.name)
			}
		})
	}
	t.Run("the public site is still served", func(t *testing.T) {
		resp, body := eg.get(t, "/xrpc/_health", nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("health: %d %s", resp.StatusCode, body)
		}
	})
	t.Run("the internal site still serves metrics", func(t *testing.T) {
		resp, err := http.Get(eg.metricsBase + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("metrics: %d", resp.StatusCode)
		}
	})
}

// TestExampleHeaderBlockLimit pins what docs/security/hardening.md says
// about the request header limit: a header block within Caddy's
// max_header_size (16 KiB) goes through the pipeline; one over it is
// refused by net/http before any handler runs, with its fixed plain-text
// 431, which carries nothing from the request and closes the connection.
func TestExampleHeaderBlockLimit(t *testing.T) {
	eg := startExample(t)
	send := func(t *testing.T, headerBytes int) (status string, header http.Header, body string, closed bool) {
		t.Helper()
		conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", eg.httpsPort), &tls.Config{ServerName: "localhost", InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		big := strings.Repeat("a", headerBytes)
		fmt.Fprintf(conn, "GET /xrpc/_health HTTP/1.1\r\nHost: localhost:%d\r\nX-Padding: %s\r\n\r\n", eg.httpsPort, big)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("reading the response to a %d-byte header: %v", headerBytes, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if strings.Contains(string(b), big[:64]) {
			t.Errorf("the response echoes the request's header")
		}
		return resp.Status, resp.Header, string(b), resp.Close
	}
	t.Run("within the limit", func(t *testing.T) {
		status, header, body, _ := send(t, 12<<10)
		if status != "200 OK" || !strings.Contains(body, `"version"`) {
			t.Fatalf("12 KiB header: %s %s", status, body)
		}
		if header.Get("X-Request-ID") == "" || header.Get("Strict-Transport-Security") == "" {
			t.Errorf("12 KiB header: the pipeline's headers are missing: %v", header)
		}
	})
	t.Run("over the limit", func(t *testing.T) {
		status, header, body, closed := send(t, 32<<10)
		if status != "431 Request Header Fields Too Large" {
			t.Fatalf("32 KiB header: %s %s", status, body)
		}
		if !closed || header.Get("Server") != "" {
			t.Errorf("32 KiB header: connection closed %t, headers %v", closed, header)
		}
		if body != "431 Request Header Fields Too Large" {
			t.Errorf("32 KiB header: body %q", body)
		}
	})
}
