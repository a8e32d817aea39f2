// Package server wires CryptoMail's listeners, storage and crypto together
// from a Config.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"cryptomail/lmtp"
	"cryptomail/shard"
	"cryptomail/web"
	"cryptomail/xmap/sexmap"
)

// NewLogger builds the structured logger described by [log].
func NewLogger(c LogConfig, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.Level)) // validated by LoadConfig
	opts := &slog.HandlerOptions{Level: lvl}
	if strings.EqualFold(c.Format, "json") {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// OpenStore opens the metabase and shard pool named by the config, creating
// the data dir, the homes and meta.db where missing: only `serve` and `init`
// use it.
func OpenStore(ctx context.Context, cfg *Config, logger *slog.Logger) (*shard.Store, error) {
	return openStore(ctx, cfg, logger, false)
}

// OpenExistingStore is OpenStore for admin commands: it creates nothing, and
// fails with an error wrapping shard.ErrNoStore where the data dir has no
// metabase or a home is missing. Admin commands work beside a running server.
func OpenExistingStore(ctx context.Context, cfg *Config, logger *slog.Logger) (*shard.Store, error) {
	return openStore(ctx, cfg, logger, true)
}

func openStore(ctx context.Context, cfg *Config, logger *slog.Logger, noCreate bool) (*shard.Store, error) {
	if err := requireSingleNode(cfg); err != nil {
		return nil, err
	}
	st, err := shard.Open(ctx, shard.Options{
		DataDir:       cfg.Server.DataDir,
		Homes:         cfg.Storage.Homes,
		MaxOpenShards: cfg.Storage.MaxOpenShards,
		Logger:        logger,
		NoCreate:      noCreate,
	})
	if err != nil {
		return nil, fmt.Errorf("open storage: %w", err)
	}
	return st, nil
}

// CheckStorage checks, without creating or changing anything, that the
// configured homes match the metabase (if data_dir has one yet): the
// storage part of check-config. See shard.CheckHomes.
func CheckStorage(ctx context.Context, cfg *Config) error {
	if cfg.Cluster.Enabled() {
		// The caller names the file.
		return fmt.Errorf("[cluster] etcd is set: %w", ErrClusterUnavailable)
	}
	err := shard.CheckHomes(ctx, shard.Options{DataDir: cfg.Server.DataDir, Homes: cfg.Storage.Homes})
	if err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	return nil
}

// Server runs every configured listener.
type Server struct {
	cfg    *Config
	logger *slog.Logger
	store  *shard.Store

	lmtp, smtp *lmtp.Server
	http       *http.Server
	access     *mailAccess
	listeners  map[string]net.Listener
	// webRefused: the web client would go out over plain HTTP off loopback.
	webRefused bool
	httpTLS    bool
	wg         sync.WaitGroup
	errc       chan error

	shutdownOnce sync.Once
	shutdownErr  error
}

// New opens storage and binds every listener, so that address and
// certificate problems surface before anything is served.
func New(ctx context.Context, cfg *Config, logger *slog.Logger) (*Server, error) {
	if err := requireSingleNode(cfg); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, logger: logger, listeners: map[string]net.Listener{}, errc: make(chan error, 3)}
	var smtpTLS, httpTLS *tls.Config
	if cfg.SMTP.TLSCert != "" {
		c, err := loadTLS(cfg.SMTP.TLSCert, cfg.SMTP.TLSKey, "smtp")
		if err != nil {
			return nil, err
		}
		smtpTLS = c
	}
	if cfg.HTTP.TLSCert != "" {
		c, err := loadTLS(cfg.HTTP.TLSCert, cfg.HTTP.TLSKey, "http")
		if err != nil {
			return nil, err
		}
		httpTLS = c
	}
	st, err := OpenStore(ctx, cfg, logger)
	if err != nil {
		return nil, err
	}
	s.store = st
	fail := func(err error) (*Server, error) {
		s.closeListeners()
		if s.access != nil {
			s.access.close()
		}
		st.Close()
		return nil, err
	}
	access, err := newMailAccess(ctx, cfg, st, logger)
	if err != nil {
		return fail(err)
	}
	s.access = access
	backend := newDelivery(cfg, access.deliver)

	if err := s.listen(ctx, "lmtp", cfg.LMTP.Listen); err != nil {
		return fail(err)
	}
	s.lmtp = lmtp.NewLMTP(backend, lmtp.Config{
		Hostname:        cfg.Server.Hostname,
		MaxMessageBytes: cfg.LMTP.MaxMessageBytes,
		MaxRecipients:   cfg.LMTP.MaxRecipients,
		MaxConnections:  cfg.LMTP.MaxConnections,
		ReadTimeout:     cfg.LMTP.ReadTimeout.Duration,
		WriteTimeout:    cfg.LMTP.WriteTimeout.Duration,
		Logger:          logger.With("listener", "lmtp"),
	})
	if cfg.SMTP.Listen != "" {
		if err := s.listen(ctx, "smtp", cfg.SMTP.Listen); err != nil {
			return fail(err)
		}
		s.smtp = lmtp.NewSMTP(backend, lmtp.Config{
			Hostname:        cfg.Server.Hostname,
			MaxMessageBytes: cfg.SMTP.MaxMessageBytes,
			MaxRecipients:   cfg.SMTP.MaxRecipients,
			MaxConnections:  cfg.SMTP.MaxConnections,
			ReadTimeout:     cfg.SMTP.ReadTimeout.Duration,
			WriteTimeout:    cfg.SMTP.WriteTimeout.Duration,
			TLSConfig:       smtpTLS,
			Logger:          logger.With("listener", "smtp"),
		})
	}
	if cfg.HTTP.Listen != "" {
		if err := s.listen(ctx, "http", cfg.HTTP.Listen); err != nil {
			return fail(err)
		}
		l := s.listeners["http"]
		s.webRefused = !isLoopback(l.Addr()) && httpTLS == nil && !cfg.HTTP.AllowInsecureWeb
		if s.webRefused {
			logger.Warn("http: the web client is not served over plain HTTP on a network address; "+
				"set http.tls_cert and http.tls_key (or http.allow_insecure_web = true on a network you trust)",
				"listen", l.Addr().String())
		}
		if cfg.HTTP.MaxConnections > 0 {
			l = newLimitListener(l, cfg.HTTP.MaxConnections)
		}
		if httpTLS != nil {
			l = tls.NewListener(l, httpTLS)
			s.httpTLS = true
		}
		s.listeners["http"] = l
		h := cfg.HTTP
		s.http = &http.Server{
			Handler:           s.httpHandler(),
			ReadHeaderTimeout: h.ReadHeaderTimeout.Duration,
			// SeXMAP sets its own, shorter deadline for each body; this
			// bounds any other request. No write timeout, since XMAP wait
			// holds a response for up to 2 minutes.
			ReadTimeout:    h.ReadHeaderTimeout.Duration + h.BodyTimeout.Duration,
			IdleTimeout:    h.IdleTimeout.Duration,
			MaxHeaderBytes: h.MaxHeaderBytes,
			ErrorLog:       slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		}
	}
	return s, nil
}

