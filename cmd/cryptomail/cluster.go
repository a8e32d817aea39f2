package main

import (
	"flag"
	"fmt"
	"io"
	"strings"

	"cryptomail/server/cluster"
)

// stringsFlag is a flag that may be given several times.
type stringsFlag []string

func (s *stringsFlag) String() string     { return strings.Join(*s, ",") }
func (s *stringsFlag) Set(v string) error { *s = append(*s, v); return nil }

// cmdClusterCerts makes the cluster CA (or reuses the one in -out) and a
// certificate and key per node, for [cluster] tls_ca, tls_cert and tls_key.
// It reads no config: it runs wherever the admin keeps the CA.
func cmdClusterCerts(args []string, stdout, stderr io.Writer) error {
	c := &command{fs: flag.NewFlagSet("cluster certs", flag.ContinueOnError), stderr: stderr}
	c.fs.SetOutput(stderr)
	out := c.fs.String("out", "", "directory of the CA and the node files (created if missing)")
	caDays := c.fs.Int("ca-days", cluster.DefaultCADays, "validity of a new CA, in days")
	days := c.fs.Int("days", cluster.DefaultNodeDays, "validity of the node certificates, in days")
	var sans stringsFlag
	c.fs.Var(&sans, "san", "extra DNS name or IP address for every node certificate (repeatable), e.g. the host of advertise")
	nodes, err := c.parse(args)
	if err != nil {
		return err
	}
	if *out == "" {
		return usagef("cluster certs: -out DIR is required")
	}
	if len(nodes) == 0 {
		return usagef("cluster certs: name at least one NODE")
	}
	if *caDays < 1 || *days < 1 {
		return usagef("cluster certs: --ca-days and --days must be at least 1")
	}
	res, err := cluster.MakeCerts(*out, nodes, cluster.CertOptions{CADays: *caDays, NodeDays: *days, SANs: sans})
	for _, p := range res.Written {
		fmt.Fprintf(stdout, "wrote %s\n", p)
	}
	if err != nil {
		return err
	}
	if res.CAReused {
		fmt.Fprintf(stdout, "used the existing CA in %s\n", *out)
	}
	return nil
}
