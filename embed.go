// Package cryptomail holds files embedded into the binary from the repository root.
package cryptomail

import _ "embed"

// DefaultConfig is config.example.toml, used when no -config is given.
//
//go:embed config.example.toml
var DefaultConfig []byte
