// Package web serves CryptoMail's browser client: the bundle built from web/src into
// web/dist (see web/build.mjs) and embedded in the binary, so the server stays one file.
//
// Every key and every decryption lives in the page; this package only serves static files,
// each with the security headers its role needs:
//
//   - the app (index.html): a Content-Security-Policy that allows scripts, styles, workers,
//     frames and connections from this origin only, no inline script and no eval, and
//     frame-ancestors 'none';
//   - the HTML-mail frame (mailframe.html), which the app loads into a sandboxed iframe
//     without allow-scripts and fills with sanitised mail: no script at all, inline styles
//     (mail needs them), images only from data: and blob: URLs unless the user allowed
//     remote content for the message (?remote=1), no form submission, framable by the app
//     only;
//   - hashed assets (assets/NAME-HASH.EXT): cached for a year, immutable.
//
// HTML documents are revalidated (no-cache with an ETag); text assets are served gzipped to
// clients that accept it. An unknown path gets the app only when it is an HTML navigation,
// and 404 otherwise, so a mistyped asset or API path never answers with a page.
package web

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"
)

//go:embed dist
var dist embed.FS

// Content-Security-Policy values. The app's policy also requires Trusted Types, so no
// string can reach an HTML sink in the app's own document unless DOMPurify produced it.
const (
	AppCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
		"connect-src 'self'; worker-src 'self'; frame-src 'self'; child-src 'self'; " +
		"form-action 'none'; base-uri 'none'; frame-ancestors 'none'; " +
		"require-trusted-types-for 'script'; trusted-types dompurify cryptomail"
	// MailFrameCSP is for the document that holds one message's sanitised HTML.
	MailFrameCSP = "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src data: blob:; " +
		"form-action 'none'; base-uri 'none'; frame-ancestors 'self'; " +
		"sandbox allow-same-origin allow-popups allow-popups-to-escape-sandbox"
	// MailFrameRemoteCSP is MailFrameCSP once the user allowed the message's remote images.
	MailFrameRemoteCSP = "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src data: blob: http: https:; " +
		"form-action 'none'; base-uri 'none'; frame-ancestors 'self'; " +
		"sandbox allow-same-origin allow-popups allow-popups-to-escape-sandbox"
	// AssetCSP is for scripts, style sheets and images: also the policy of the KDF worker,
	// which needs nothing from anywhere.
	AssetCSP = "default-src 'none'; frame-ancestors 'none'"
)

const (
	cacheImmutable  = "public, max-age=31536000, immutable"
	cacheRevalidate = "no-cache"
	minGzip         = 1024
)

type asset struct {
	body, gz    []byte
	contentType string
	etag        string
	immutable   bool
}

var types = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
	".png":  "image/png",
	".txt":  "text/plain; charset=utf-8",
	".json": "application/json",
}

// load reads the embedded bundle once: content types, ETags and gzipped forms.
var load = sync.OnceValue(func() map[string]*asset {
	assets := map[string]*asset{}
	err := fs.WalkDir(dist, "dist", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := dist.ReadFile(p)
		if err != nil {
			return err
		}
		ext := path.Ext(p)
		ct, ok := types[ext]
		if !ok {
			ct = mime.TypeByExtension(ext)
		}
		if ct == "" {
			ct = "application/octet-stream"
		}
		sum := sha256.Sum256(body)
		a := &asset{
			body:        body,
			contentType: ct,
			etag:        `"` + hex.EncodeToString(sum[:12]) + `"`,
			immutable:   strings.HasPrefix(p, "dist/assets/"),
		}
		if compressible(ct) && len(body) >= minGzip {
			var buf bytes.Buffer
			zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
			zw.Write(body)
			zw.Close()
			if buf.Len() < len(body) {
				a.gz = buf.Bytes()
			}
		}
		assets[strings.TrimPrefix(p, "dist")] = a
		return nil
	})
	if err != nil {
		// The bundle is compiled in; failing to read it is a broken build, not a runtime state.
		panic("web: reading the embedded bundle: " + err.Error())
	}
	return assets
})

