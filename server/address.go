package server

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ErrBadAddress is returned for a syntactically invalid mail address.
var ErrBadAddress = errors.New("malformed address")

// ErrDomainNotServed is returned for an address outside [server] domains.
var ErrDomainNotServed = errors.New("domain not served here")

// NormalizeDomain lower-cases a domain and checks its syntax.
func NormalizeDomain(d string) (string, error) {
	d = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
	if d == "" || len(d) > 253 {
		return "", fmt.Errorf("%w: bad domain length", ErrBadAddress)
	}
	if !utf8.ValidString(d) {
		return "", fmt.Errorf("%w: domain is not valid UTF-8", ErrBadAddress)
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 || strings.HasPrefix(label, "-") || strings.HasSuffix(label, "-") {
			return "", fmt.Errorf("%w: bad domain label %q", ErrBadAddress, label)
		}
		for _, r := range label {
			if !(r == '-' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r > 127 && (unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r))) {
				return "", fmt.Errorf("%w: bad character in domain %q", ErrBadAddress, d)
			}
		}
	}
	return d, nil
}

// CanonicalAddress turns an address as written (possibly with +subaddress
// and mixed case) into the mailbox key used by the metabase: lower-case,
// without the +tag. Mailboxes here are case-insensitive.
func CanonicalAddress(addr string) (string, error) {
	addr = strings.TrimSpace(addr)
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 {
		return "", fmt.Errorf("%w: %q needs the form local@domain", ErrBadAddress, addr)
	}
	local, domain := addr[:at], addr[at+1:]
	if len(local) > 64 || !utf8.ValidString(local) {
		return "", fmt.Errorf("%w: bad local part", ErrBadAddress)
	}
	for _, r := range local {
		if r <= ' ' || r == 127 || strings.ContainsRune(`()<>[]\,;:@"`, r) {
			return "", fmt.Errorf("%w: character %q not allowed in local part", ErrBadAddress, r)
		}
	}
	if strings.HasPrefix(local, ".") || strings.HasSuffix(local, ".") || strings.Contains(local, "..") {
		return "", fmt.Errorf("%w: misplaced dot in local part", ErrBadAddress)
	}
	if i := strings.IndexByte(local, '+'); i >= 0 {
		local = local[:i]
		if local == "" {
			return "", fmt.Errorf("%w: empty local part before +", ErrBadAddress)
		}
	}
	d, err := NormalizeDomain(domain)
	if err != nil {
		return "", err
	}
	return strings.ToLower(local) + "@" + d, nil
}

// ServedAddress canonicalizes addr and checks that its domain is served.
func (c *Config) ServedAddress(addr string) (string, error) {
	canon, err := CanonicalAddress(addr)
	if err != nil {
		return "", err
	}
	if !slices.Contains(c.Server.Domains, canon[strings.LastIndexByte(canon, '@')+1:]) {
		return "", fmt.Errorf("%w: %s", ErrDomainNotServed, canon[strings.LastIndexByte(canon, '@')+1:])
	}
	return canon, nil
}
