package main

import (
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/vouch-attest/vouch/eventlog"
)

// showEvent is one event as -o json and -o yaml print it.
type showEvent struct {
	Number  int                `json:"number"`
	Offset  int                `json:"offset"`
	PCR     uint32             `json:"pcr"`
	Type    eventlog.EventType `json:"type"`
	Digests map[string]string  `json:"digests"`
	Size    int                `json:"data_size"`
	Data    string             `json:"data,omitempty"`
	Kind    string             `json:"kind"`
	Decoded eventlog.EventData `json:"decoded,omitempty"`
	// DecodedOmitted is the reason Decoded is missing for a large event.
	DecodedOmitted string `json:"decoded_omitted,omitempty"`
	Summary        string `json:"summary"`
}

// maxShownData bounds the raw data printed per event in JSON and YAML.
const maxShownData = 1024

// maxShownDecoded bounds the data size of an event whose full decoding
// JSON and YAML print. The largest real events, dbx updates and db
// variables with several certificates, are tens of KiB. The decoding of a
// larger event, such as millions of signature list entries, would print
// ten times its size and hold it in memory.
const maxShownDecoded = 256 << 10

// maxShownDecodedTotal bounds the event data whose full decoding JSON and
// YAML print for a whole log, so that many events just under
// maxShownDecoded cannot make the output ten times the log either. Real
// logs hold tens to hundreds of KiB of event data.
const maxShownDecodedTotal = 4 << 20

// writeShow prints a log in the format. Events are decoded and written one
// at a time, so memory use stays close to that of the parsed log however
// many events it has.
func writeShow(w io.Writer, format string, log *eventlog.Log) error {
	findings := eventlog.Check(log)
	if findings == nil {
		findings = []eventlog.Finding{}
	}
	// A replay error (an event for a PCR index out of range) stops every
	// verification of the log, so show names it next to the findings.
	var replayError string
	if _, err := eventlog.Replay(log); err != nil {
		replayError = err.Error()
	}
	if format == "table" {
		return writeShowTable(w, log, findings, replayError)
	}

	members := []member{{key: "format", value: log.Format}, {key: "banks", value: log.Banks}}
	if log.Padding > 0 {
		members = append(members, member{key: "padding", value: log.Padding})
	}
	members = append(members, member{key: "events", list: func(yield func(any) bool) {
		budget := maxShownDecodedTotal
		for i := range log.Events {
			if !yield(showEventOf(&log.Events[i], &budget)) {
				return
			}
		}
	}})
	members = append(members, member{key: "findings", value: findings})
	if replayError != "" {
		members = append(members, member{key: "replay_error", value: replayError})
	}
	return writeStreamed(w, format, members)
}

// showEventOf returns the event as JSON and YAML print it. budget is the
// event data left whose full decoding may be printed; the event's data
// size is taken from it when its decoding is printed.
func showEventOf(e *eventlog.Event, budget *int) showEvent {
	d := e.Decode()
	se := showEvent{Number: e.Number, Offset: e.Offset, PCR: e.PCR, Type: e.Type, Size: len(e.Data),
		Digests: make(map[string]string, len(e.Digests)), Kind: d.Kind(), Summary: summarize(e, d)}
	for _, dg := range e.Digests {
		se.Digests[dg.Alg.String()] = hex.EncodeToString(dg.Value)
	}
	if len(e.Data) <= maxShownData {
		se.Data = hex.EncodeToString(e.Data)
	}
	_, opaque := d.(*eventlog.Opaque)
	switch {
	case opaque:
	case len(e.Data) > maxShownDecoded:
		se.DecodedOmitted = fmt.Sprintf("event data of %d bytes is larger than %d KiB: the summary describes it", len(e.Data), maxShownDecoded>>10)
	case len(e.Data) > *budget:
		se.DecodedOmitted = fmt.Sprintf("the events before this one printed the full decoding of %d MiB of event data, the limit per log: the summary describes it", maxShownDecodedTotal>>20)
	default:
		*budget -= len(e.Data)
		se.Decoded = d
	}
	return se
}

// summarize returns a one-line description of an event for the table,
// or the data size when the decoded data has nothing to show.
func summarize(e *eventlog.Event, decoded eventlog.EventData) string {
	if s := summarizeDecoded(decoded); s != "" {
		return s
	}
	return fmt.Sprintf("%d bytes", len(e.Data))
}

