package agent

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vouch-attest/vouch/api"
	"github.com/vouch-attest/vouch/ima"
)

func testIMAAgent(path string) *Agent {
	return &Agent{cfg: Config{IMAPath: path}, log: slog.New(slog.DiscardHandler)}
}

// readChunk reads the agent's list and returns the chunk it sends for
// the verifier's offset.
func readChunk(a *Agent, offset int64) *api.IMAEvidence {
	data, err := os.ReadFile(a.cfg.IMAPath)
	return a.imaChunk(offset, data, err)
}

func TestIMAChunkMissing(t *testing.T) {
	dir := t.TempDir()
	ev := readChunk(testIMAAgent(filepath.Join(dir, "no-ima", "binary_runtime_measurements")), 0)
	if !strings.Contains(ev.Missing, "IMA is disabled or securityfs is not mounted") || ev.Entries != nil {
		t.Errorf("no IMA directory: %+v", ev)
	}
	ev = readChunk(testIMAAgent(filepath.Join(dir, "binary_runtime_measurements")), 0)
	if !strings.Contains(ev.Missing, "IMA is not enabled") {
		t.Errorf("no IMA file: %+v", ev)
	}
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600)
	ev = readChunk(testIMAAgent(empty), 0)
	if !strings.Contains(ev.Missing, "is empty") || ev.Entries != nil {
		t.Errorf("empty list: %+v", ev)
	}
}

// TestIMAChunkOffsets reads a real binary list and a real ascii list:
// the first chunk goes from entry 0 whatever the offset, the next ones
// from the offset, and a changed earlier entry sends the list again.
func TestIMAChunkOffsets(t *testing.T) {
	for _, name := range []string{"hahuri.ima.bin", "ovmf-shim-sbms.ima.ascii", "keylime.ascii"} {
		raw, err := os.ReadFile("../ima/testdata/" + name)
		if err != nil {
			t.Fatal(err)
		}
		entries, _, err := ima.Parse(raw, ima.ParseOptions{})
		if err != nil {
			t.Fatal(err)
		}
		encode := func(from int) []byte {
			out := []byte{}
			for i := from; i < len(entries); i++ {
				out = ima.AppendBinary(out, &entries[i])
			}
			return out
		}
		path := filepath.Join(t.TempDir(), "list")
		os.WriteFile(path, raw, 0o600)
		a := testIMAAgent(path)
		n := int64(len(entries))

		if ev := readChunk(a, n/2); ev.Offset != 0 || !bytes.Equal(ev.Entries, encode(0)) || ev.Missing != "" {
			t.Errorf("%s first chunk: offset %d, %d bytes, want offset 0 and %d bytes", name, ev.Offset, len(ev.Entries), len(encode(0)))
		}
		if ev := readChunk(a, n/2); ev.Offset != n/2 || !bytes.Equal(ev.Entries, encode(int(n/2))) {
			t.Errorf("%s second chunk: offset %d, want %d", name, ev.Offset, n/2)
		}
		if ev := readChunk(a, n); ev.Offset != n || len(ev.Entries) != 0 || ev.Entries == nil {
			t.Errorf("%s chunk at the end: %+v", name, ev)
		}
		if ev := readChunk(a, n+5); ev.Offset != 0 {
			t.Errorf("%s offset past the end: offset %d, want 0", name, ev.Offset)
		}
		changed := bytes.Clone(raw)
		changed[len(changed)/3] ^= 0x01
		os.WriteFile(path, changed, 0o600)
		if ev := readChunk(a, n); ev.Offset != 0 {
			t.Errorf("%s after a change: offset %d, want 0", name, ev.Offset)
		}
	}
}
