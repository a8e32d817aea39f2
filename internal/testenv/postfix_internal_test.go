package testenv

import (
	"strings"
	"testing"
)

func TestStatSession(t *testing.T) {
	tests := []struct {
		stat      string
		wantSID   int
		wantState string
		wantOK    bool
	}{
		{"4242 (master) S 1 4242 4242 0 -1 4194560 ...", 4242, "S", true},
		// comm may hold spaces and parentheses; fields count from the last ')'.
		{"77 (a) b (c)) Z 1 70 71 0 -1", 71, "Z", true},
		{"77 (x) S 1 70", 0, "", false},
		{"garbage", 0, "", false},
		{"77 (x) S 1 70 notanumber", 0, "", false},
	}
	for _, tc := range tests {
		sid, state, ok := statSession([]byte(tc.stat))
		if sid != tc.wantSID || state != tc.wantState || ok != tc.wantOK {
			t.Errorf("statSession(%q) = %d, %q, %v; want %d, %q, %v", tc.stat, sid, state, ok, tc.wantSID, tc.wantState, tc.wantOK)
		}
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name        string
		opts        PostfixOptions
		wantNexthop string
		wantIPv6    bool
		wantErr     string
	}{
		{name: "ipv4", opts: PostfixOptions{Domains: []string{"example.test"}, LMTPAddr: "127.0.0.1:2424"}, wantNexthop: "inet:127.0.0.1:2424"},
		{name: "ipv6", opts: PostfixOptions{Domains: []string{"example.test"}, LMTPAddr: "[::1]:2424"}, wantNexthop: "inet:[::1]:2424", wantIPv6: true},
		{name: "hostname", opts: PostfixOptions{Domains: []string{"a.test", "b.test"}, LMTPAddr: "localhost:24"}, wantNexthop: "inet:localhost:24"},
		{name: "no domains", opts: PostfixOptions{LMTPAddr: "127.0.0.1:24"}, wantErr: "Domains is empty"},
		{name: "bad domain", opts: PostfixOptions{Domains: []string{"a.test, evil"}, LMTPAddr: "127.0.0.1:24"}, wantErr: "invalid domain"},
		{name: "no port", opts: PostfixOptions{Domains: []string{"a.test"}, LMTPAddr: "127.0.0.1"}, wantErr: "LMTPAddr"},
		{name: "port zero", opts: PostfixOptions{Domains: []string{"a.test"}, LMTPAddr: "127.0.0.1:0"}, wantErr: "bad port"},
		{name: "param injection", opts: PostfixOptions{Domains: []string{"a.test"}, LMTPAddr: "127.0.0.1:24", MainCF: map[string]string{"x": "1\nrelayhost = evil"}}, wantErr: "spans lines"},
		{name: "bad param name", opts: PostfixOptions{Domains: []string{"a.test"}, LMTPAddr: "127.0.0.1:24", MainCF: map[string]string{"a = b": "1"}}, wantErr: "invalid parameter name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			nexthop, ipv6, err := tc.opts.validate()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || nexthop != tc.wantNexthop || ipv6 != tc.wantIPv6 {
				t.Fatalf("= %q, %v, %v; want %q, %v", nexthop, ipv6, err, tc.wantNexthop, tc.wantIPv6)
			}
		})
	}
}

func TestMainCFOverrides(t *testing.T) {
	defaults := map[string]string{"command_directory": "/usr/sbin", "daemon_directory": "/usr/lib/postfix/sbin",
		"meta_directory": "/etc/postfix", "mail_owner": "postfix", "setgid_group": "postdrop"}
	got := mainCF(defaults, mainCFInput{queueDir: "/q", dataDir: "/d", logFile: "/l/maillog", logPrefix: "/l",
		domains: []string{"a.test", "b.test"}, nexthop: "inet:127.0.0.1:24", compat: "3.6"},
		map[string]string{"message_size_limit": "1000", "queue_run_delay": "5s"})
	for _, line := range []string{
		"virtual_mailbox_domains = a.test, b.test\n",
		"virtual_transport = lmtp:inet:127.0.0.1:24\n",
		"queue_run_delay = 5s\n",
		"message_size_limit = 1000\n",
		"mydestination = \n",
	} {
		if !strings.Contains(got, line) {
			t.Errorf("main.cf lacks %q:\n%s", line, got)
		}
	}
	if n := strings.Count(got, "queue_run_delay ="); n != 1 {
		t.Errorf("queue_run_delay set %d times, want once (override replaces)", n)
	}
}