func summarizeDecoded(decoded eventlog.EventData) string {
	switch d := decoded.(type) {
	case *eventlog.SpecIDEvent:
		var algs []string
		for _, a := range d.Algorithms {
			algs = append(algs, a.Alg.String())
		}
		return fmt.Sprintf("Spec ID Event03, spec %d.%d, banks %s", d.VersionMajor, d.VersionMinor, strings.Join(algs, ","))
	case *eventlog.StartupLocality:
		return fmt.Sprintf("StartupLocality %d", d.Locality)
	case *eventlog.NoAction:
		return d.Signature
	case *eventlog.Separator:
		switch {
		case d.Error:
			return fmt.Sprintf("separator 0x%08x (error)", d.Value)
		case d.Value != 0:
			return fmt.Sprintf("separator 0x%08x", d.Value)
		}
		return "separator"
	case *eventlog.Action:
		return d.Text
	case *eventlog.IPL:
		return d.Text
	case *eventlog.Text:
		return d.Text
	case *eventlog.HCRTM:
		return d.Text
	case *eventlog.SCRTMVersion:
		switch {
		case d.GUID != nil:
			return "version GUID " + d.GUID.String()
		case d.Version == "":
			// OVMF logs a UTF-16 string of only the terminating NUL.
			return "empty version string"
		}
		return d.Version
	case *eventlog.FirmwareBlob:
		return strings.TrimSpace(fmt.Sprintf("%s base 0x%x length 0x%x", d.Description, d.Base, d.Length))
	case *eventlog.HandoffTables:
		var tables []string
		for _, t := range d.Tables {
			tables = append(tables, t.VendorGUID.String())
		}
		return strings.TrimSpace(d.Description + " " + strings.Join(tables, ","))
	case *eventlog.GPT:
		return fmt.Sprintf("GPT disk %s, %d partitions", d.DiskGUID, len(d.Partitions))
	case *eventlog.ImageLoad:
		if f := d.DevicePath.File(); f != "" {
			return f
		}
		if p := d.DevicePath.String(); p != "" {
			return p
		}
		// Firmware logs no device path for an image that LoadImage
		// read from a memory buffer, as shim does for the kernel
		// that GRUB hands it.
		return fmt.Sprintf("image of %d bytes at 0x%x, no device path (loaded from memory)", d.LengthInMemory, d.LocationInMemory)
	case *eventlog.EFIVariable:
		return summarizeVariable(d)
	case *eventlog.Opaque:
		if d.Reason != "" {
			return "undecoded: " + d.Reason
		}
	}
	return ""
}

func summarizeVariable(v *eventlog.EFIVariable) string {
	s := v.Name
	switch {
	case v.Enabled != nil:
		s += fmt.Sprintf(" = %t", *v.Enabled)
	case v.SignatureLists != nil:
		n := 0
		for _, l := range v.SignatureLists {
			n += len(l.Signatures)
		}
		s += fmt.Sprintf(": %d signature lists, %d entries", len(v.SignatureLists), n)
	case v.Authority != nil && v.Authority.NoOwner:
		s += fmt.Sprintf(": authority X.509 certificate of %d bytes, logged without an owner GUID", len(v.Authority.Data))
	case v.Authority != nil:
		kind := "not a certificate"
		if v.Authority.X509 {
			kind = "X.509 certificate"
		}
		s += fmt.Sprintf(": authority owned by %s (%s, %d bytes)", v.Authority.Owner, kind, len(v.Authority.Data))
	case v.LoadOption != nil:
		s += fmt.Sprintf(": %q %s", v.LoadOption.Description, v.LoadOption.DevicePath)
	case v.BootOrder != nil:
		s += fmt.Sprintf(" = %04X", v.BootOrder)
	case v.Text != "":
		s += ": " + strings.ReplaceAll(strings.TrimSpace(v.Text), "\n", " ")
	default:
		s += fmt.Sprintf(" (%d bytes)", len(v.Data))
	}
	return s
}

// writeShowTable prints one row per event. The column widths come from a
// first pass over the event headers, so rows are written as they are
// decoded instead of being held for alignment.
func writeShowTable(w io.Writer, log *eventlog.Log, findings []eventlog.Finding, replayError string) error {
	fmt.Fprintf(w, "format: %s, banks: %v, %d events\n\n", log.Format, log.Banks, len(log.Events))
	header := [4]string{"#", "OFFSET", "PCR", "TYPE"}
	var widths [4]int
	for i, h := range header {
		widths[i] = len(h)
	}
	for i := range log.Events {
		for c, cell := range showCells(&log.Events[i]) {
			widths[c] = max(widths[c], utf8.RuneCountInString(cell))
		}
	}

	writeRow := func(cells [4]string, data string) error {
		var b strings.Builder
		for c, cell := range cells {
			b.WriteString(cell)
			b.WriteString(strings.Repeat(" ", widths[c]-utf8.RuneCountInString(cell)+2))
		}
		b.WriteString(data)
		b.WriteByte('\n')
		_, err := io.WriteString(w, b.String())
		return err
	}
	if err := writeRow(header, "DATA"); err != nil {
		return err
	}
	for i := range log.Events {
		e := &log.Events[i]
		if err := writeRow(showCells(e), cutText(summarize(e, e.Decode()), 100)); err != nil {
			return err
		}
	}

	if len(findings) > 0 {
		fmt.Fprintf(w, "\nfindings:\n")
		for _, f := range findings {
			fmt.Fprintf(w, "  %s\n", termText(fmt.Sprint(f)))
		}
	}
	if replayError != "" {
		fmt.Fprintf(w, "\nreplay: %s\n", termText(replayError))
	}
	return nil
}

// showCells returns the number, offset, PCR and type columns of an event.
func showCells(e *eventlog.Event) [4]string {
	pcr := fmt.Sprint(e.PCR)
	if e.PCR == 0xFFFFFFFF {
		pcr = "-1"
	}
	return [4]string{fmt.Sprint(e.Number), fmt.Sprint(e.Offset), pcr, e.Type.String()}
}
