// Package cluster holds what the nodes of a CryptoMail cluster share apart
// from the MetaBase (shard/etcddir): the node identity and the mutual TLS of
// the internal listener, and the helper that makes its certificates.
//
// It depends on nothing else in the project but internal/atomicfile, so that
// server (the [cluster] config and, later, the internal listener and its
// client) can import it without a cycle, and so that crypto/x509 stays out of
// the config parser.
package cluster
