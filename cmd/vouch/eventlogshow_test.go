package main

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vouch-attest/vouch/eventlog"
)

// TestWriteStreamedMatchesWhole checks that an object written member by
// member reads the same as the whole object written by writeJSON and
// writeYAML, for lists with elements and empty lists.
func TestWriteStreamedMatchesWhole(t *testing.T) {
	type item struct {
		N    int               `json:"n"`
		Text string            `json:"text"`
		Tags map[string]string `json:"tags"`
	}
	whole := struct {
		Name  string `json:"name"`
		Items []item `json:"items"`
		None  []item `json:"none"`
		Tail  []int  `json:"tail"`
	}{
		Name:  "log <1> & \x1b",
		Items: []item{{1, "a\r\nb", map[string]string{"sha256": "00"}}, {2, "", nil}},
		None:  []item{},
		Tail:  []int{7},
	}
	seq := func(items []item) func(func(any) bool) {
		return func(yield func(any) bool) {
			for _, it := range items {
				if !yield(it) {
					return
				}
			}
		}
	}
	members := []member{
		{key: "name", value: whole.Name},
		{key: "items", list: seq(whole.Items)},
		{key: "none", list: seq(whole.None)},
		{key: "tail", value: whole.Tail},
	}
	for _, format := range []string{"json", "yaml"} {
		var want, got bytes.Buffer
		write := writeJSON
		if format == "yaml" {
			write = writeYAML
		}
		if err := write(&want, whole); err != nil {
			t.Fatal(err)
		}
		if err := writeStreamed(&got, format, members); err != nil {
			t.Fatal(err)
		}
		if got.String() != want.String() {
			t.Errorf("%s: streamed output\n%s\nwant\n%s", format, got.String(), want.String())
		}
	}
}

// TestShowNamesReplayError checks that show prints a log whose event for
// PCR 24 stops replay, and names that event, in the table and in JSON.
func TestShowNamesReplayError(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(testLogs, "go-eventlog", "rhel8-uefi.bin"))
	if err != nil {
		t.Fatal(err)
	}
	log, err := eventlog.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	bad := append([]byte(nil), raw...)
	off := log.Events[3].Offset
	binary.LittleEndian.PutUint32(bad[off:], 24)
	path := filepath.Join(t.TempDir(), "pcr24.bin")
	if err := os.WriteFile(path, bad, 0o600); err != nil {
		t.Fatal(err)
	}

	out, code := runVouch(t, nil, "eventlog", "show", path)
	if code != exitOK {
		t.Fatalf("show exit %d: %s", code, out)
	}
	if !strings.Contains(out, "\nreplay: event 3 at byte offset") || !strings.Contains(out, "PCR index out of range") {
		t.Errorf("table does not name the replay error:\n%s", out)
	}

	out, code = runVouch(t, nil, "eventlog", "show", "-o", "json", path)
	if code != exitOK {
		t.Fatalf("show -o json exit %d: %s", code, out)
	}
	var doc struct {
		Events      []json.RawMessage `json:"events"`
		ReplayError string            `json:"replay_error"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("show -o json output is not JSON: %v", err)
	}
	if len(doc.Events) != len(log.Events) {
		t.Errorf("JSON has %d events, want %d", len(doc.Events), len(log.Events))
	}
	if !strings.HasPrefix(doc.ReplayError, "event 3 at byte offset") {
		t.Errorf("replay_error = %q, want the error of event 3", doc.ReplayError)
	}

	out, code = runVouch(t, nil, "eventlog", "replay", path)
	if code != exitUnreadable || !strings.Contains(out, path+": event 3") {
		t.Errorf("replay exit %d, output %q: want exit %d naming %s and event 3", code, out, exitUnreadable, path)
	}
}

// TestShowOmitsLargeDecoding checks that -o json prints the summary, but
// not the full decoding, of an event larger than maxShownDecoded: a db
// variable of 6000 signature entries.
func TestShowOmitsLargeDecoding(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(testLogs, "go-eventlog", "rhel8-uefi.bin"))
	if err != nil {
		t.Fatal(err)
	}
	data := dbVariable(6000)

	s1, s256 := sha1.Sum(data), sha256.Sum256(data)
	ev := binary.LittleEndian.AppendUint32(nil, 7)
	ev = binary.LittleEndian.AppendUint32(ev, uint32(eventlog.EV_EFI_VARIABLE_DRIVER_CONFIG))
	ev = binary.LittleEndian.AppendUint32(ev, 2)
	ev = append(binary.LittleEndian.AppendUint16(ev, uint16(eventlog.SHA1)), s1[:]...)
	ev = append(binary.LittleEndian.AppendUint16(ev, uint16(eventlog.SHA256)), s256[:]...)
	ev = binary.LittleEndian.AppendUint32(ev, uint32(len(data)))
	path := filepath.Join(t.TempDir(), "bigdb.bin")
	if err := os.WriteFile(path, append(append(raw, ev...), data...), 0o600); err != nil {
		t.Fatal(err)
	}

	out, code := runVouch(t, nil, "eventlog", "show", "-o", "json", path)
	if code != exitOK {
		t.Fatalf("show -o json exit %d: %.500s", code, out)
	}
	var doc struct {
		Events []struct {
			DecodedOmitted string `json:"decoded_omitted"`
			Summary        string `json:"summary"`
		} `json:"events"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("show -o json output is not JSON: %v", err)
	}
	last := doc.Events[len(doc.Events)-1]
	if last.DecodedOmitted == "" || last.Summary != "db: 1 signature lists, 6000 entries" {
		t.Errorf("last event: decoded_omitted %q, summary %q; want the decoding omitted and the entries counted", last.DecodedOmitted, last.Summary)
	}
	if len(out) > 400<<10 {
		t.Errorf("output is %d bytes: the large event's decoding was printed", len(out))
	}
}

// dbVariable returns the UEFI_VARIABLE_DATA of a db variable with one
// signature list of entries SHA-256 entries.
func dbVariable(entries int) []byte {
	list := make([]byte, 28, 28+entries*48)
	copy(list, eventlog.CertSHA256GUID[:])
	binary.LittleEndian.PutUint32(list[16:], uint32(28+entries*48))
	binary.LittleEndian.PutUint32(list[24:], 48)
	list = append(list, make([]byte, entries*48)...)
	name := []byte{'d', 0, 'b', 0}
	data := append([]byte(nil), eventlog.EFIImageSecurityDatabase[:]...)
	data = binary.LittleEndian.AppendUint64(data, 2)
	data = binary.LittleEndian.AppendUint64(data, uint64(len(list)))
	return append(append(data, name...), list...)
}

// TestShowDecodedBudgetPerLog checks that many events just under
// maxShownDecoded print their full decoding only up to
// maxShownDecodedTotal of event data in all.
func TestShowDecodedBudgetPerLog(t *testing.T) {
	data := dbVariable(4000) // about 188 KiB
	e := &eventlog.Event{PCR: 7, Type: eventlog.EV_EFI_VARIABLE_DRIVER_CONFIG, Data: data}
	budget := maxShownDecodedTotal
	decoded := 0
	for range 40 {
		se := showEventOf(e, &budget)
		if se.Decoded != nil {
			decoded++
		} else if se.DecodedOmitted == "" {
			t.Fatal("event printed with neither a decoding nor the reason it is omitted")
		}
	}
	if want := maxShownDecodedTotal / len(data); decoded != want {
		t.Errorf("%d of 40 events printed their decoding, want %d within the %d MiB budget", decoded, want, maxShownDecodedTotal>>20)
	}
}
