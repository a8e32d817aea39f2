package web_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"cryptomail/web"
)

func get(t *testing.T, h http.Handler, method, target string, hdr map[string]string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func body(t *testing.T, r *http.Response) []byte {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// assetNames returns the hashed assets index.html refers to, by kind.
func assetNames(t *testing.T, h http.Handler) map[string]string {
	t.Helper()
	page := string(body(t, get(t, h, "GET", "/", nil)))
	out := map[string]string{}
	for _, m := range regexp.MustCompile(`/assets/([a-z-]+)-[0-9a-f]{16}\.(js|css|svg)`).FindAllStringSubmatch(page, -1) {
		out[m[1]+"."+m[2]] = m[0]
	}
	for _, k := range []string{"app.js", "app.css", "icon.svg"} {
		if out[k] == "" {
			t.Fatalf("index.html does not refer to %s: %s", k, page)
		}
	}
	return out
}

func TestServesTheApp(t *testing.T) {
	h := web.Handler()
	names := assetNames(t, h)
	cases := []struct {
		name, target string
		hdr          map[string]string
		status       int
		ctype, cache string
		csp, framing string
		wantInBody   string
		wantEncoding string
	}{
		{name: "app", target: "/", status: 200, ctype: "text/html; charset=utf-8", cache: "no-cache", csp: web.AppCSP, framing: "DENY", wantInBody: "<div id=\"app\">"},
		{name: "index by name", target: "/index.html", status: 200, ctype: "text/html; charset=utf-8", cache: "no-cache", csp: web.AppCSP, framing: "DENY"},
		{name: "mail frame", target: "/mailframe.html", status: 200, ctype: "text/html; charset=utf-8", cache: "no-cache", csp: web.MailFrameCSP, framing: "SAMEORIGIN"},
		{name: "mail frame, remote allowed", target: "/mailframe.html?remote=1", status: 200, ctype: "text/html; charset=utf-8", cache: "no-cache", csp: web.MailFrameRemoteCSP, framing: "SAMEORIGIN"},
		{name: "script", target: names["app.js"], status: 200, ctype: "text/javascript; charset=utf-8", cache: "public, max-age=31536000, immutable", csp: web.AssetCSP, framing: "DENY"},
		{name: "script gzipped", target: names["app.js"], hdr: map[string]string{"Accept-Encoding": "br, gzip;q=0.5"}, status: 200, ctype: "text/javascript; charset=utf-8", cache: "public, max-age=31536000, immutable", csp: web.AssetCSP, framing: "DENY", wantEncoding: "gzip"},
		{name: "gzip refused", target: names["app.js"], hdr: map[string]string{"Accept-Encoding": "gzip;q=0"}, status: 200, ctype: "text/javascript; charset=utf-8", cache: "public, max-age=31536000, immutable", csp: web.AssetCSP, framing: "DENY"},
		{name: "style sheet", target: names["app.css"], status: 200, ctype: "text/css; charset=utf-8", cache: "public, max-age=31536000, immutable", csp: web.AssetCSP, framing: "DENY"},
		{name: "icon", target: names["icon.svg"], status: 200, ctype: "image/svg+xml", cache: "public, max-age=31536000, immutable", csp: web.AssetCSP, framing: "DENY"},
		{name: "navigation to a route", target: "/inbox/42", hdr: map[string]string{"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}, status: 200, ctype: "text/html; charset=utf-8", cache: "no-cache", csp: web.AppCSP, framing: "DENY", wantInBody: "<div id=\"app\">"},
		{name: "old browser navigation", target: "/inbox", hdr: map[string]string{"Accept": "text/html,application/xhtml+xml;q=0.9"}, status: 200, ctype: "text/html; charset=utf-8", cache: "no-cache", csp: web.AppCSP, framing: "DENY"},
		{name: "fetch of a missing file", target: "/missing.js", hdr: map[string]string{"Sec-Fetch-Mode": "no-cors", "Accept": "*/*"}, status: 404, ctype: "text/plain; charset=utf-8", cache: "no-store", csp: web.AssetCSP},
		{name: "missing asset, even navigated to", target: "/assets/app-0000000000000000.js", hdr: map[string]string{"Sec-Fetch-Mode": "navigate"}, status: 404, ctype: "text/plain; charset=utf-8", cache: "no-store", csp: web.AssetCSP},
		{name: "a frame is not a navigation to the app", target: "/nope", hdr: map[string]string{"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "iframe"}, status: 404, ctype: "text/plain; charset=utf-8", cache: "no-store", csp: web.AssetCSP},
		{name: "API-like path", target: "/api/x", hdr: map[string]string{"Accept": "application/json"}, status: 404, ctype: "text/plain; charset=utf-8", cache: "no-store", csp: web.AssetCSP},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := get(t, h, "GET", c.target, c.hdr)
			b := body(t, r)
			if r.StatusCode != c.status {
				t.Fatalf("status %d, want %d", r.StatusCode, c.status)
			}
			for k, want := range map[string]string{
				"Content-Type": c.ctype, "Cache-Control": c.cache, "Content-Security-Policy": c.csp,
				"X-Content-Type-Options": "nosniff", "Content-Encoding": c.wantEncoding,
			} {
				if got := r.Header.Get(k); got != want {
					t.Errorf("%s: %q, want %q", k, got, want)
				}
			}
			if c.framing != "" {
				if got := r.Header.Get("X-Frame-Options"); got != c.framing {
					t.Errorf("X-Frame-Options %q, want %q", got, c.framing)
				}
				if got := r.Header.Get("Referrer-Policy"); got != "no-referrer" {
					t.Errorf("Referrer-Policy %q", got)
				}
			}
			if c.wantEncoding == "gzip" {
				zr, err := gzip.NewReader(bytes.NewReader(b))
				if err != nil {
					t.Fatal(err)
				}
				if b, err = io.ReadAll(zr); err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(r.Header.Get("Vary"), "Accept-Encoding") {
					t.Error("no Vary: Accept-Encoding")
				}
			}
			if c.wantInBody != "" && !bytes.Contains(b, []byte(c.wantInBody)) {
				t.Errorf("body lacks %q", c.wantInBody)
			}
		})
	}
}

func TestPoliciesAllowOnlyThisOrigin(t *testing.T) {
	for _, csp := range []string{web.AppCSP, web.MailFrameCSP, web.MailFrameRemoteCSP, web.AssetCSP} {
		if !strings.HasPrefix(csp, "default-src 'none'") || strings.Contains(csp, "unsafe-eval") || strings.Contains(csp, "*") {
			t.Errorf("policy %q", csp)
		}
	}
	for _, d := range []string{"script-src 'self';", "frame-ancestors 'none'", "base-uri 'none'", "form-action 'none'", "connect-src 'self';"} {
		if !strings.Contains(web.AppCSP, d) {
			t.Errorf("app policy lacks %q", d)
		}
	}
	if strings.Contains(web.AppCSP, "unsafe-inline") || strings.Contains(web.AppCSP, "http") {
		t.Error("the app policy allows inline code or another origin")
	}
	for _, csp := range []string{web.MailFrameCSP, web.MailFrameRemoteCSP} {
		if strings.Contains(csp, "script-src") || !strings.Contains(csp, "sandbox ") || strings.Contains(csp, "allow-scripts") {
			t.Errorf("the mail frame may run script: %q", csp)
		}
	}
	if strings.Contains(web.MailFrameCSP, "http") {
		t.Error("the mail frame loads remote content before the user allows it")
	}
}

func TestConditionalAndMethods(t *testing.T) {
	h := web.Handler()
	r := get(t, h, "GET", "/", nil)
	etag := r.Header.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	if r := get(t, h, "GET", "/", map[string]string{"If-None-Match": etag}); r.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match: %d", r.StatusCode)
	}
	if r := get(t, h, "HEAD", "/", nil); r.StatusCode != 200 || len(body(t, r)) != 0 {
		t.Errorf("HEAD: %d", r.StatusCode)
	}
	for _, m := range []string{"POST", "PUT", "DELETE"} {
		r := get(t, h, m, "/", nil)
		if r.StatusCode != http.StatusMethodNotAllowed || r.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s: %d %q", m, r.StatusCode, r.Header.Get("Allow"))
		}
	}
}

// The embedded bundle is the one on disk: every file of web/dist, and nothing else.
func TestEmbeddedBundleIsDist(t *testing.T) {
	h := web.Handler()
	n := 0
	err := filepath.WalkDir("dist", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		n++
		want, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		target := "/" + filepath.ToSlash(strings.TrimPrefix(p, "dist"+string(filepath.Separator)))
		r := get(t, h, "GET", target, nil)
		if got := body(t, r); r.StatusCode != 200 || !bytes.Equal(got, want) {
			t.Errorf("%s: %d, %d bytes, want %d", target, r.StatusCode, len(got), len(want))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 6 {
		t.Errorf("dist holds %d files", n)
	}
}
