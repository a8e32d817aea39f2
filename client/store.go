package client

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"cryptomail/internal/atomicfile"
	"cryptomail/xmap/sexmap"
)

// Files in the client home.
const (
	// PinFile holds the pinned server keys, one "URL KEY" line per server, like ssh's
	// known_hosts: deleting a line resets that server's pin.
	PinFile = "known_servers"
	// StateFile holds, per server, the address last logged in.
	StateFile = "state.json"
	lockFile  = ".lock"
)

const pinFileHeader = "# cmail: pinned SeXMAP server keys, one \"URL KEY\" per line. Delete a line to re-pin that server.\n"

// store keeps the client's state: in the home directory, or in memory when there is none.
// Every read-modify-write of the files happens under an exclusive lock on .lock, so
// concurrent cmail processes sharing a home do not lose each other's updates.
type store struct {
	dir string

	mu    sync.Mutex // for the in-memory state, and to serialize this process's writers
	pins  map[string][]byte
	state stateFile
}

type stateFile struct {
	Version int                     `json:"version"`
	Servers map[string]*serverState `json:"servers,omitempty"`
}

type serverState struct {
	// Current is the address last logged in (cmail login), "" after logout.
	Current string `json:"current,omitempty"`
	// Devices holds, per lower-cased address, the device token the server issued after a
	// login (base64url). It lets a correct login from this client pass a lock-out of the
	// address caused by others' failed attempts; alone it opens nothing (docs/CLIENT.md).
	Devices map[string]string `json:"devices,omitempty"`
}

const stateVersion = 1

func newStore(dir string) (*store, error) {
	s := &store{dir: dir, pins: map[string][]byte{}, state: stateFile{Version: stateVersion}}
	if dir == "" {
		return s, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("client home: %w", err)
	}
	// A home made by hand may be too open; it says which servers and accounts one uses.
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("client home: %w", err)
	}
	return s, nil
}

func (s *store) path(name string) string { return filepath.Join(s.dir, name) }

// locked runs fn with the home locked and the files loaded into s.pins and s.state; if fn
// changed them (dirty), they are written back before the lock is released.
func (s *store) locked(fn func() (dirty bool, err error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dir == "" {
		_, err := fn()
		return err
	}
	unlock, err := lockPath(s.path(lockFile))
	if err != nil {
		return fmt.Errorf("client home: lock: %w", err)
	}
	defer unlock()
	if err := s.load(); err != nil {
		return err
	}
	dirty, err := fn()
	if err != nil || !dirty {
		return err
	}
	return s.save()
}

func (s *store) load() error {
	s.pins = map[string][]byte{}
	data, err := os.ReadFile(s.path(PinFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("client home: %w", err)
	default:
		sc := bufio.NewScanner(bytes.NewReader(data))
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			url, key, ok := strings.Cut(line, " ")
			pub, err := sexmap.DecodePublicKey(key)
			if !ok || err != nil {
				return fmt.Errorf("client home: %s line %d: want \"URL KEY\"", s.path(PinFile), n)
			}
			s.pins[url] = pub
		}
	}
	s.state = stateFile{Version: stateVersion}
	data, err = os.ReadFile(s.path(StateFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("client home: %w", err)
	default:
		if err := json.Unmarshal(data, &s.state); err != nil {
			return fmt.Errorf("client home: %s: %w", s.path(StateFile), err)
		}
		if s.state.Version != stateVersion {
			return fmt.Errorf("client home: %s has version %d, this cmail knows %d", s.path(StateFile), s.state.Version, stateVersion)
		}
	}
	return nil
}

func (s *store) save() error {
	var pins bytes.Buffer
	pins.WriteString(pinFileHeader)
	urls := make([]string, 0, len(s.pins))
	for u := range s.pins {
		urls = append(urls, u)
	}
	sort.Strings(urls)
	for _, u := range urls {
		fmt.Fprintf(&pins, "%s %s\n", u, sexmap.EncodePublicKey(s.pins[u]))
	}
	if err := writeFileAtomic(s.path(PinFile), pins.Bytes()); err != nil {
		return err
	}
	data, err := json.MarshalIndent(&s.state, "", "  ")
	if err != nil {
		return fmt.Errorf("client home: %w", err)
	}
	return writeFileAtomic(s.path(StateFile), append(data, '\n'))
}

// writeFileAtomic replaces path with data (mode 0600) so that a crash leaves either the
// old or the new file, never a torn one (a torn pin file would refuse every server).
func writeFileAtomic(path string, data []byte) error {
	if err := atomicfile.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("client home: %w", err)
	}
	return nil
}

// pin returns the pinned key of a server, or nil.
func (s *store) pin(server string) ([]byte, error) {
	var key []byte
	err := s.locked(func() (bool, error) {
		key = s.pins[server]
		return false, nil
	})
	return key, err
}

// setPin pins key for server unless a key is already pinned, and returns the pinned key:
// two processes pinning at once agree on the first one.
func (s *store) setPin(server string, key []byte) ([]byte, error) {
	var pinned []byte
	err := s.locked(func() (bool, error) {
		if old := s.pins[server]; old != nil {
			pinned = old
			return false, nil
		}
		s.pins[server] = bytes.Clone(key)
		pinned = key
		return true, nil
	})
	return pinned, err
}

func (s *store) resetPin(server string) error {
	return s.locked(func() (bool, error) {
		if _, ok := s.pins[server]; !ok {
			return false, nil
		}
		delete(s.pins, server)
		return true, nil
	})
}

func (s *store) server(server string) *serverState {
	if s.state.Servers == nil {
		s.state.Servers = map[string]*serverState{}
	}
	st := s.state.Servers[server]
	if st == nil {
		st = &serverState{}
		s.state.Servers[server] = st
	}
	return st
}

func (s *store) current(server string) (string, error) {
	var addr string
	err := s.locked(func() (bool, error) {
		if st := s.state.Servers[server]; st != nil {
			addr = st.Current
		}
		return false, nil
	})
	return addr, err
}

func (s *store) setCurrent(server, address string) error {
	return s.locked(func() (bool, error) {
		st := s.server(server)
		if st.Current == address {
			return false, nil
		}
		st.Current = address
		return true, nil
	})
}

// deviceToken returns the device token kept for address at server, or nil.
func (s *store) deviceToken(server, address string) ([]byte, error) {
	var token []byte
	err := s.locked(func() (bool, error) {
		if st := s.state.Servers[server]; st != nil {
			if t, err := base64.RawURLEncoding.DecodeString(st.Devices[asciiLower(address)]); err == nil && len(t) == sexmap.DeviceTokenSize {
				token = t
			}
		}
		return false, nil
	})
	return token, err
}

// setDeviceToken keeps token for address at server; nil forgets it.
func (s *store) setDeviceToken(server, address string, token []byte) error {
	return s.locked(func() (bool, error) {
		st := s.server(server)
		key := asciiLower(address)
		if token == nil {
			if _, ok := st.Devices[key]; !ok {
				return false, nil
			}
			delete(st.Devices, key)
			return true, nil
		}
		if st.Devices == nil {
			st.Devices = map[string]string{}
		}
		st.Devices[key] = base64.RawURLEncoding.EncodeToString(token)
		return true, nil
	})
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
