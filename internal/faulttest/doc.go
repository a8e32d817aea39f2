// Package faulttest holds CryptoMail's fault tests, run against the real
// cryptomail binary (built by the tests into a temp dir):
//
//   - TestCrash: a loader delivers over LMTP from parallel sessions while the
//     server is killed with SIGKILL at random moments and restarted; every
//     acknowledged message must then be stored exactly once and decrypt to
//     what was sent, nothing twice, and every SQLite file must pass
//     PRAGMA integrity_check. `go test` runs a short form; `make crashtest`
//     (go test -tags crashtest, or CRYPTOMAIL_CRASH_KILLS=N) the long one.
//   - TestDiskFull: a home on a size-limited tmpfs (needs root or
//     CAP_SYS_ADMIN; otherwise skipped, or failed under
//     CRYPTOMAIL_REQUIRE_TOOLS=1): deliveries get 452 4.3.1 once it is full,
//     nothing is corrupted, delivery resumes once space is freed.
//   - TestBadInput: malformed and hostile input over LMTP, SMTP and HTTP;
//     the server must answer each case with the right code and stay up. It
//     writes a Markdown report (case | sent | answer); with
//     `-args -report=FILE` also to FILE.
//
// The package has no non-test code: this file only documents it.
package faulttest
