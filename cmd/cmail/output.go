package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"cryptomail/client"
	"cryptomail/xmap"
)

// JSON shapes of the listing commands: arrays of objects, each with an "id".

type folderJSON struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Role   string `json:"role,omitempty"`
	Total  int    `json:"total"`
	Unseen int    `json:"unseen"`
}

type messageRowJSON struct {
	ID             string    `json:"id"`
	FolderID       string    `json:"folder_id"`
	Flags          []string  `json:"flags"`
	Size           int64     `json:"size"`
	Received       time.Time `json:"received"`
	From           string    `json:"from"`
	To             []string  `json:"to"`
	Cc             []string  `json:"cc"`
	Subject        string    `json:"subject"`
	Date           string    `json:"date,omitempty"`
	MessageID      string    `json:"message_id,omitempty"`
	Snippet        string    `json:"snippet"`
	HasAttachments bool      `json:"has_attachments"`
	// SummaryBy is who wrote the summary (server, sender, owner); SummaryUnverified
	// is true when it is only the sender's word (docs/XMAP.md, "Summary origin").
	SummaryBy         string `json:"summary_by,omitempty"`
	SummaryUnverified bool   `json:"summary_unverified"`
	Error             string `json:"error,omitempty"` // why the summary could not be read
}

type attachmentJSON struct {
	Filename    string `json:"filename"`
	ContentType string `json:"content_type"`
	Size        int    `json:"size"`
}

type messageOutJSON struct {
	ID          string           `json:"id"`
	FolderID    string           `json:"folder_id"`
	Flags       []string         `json:"flags"`
	Received    time.Time        `json:"received"`
	From        string           `json:"from"`
	To          []string         `json:"to"`
	Cc          []string         `json:"cc"`
	Subject     string           `json:"subject"`
	Date        string           `json:"date,omitempty"`
	MessageID   string           `json:"message_id,omitempty"`
	Text        string           `json:"text"`
	HTML        string           `json:"html,omitempty"`
	Attachments []attachmentJSON `json:"attachments"`
	Encrypted   bool             `json:"encrypted"`
	Signature   struct {
		Status        string `json:"status"`
		Signer        string `json:"signer,omitempty"`
		SignerAddress string `json:"signer_address,omitempty"`
		Reason        string `json:"reason,omitempty"`
	} `json:"signature"`
}

func flagStrings(fs []xmap.Flag) []string {
	out := make([]string, 0, len(fs))
	for _, f := range fs {
		out = append(out, string(f))
	}
	return out
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func dateString(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Format(time.RFC3339)
}

func foldersJSON(fs []xmap.Folder) []folderJSON {
	out := make([]folderJSON, 0, len(fs))
	for _, f := range fs {
		out = append(out, folderJSON{ID: f.ID, Name: f.Name, Role: string(f.Role), Total: f.Total, Unseen: f.Unseen})
	}
	return out
}

func listedJSON(ms []client.Listed) []messageRowJSON {
	out := make([]messageRowJSON, 0, len(ms))
	for _, m := range ms {
		r := messageRowJSON{ID: m.ID, FolderID: m.FolderID, Flags: flagStrings(m.Flags), Size: m.Size, Received: m.Received,
			To: []string{}, Cc: []string{}}
		if sm := m.Summary; sm != nil {
			r.From, r.To, r.Cc, r.Subject = sm.From, orEmpty(sm.To), orEmpty(sm.Cc), sm.Subject
			r.Date, r.MessageID, r.Snippet, r.HasAttachments = dateString(sm.Date), sm.MessageID, sm.Snippet, sm.HasAttachments
		}
		r.SummaryBy, r.SummaryUnverified = string(m.SummaryBy), m.SummaryUnverified()
		if m.SummaryErr != nil {
			r.Error = m.SummaryErr.Error()
		}
		out = append(out, r)
	}
	return out
}

func messageJSON(m *client.Message) messageOutJSON {
	j := messageOutJSON{ID: m.ID, FolderID: m.FolderID, Flags: flagStrings(m.Flags), Received: m.Received,
		From: m.From, To: orEmpty(m.To), Cc: orEmpty(m.Cc), Subject: m.Subject, Date: dateString(m.Date),
		MessageID: m.MessageID, Text: m.Text, HTML: m.HTML, Attachments: []attachmentJSON{}, Encrypted: m.Encrypted}
	for _, a := range m.Attachments {
		j.Attachments = append(j.Attachments, attachmentJSON{Filename: a.Filename, ContentType: a.ContentType, Size: len(a.Data)})
	}
	j.Signature.Status, j.Signature.Signer, j.Signature.Reason = string(m.Signature.Status), m.Signature.Signer, m.Signature.Reason
	j.Signature.SignerAddress = m.Signature.SignerAddress
	return j
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func writeJSONLine(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// clean makes text from a message safe for a terminal: no control characters (escape
// sequences from a hostile sender), white space collapsed.
func clean(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > max {
		s = string(r[:max-1]) + "…"
	}
	return s
}

// cleanBody keeps line breaks and tabs but drops other control characters.
func cleanBody(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\t' {
			return r
		}
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, s)
}

func printFolders(w io.Writer, fs []xmap.Folder) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "FOLDER\tTOTAL\tUNSEEN\t")
	for _, f := range fs {
		fmt.Fprintf(tw, "%s\t%d\t%d\t\n", clean(f.Name, 60), f.Total, f.Unseen)
	}
	return tw.Flush()
}

