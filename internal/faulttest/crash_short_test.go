//go:build !crashtest

package faulttest

// longCrash selects the long crash test; `go test -tags crashtest` (make
// crashtest) sets it.
const longCrash = false
