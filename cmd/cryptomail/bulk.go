package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	cmcrypto "cryptomail/crypto"
	"cryptomail/server"
	"cryptomail/shard"
)

// maxBulkInput bounds a --from-file keyring: a million typical keys.
const maxBulkInput = 1 << 30

// OpenPGP packet tags that start a new key in a keyring (RFC 9580, 5.5).
const (
	tagSecretKey = 5
	tagPublicKey = 6
)

// userAdd routes `user add`: with --from-file to the bulk path, otherwise to
// the one-user command.
func userAdd(args []string, stdout, stderr io.Writer) error {
	for _, a := range args {
		if a == "--" {
			break
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if strings.HasPrefix(a, "-") && name == "from-file" {
			return cmdUserAddBulk(args, stdout, stderr)
		}
	}
	return cmdUserAdd(args, stdout, stderr)
}

// bulkKey is one validated key of a --from-file keyring.
type bulkKey struct {
	address string
	armored []byte
}

// cmdUserAddBulk registers every key of a keyring (what `gpg --export` writes,
// armored or binary, any number of keys and blocks) under the one address in a
// served domain that each key's user IDs name. Every key is validated first,
// as `user add --public-key` does; if any is refused, nobody is added.
func cmdUserAddBulk(args []string, stdout, stderr io.Writer) error {
	c := newCommand("user add", stderr)
	file := c.fs.String("from-file", "", "keyring of public keys, armored or binary (\"-\" for stdin)")
	skip := c.fs.Bool("skip-existing", false, "leave users that already exist alone instead of failing")
	verbose := c.fs.Bool("v", false, "print a line for every user added")
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usagef("user add --from-file: the addresses come from the keys' user IDs; unexpected argument %q", pos[0])
	}
	if *file == "" {
		return usagef("user add: --from-file needs a file")
	}
	cfg, err := c.loadConfig()
	if err != nil {
		return err
	}
	var in io.Reader = os.Stdin
	if *file != "-" {
		f, err := os.Open(*file)
		if err != nil {
			return fmt.Errorf("read keyring: %w", err)
		}
		defer f.Close()
		in = f
	}
	keys, err := readBulkKeys(cfg, in, time.Now(), stderr)
	if err != nil {
		return err
	}

	ctx := context.Background()
	st, err := c.openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	start := time.Now()
	var added, existed int
	for _, k := range keys {
		u, err := st.CreateUser(ctx, k.address, k.armored)
		switch {
		case errors.Is(err, shard.ErrExists) && *skip:
			existed++
			continue
		case errors.Is(err, shard.ErrExists):
			return fmt.Errorf("user %s already exists (added %d before it; --skip-existing leaves existing users alone)", k.address, added)
		case err != nil:
			return fmt.Errorf("add user %s: %w (added %d before it)", k.address, err, added)
		}
		added++
		if *verbose {
			fmt.Fprintf(stdout, "added %s on home %s (%s)\n", u.Address, u.HomeID, u.Home)
		}
	}
	fmt.Fprintf(stdout, "added %d users (%d already existed) in %s\n", added, existed, time.Since(start).Round(time.Millisecond))
	return nil
}

// readBulkKeys splits a keyring into keys, validates each with the same rules
// as a single `user add`, and picks each key's address. Every refusal is
// written to stderr; any refusal fails the whole file.
func readBulkKeys(cfg *server.Config, in io.Reader, now time.Time, stderr io.Writer) ([]bulkKey, error) {
	var keys []bulkKey
	seen := map[string]int{}
	refused := 0
	n := 0
	err := splitKeyring(io.LimitReader(in, maxBulkInput+1), func(bin []byte) {
		n++
		addr, armored, err := bulkKey1(cfg, bin, now)
		if err == nil {
			if first, dup := seen[addr]; dup {
				err = fmt.Errorf("%s is named by key %d too", addr, first)
			}
		}
		if err != nil {
			refused++
			fmt.Fprintf(stderr, "cryptomail: key %d refused: %s\n", n, err)
			return
		}
		seen[addr] = n
		keys = append(keys, bulkKey{addr, armored})
	})
	if err != nil {
		return nil, fmt.Errorf("read keyring (after %d keys): %w", n, err)
	}
	if refused > 0 {
		return nil, fmt.Errorf("%d of %d keys refused; nobody was added", refused, n)
	}
	if n == 0 {
		return nil, errors.New("read keyring: no OpenPGP key found")
	}
	return keys, nil
}