// marks is a message's flags in two characters: N (not seen) or space, then F (flagged),
// A (answered) or space; and @ when it has attachments.
func marks(l client.Listed) string {
	seen, flagged, answered := false, false, false
	for _, f := range l.Flags {
		switch f {
		case xmap.FlagSeen:
			seen = true
		case xmap.FlagFlagged:
			flagged = true
		case xmap.FlagAnswered:
			answered = true
		}
	}
	b := []byte("   ")
	if !seen {
		b[0] = 'N'
	}
	if flagged {
		b[1] = 'F'
	} else if answered {
		b[1] = 'A'
	}
	if l.Summary != nil && l.Summary.HasAttachments {
		b[2] = '@'
	}
	return string(b)
}

func row(l client.Listed) (date, from, subject string) {
	date = l.Received.Local().Format("2006-01-02 15:04")
	if l.Summary == nil {
		if l.SummaryErr != nil {
			return date, "?", "(summary unreadable)"
		}
		return date, "?", "(no summary)"
	}
	if !l.Summary.Date.IsZero() {
		date = l.Summary.Date.Local().Format("2006-01-02 15:04")
	}
	from = clean(l.Summary.From, 30)
	if l.SummaryUnverified() {
		// Another user wrote this line: it is their word until "cmail read" checks it.
		from = "(unverified) " + from
	}
	return date, from, clean(l.Summary.Subject, 70)
}

func printListed(w io.Writer, ms []client.Listed) error {
	if len(ms) == 0 {
		_, err := fmt.Fprintln(w, "no messages")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\t\tDATE\tFROM\tSUBJECT")
	for _, l := range ms {
		date, from, subject := row(l)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", l.ID, marks(l), date, from, subject)
	}
	return tw.Flush()
}

func printListedRow(w io.Writer, l client.Listed) error {
	date, from, subject := row(l)
	_, err := fmt.Fprintf(w, "%s  %s  %s  %s  %s\n", l.ID, marks(l), date, from, subject)
	return err
}

func printMessage(w io.Writer, m *client.Message) error {
	p := func(k, v string) {
		if v != "" {
			fmt.Fprintf(w, "%-10s %s\n", k+":", clean(v, 1000))
		}
	}
	p("From", m.From)
	p("To", strings.Join(m.To, ", "))
	p("Cc", strings.Join(m.Cc, ", "))
	if !m.Date.IsZero() {
		p("Date", m.Date.Format(time.RFC1123Z))
	}
	p("Subject", m.Subject)
	by := m.Signature.Signer
	if m.Signature.SignerAddress != "" {
		by = m.Signature.SignerAddress + " (key " + m.Signature.Signer + ")"
	}
	switch m.Signature.Status {
	case client.SignatureVerified:
		if m.Signature.Reason != "" {
			p("Signature", "good, by "+by+"; note: "+m.Signature.Reason)
		} else {
			p("Signature", "good, by "+by)
		}
	case client.SignatureOtherSigner:
		// The From above is not who signed: say it where the eye lands.
		p("Signature", "NOT BY THE SENDER SHOWN: "+m.Signature.Reason+" (key "+m.Signature.Signer+")")
	case client.SignatureUnknownKey:
		p("Signature", "by unknown key "+m.Signature.Signer+" (not checked)")
	case client.SignatureBad:
		p("Signature", "BAD: "+m.Signature.Reason+" (key "+by+")")
	default:
		if m.Encrypted {
			p("Signature", "none")
		}
	}
	if m.Encrypted {
		p("Security", "end-to-end encrypted")
	} else {
		p("Security", "not end-to-end encrypted (encrypted by the server on arrival)")
	}
	for _, a := range m.Attachments {
		name := a.Filename
		if name == "" {
			name = "(unnamed)"
		}
		p("Attached", fmt.Sprintf("%s (%s, %d bytes)", name, a.ContentType, len(a.Data)))
	}
	fmt.Fprintln(w)
	text := m.Text
	if text == "" && m.HTML != "" {
		text = m.HTML
	}
	body := cleanBody(text)
	if !strings.HasSuffix(body, "\n") {
		body += "\n"
	}
	_, err := io.WriteString(w, body)
	return err
}