func loadTLS(cert, key, section string) (*tls.Config, error) {
	c, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		// The error names files, never key material.
		return nil, fmt.Errorf("%s.tls_cert/%s.tls_key: %w", section, section, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{c}, MinVersion: tls.VersionTLS12}, nil
}

func (s *Server) listen(ctx context.Context, name, addr string) error {
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("%s.listen %q: %w", name, addr, err)
	}
	s.listeners[name] = l
	return nil
}

func (s *Server) closeListeners() {
	for _, l := range s.listeners {
		l.Close()
	}
}

// Addr returns the bound address of a listener ("lmtp", "smtp", "http"), or "".
func (s *Server) Addr(name string) string {
	if l, ok := s.listeners[name]; ok {
		return l.Addr().String()
	}
	return ""
}

// Store exposes the storage, for tests and in-process tools.
func (s *Server) Store() *shard.Store { return s.store }

func (s *Server) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	s.access.sexmap.Register(mux)
	// The browser client, at "/": the least specific pattern, so everything above wins.
	// Off loopback without TLS its code and passphrase form could be replaced on the way,
	// so it is refused there (SeXMAP, for cmail, stays).
	if s.webRefused {
		mux.Handle("/", insecureWebRefusal())
	} else {
		mux.Handle("/", web.Handler())
	}
	var h http.Handler = securityHeaders(mux)
	if s.httpTLS {
		h = hsts(h)
	}
	if n := s.cfg.HTTP.MaxRequestsInFlight; n > 0 {
		h = limitInFlight(h, n, sexmap.NewRefusalLog(s.logger, time.Minute))
	}
	return h
}