func compressible(ct string) bool {
	return strings.HasPrefix(ct, "text/") || ct == "image/svg+xml" || ct == "application/json"
}

// Handler serves the web client at "/". Mount it as the catch-all of the HTTP listener's
// mux; more specific patterns (SeXMAP, /healthz) take precedence.
func Handler() http.Handler {
	assets := load()
	if assets["/index.html"] == nil || assets["/mailframe.html"] == nil {
		panic("web: the embedded bundle has no index.html or mailframe.html; run `make web`")
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			plain(w, http.StatusMethodNotAllowed, "method not allowed")
			return
		}
		p := r.URL.Path
		if p == "/" {
			p = "/index.html"
		}
		a := assets[p]
		if a == nil || p != path.Clean(p) {
			if !htmlNavigation(r) || strings.HasPrefix(p, "/assets/") {
				plain(w, http.StatusNotFound, "not found")
				return
			}
			// A client-side route or a bookmark: the app, which shows its own first screen.
			p, a = "/index.html", assets["/index.html"]
		}
		h := w.Header()
		switch {
		case p == "/mailframe.html" && r.URL.Query().Get("remote") == "1":
			h.Set("Content-Security-Policy", MailFrameRemoteCSP)
			h.Set("X-Frame-Options", "SAMEORIGIN")
		case p == "/mailframe.html":
			h.Set("Content-Security-Policy", MailFrameCSP)
			h.Set("X-Frame-Options", "SAMEORIGIN")
		case strings.HasSuffix(p, ".html"):
			h.Set("Content-Security-Policy", AppCSP)
			h.Set("X-Frame-Options", "DENY")
		default:
			h.Set("Content-Security-Policy", AssetCSP)
			h.Set("X-Frame-Options", "DENY")
		}
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		if strings.HasSuffix(p, ".html") {
			h.Set("Cross-Origin-Opener-Policy", "same-origin")
			h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()")
		}
		if a.immutable {
			h.Set("Cache-Control", cacheImmutable)
		} else {
			h.Set("Cache-Control", cacheRevalidate)
		}
		h.Set("Content-Type", a.contentType)
		body, etag := a.body, a.etag
		if a.gz != nil {
			h.Add("Vary", "Accept-Encoding")
			if acceptsGzip(r.Header.Get("Accept-Encoding")) {
				body, etag = a.gz, strings.TrimSuffix(a.etag, `"`)+`-gz"`
				h.Set("Content-Encoding", "gzip")
			}
		}
		h.Set("ETag", etag)
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
	})
}

func plain(w http.ResponseWriter, code int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", AssetCSP)
	w.WriteHeader(code)
	w.Write([]byte(msg + "\n"))
}

// htmlNavigation reports whether a request is a browser navigation to a page: by Fetch
// Metadata when the browser sends it, else by an Accept header that asks for HTML.
func htmlNavigation(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	if mode := r.Header.Get("Sec-Fetch-Mode"); mode != "" {
		return mode == "navigate" && r.Header.Get("Sec-Fetch-Dest") != "iframe"
	}
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, _, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(mt), "text/html") {
			return true
		}
	}
	return false
}

// acceptsGzip reads Accept-Encoding: gzip (or *) with a q-value above zero.
func acceptsGzip(h string) bool {
	for _, part := range strings.Split(h, ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		coding = strings.ToLower(strings.TrimSpace(coding))
		if coding != "gzip" && coding != "*" {
			continue
		}
		q := 1.0
		for _, p := range strings.Split(params, ";") {
			k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
			if ok && strings.EqualFold(strings.TrimSpace(k), "q") {
				f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
				if err != nil {
					f = 0
				}
				q = f
			}
		}
		return q > 0
	}
	return false
}
