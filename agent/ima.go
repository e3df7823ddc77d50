package agent

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/vouch-attest/vouch/api"
	"github.com/vouch-attest/vouch/ima"
)

// imaPrefix remembers how much of the IMA list the agent has sent in this
// boot, so that it notices when that part changes.
type imaPrefix struct {
	// bytes is the length of the file up to the end of the entries sent,
	// and sum the SHA-256 of those bytes.
	bytes int
	sum   [sha256.Size]byte
}

// imaChunk returns the entries of the list read from IMAPath (data, or the
// read error readErr) from entry offset on, in the binary format, cut at an
// entry boundary to fit the protocol's limit. The list may be binary or
// ascii. It sends the list from the start when it is shorter than offset
// (a new boot), or when the part sent before has changed: the verifier
// then judges the changed history.
func (a *Agent) imaChunk(offset int64, data []byte, readErr error) *api.IMAEvidence {
	path := a.cfg.IMAPath
	switch {
	case errors.Is(readErr, fs.ErrNotExist):
		why := "IMA is not enabled in this kernel"
		if _, err := os.Stat(filepath.Dir(path)); errors.Is(err, fs.ErrNotExist) {
			why = fmt.Sprintf("IMA is disabled or securityfs is not mounted: %s does not exist", filepath.Dir(path))
		}
		return &api.IMAEvidence{Missing: fmt.Sprintf("%s does not exist (%s)", path, why)}
	case readErr != nil:
		return &api.IMAEvidence{Missing: fmt.Sprintf("cannot read %s: %v", path, readErr)}
	case len(bytes.TrimSpace(data)) == 0:
		return &api.IMAEvidence{Missing: fmt.Sprintf("%s is empty: IMA logged no boot_aggregate, so it is not active", path)}
	}
	if a.imaSent.bytes == 0 {
		// The first list since the agent started goes from the start: the
		// machine may have rebooted since the verifier's offset.
		offset = 0
	} else if p := a.imaSent; len(data) < p.bytes || sha256.Sum256(data[:p.bytes]) != p.sum {
		a.log.Warn("the part of the IMA list sent before has changed; sending the list from the start", "bytes", p.bytes)
		offset = 0
	}
	var entries []ima.Entry
	var ends []int // ends[i] is the file offset after entry i
	if ima.DetectFormat(data) == ima.FormatASCII {
		var err error
		entries, err = ima.ParseASCII(data, ima.ParseOptions{})
		if err != nil && len(entries) == 0 {
			return &api.IMAEvidence{Missing: fmt.Sprintf("%s does not parse: %v", path, err)}
		}
		end := 0
		for range entries {
			end += bytes.IndexByte(data[end:], '\n') + 1
			ends = append(ends, end)
		}
	} else {
		dec := ima.NewBinaryDecoder(data, ima.ParseOptions{})
		for dec.Next() {
			entries = append(entries, *dec.Entry())
			ends = append(ends, dec.Offset())
		}
		// A list that ends inside an entry (being appended to) is sent up
		// to its last whole entry.
	}
	if offset > int64(len(entries)) {
		a.log.Info("IMA list is shorter than the verifier's offset; sending it from the start", "offset", offset, "entries", len(entries))
		offset = 0
	}
	var out []byte
	n := int(offset)
	for ; n < len(entries); n++ {
		next := ima.AppendBinary(out, &entries[n])
		if len(next) > api.MaxIMAEntriesBytes {
			break
		}
		out = next
	}
	if n > 0 {
		a.imaSent = imaPrefix{bytes: ends[n-1], sum: sha256.Sum256(data[:ends[n-1]])}
	}
	if out == nil {
		out = []byte{}
	}
	return &api.IMAEvidence{Offset: offset, Entries: out}
}