// securityHeaders sets the headers every response carries. They are the strict defaults
// for answers that are never documents (SeXMAP, /healthz); the web client's handler
// replaces the Content-Security-Policy, framing and caching headers of its own files.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Cross-Origin-Resource-Policy", "same-origin")
		hd.Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

// Start serves on every bound listener in the background.
func (s *Server) Start() {
	run := func(name string, serve func(net.Listener) error) {
		l := s.listeners[name]
		s.logger.Info("listening", "listener", name, "addr", l.Addr().String())
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, lmtp.ErrServerClosed) {
				s.errc <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	s.access.start()
	run("lmtp", s.lmtp.Serve)
	if s.smtp != nil {
		run("smtp", s.smtp.Serve)
	}
	if s.http != nil {
		run("http", s.http.Serve)
	}
}

// Err reports a listener that stopped on its own.
func (s *Server) Err() <-chan error { return s.errc }

// Shutdown stops accepting, lets in-flight deliveries finish (bounded by
// ctx), then closes storage. Later calls return the first call's result.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdownOnce.Do(func() { s.shutdownErr = s.shutdown(ctx) })
	return s.shutdownErr
}

func (s *Server) shutdown(ctx context.Context) error {
	var errs []error
	var mu sync.Mutex
	var wg sync.WaitGroup
	stop := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("shutdown %s: %w", name, err))
				mu.Unlock()
			}
		}()
	}
	stop("lmtp", s.lmtp.Shutdown)
	if s.smtp != nil {
		stop("smtp", s.smtp.Shutdown)
	}
	if s.http != nil {
		stop("http", s.http.Shutdown)
	}
	wg.Wait()
	// A Serve goroutine that had not yet handed its listener to go-smtp when
	// Shutdown ran would block in Accept forever; closing is idempotent.
	s.closeListeners()
	s.wg.Wait()
	if err := s.access.close(); err != nil {
		errs = append(errs, fmt.Errorf("close outbound queue: %w", err))
	}
	if err := s.store.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close storage: %w", err))
	}
	return errors.Join(errs...)
}

// Run starts the server and blocks until ctx is cancelled (SIGTERM/SIGINT in
// the command), then shuts down gracefully.
func Run(ctx context.Context, cfg *Config, logger *slog.Logger) error {
	s, err := New(ctx, cfg, logger)
	if err != nil {
		return err
	}
	s.Start()
	logger.Info("cryptomail started", "domains", cfg.Server.Domains, "data_dir", cfg.Server.DataDir)
	var runErr error
	select {
	case <-ctx.Done():
		logger.Info("shutting down")
	case runErr = <-s.Err():
		logger.Error("listener failed, shutting down", "err", runErr)
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 60*time.Second)
	defer cancel()
	if err := s.Shutdown(sctx); err != nil {
		return errors.Join(runErr, err)
	}
	if runErr == nil {
		logger.Info("stopped")
	}
	return runErr
}