// bulkKey1 validates one key and returns the served address it names.
func bulkKey1(cfg *server.Config, bin []byte, now time.Time) (string, []byte, error) {
	key, err := cmcrypto.ParsePublicKey(bin, now)
	if err != nil {
		return "", nil, err
	}
	var served []string
	for _, e := range key.Emails() {
		if addr, err := accountAddress(cfg, e); err == nil {
			served = append(served, addr)
		}
	}
	switch len(served) {
	case 0:
		return "", nil, fmt.Errorf("key %s names no address in a served domain (%s); add it with --public-key and an ADDRESS",
			key.Fingerprint(), strings.Join(key.Emails(), ", "))
	case 1:
	default:
		return "", nil, fmt.Errorf("key %s names %d served addresses (%s); add it with --public-key and one ADDRESS",
			key.Fingerprint(), len(served), strings.Join(served, ", "))
	}
	armored, err := key.Armored()
	if err != nil {
		return "", nil, err
	}
	return served[0], armored, nil
}

// splitKeyring calls fn with the binary packets of each key in r: binary data,
// or armor holding one or more "PGP PUBLIC KEY BLOCK"s. A key starts at each
// primary key packet; a secret key starts one too, so that ParsePublicKey
// refuses it rather than have it silently dropped.
func splitKeyring(r io.Reader, fn func(bin []byte)) error {
	br := bufio.NewReaderSize(r, 64<<10)
	first, err := firstByte(br)
	if err == io.EOF {
		return nil
	}
	if err != nil {
		return err
	}
	if first&0x80 != 0 { // a packet header: binary keyring
		return splitPackets(br, fn)
	}
	blocks := 0
	for {
		// armor.Decode reuses br (a bufio.Reader of at least its size), so
		// consecutive blocks are read in turn.
		b, err := armor.Decode(br)
		if err == io.EOF {
			if blocks == 0 {
				return errors.New("no armored block and no binary key found")
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("armor block %d: %w", blocks+1, err)
		}
		blocks++
		if b.Type != openpgp.PublicKeyType {
			// Never decode a private key block: its content must not be handled.
			return fmt.Errorf("armor block %d is a %q block, not a public key block", blocks, clipText(b.Type, 40))
		}
		if err := splitPackets(b.Body, fn); err != nil {
			return fmt.Errorf("armor block %d: %w", blocks, err)
		}
	}
}

func firstByte(br *bufio.Reader) (byte, error) {
	for {
		c, err := br.ReadByte()
		if err != nil {
			return 0, err
		}
		if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			return c, br.UnreadByte()
		}
	}
}

// splitPackets groups a packet stream into keys without parsing key material.
func splitPackets(r io.Reader, fn func(bin []byte)) error {
	or := packet.NewOpaqueReader(r)
	var cur bytes.Buffer
	flush := func() {
		if cur.Len() > 0 {
			fn(bytes.Clone(cur.Bytes()))
			cur.Reset()
		}
	}
	for {
		p, err := or.Next()
		if err == io.EOF {
			flush()
			return nil
		}
		if err != nil {
			return fmt.Errorf("malformed OpenPGP packet data: %w", err)
		}
		if p.Tag == tagPublicKey || p.Tag == tagSecretKey {
			flush()
		} else if cur.Len() == 0 {
			return fmt.Errorf("packet of type %d before any key", p.Tag)
		}
		if cur.Len() > cmcrypto.MaxKeySize {
			// ParsePublicKey refuses it anyway; stop buffering now.
			continue
		}
		if err := p.Serialize(&cur); err != nil {
			return err
		}
	}
}

func clipText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "..."
}
