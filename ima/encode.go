package ima

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
)

// AppendBinary appends the entry in the binary list format, as the kernel
// writes it to binary_runtime_measurements (little-endian).
func AppendBinary(dst []byte, e *Entry) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, e.PCR)
	dst = append(dst, e.TemplateHash...)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(e.TemplateName)))
	dst = append(dst, e.TemplateName...)
	if e.TemplateName != TemplateIMA {
		dst = binary.LittleEndian.AppendUint32(dst, uint32(len(e.TemplateData)))
	}
	return append(dst, e.TemplateData...)
}

// AppendASCII appends the entry as a line of the ascii list format, as
// the kernel prints it to ascii_runtime_measurements.
func AppendASCII(dst []byte, e *Entry) ([]byte, error) {
	if e.PCR < 10 {
		dst = append(dst, ' ')
	}
	dst = strconv.AppendUint(dst, uint64(e.PCR), 10)
	dst = append(dst, ' ')
	dst = hex.AppendEncode(dst, e.TemplateHash)
	dst = append(dst, ' ')
	dst = append(dst, e.TemplateName...)
	if e.TemplateName == TemplateIMA {
		f, err := e.Fields()
		if err != nil {
			return nil, err
		}
		dst = append(dst, ' ')
		dst = hex.AppendEncode(dst, f.Digest)
		dst = append(dst, ' ')
		dst = append(dst, f.Name...)
		return append(dst, '\n'), nil
	}
	ids, ok := templateFields[e.TemplateName]
	if !ok || e.TemplateName == TemplateEVMSig {
		return nil, fmt.Errorf("entry %d: template %q cannot be printed in the ascii format", e.Index, e.TemplateName)
	}
	rest := e.TemplateData
	for _, id := range ids {
		var data []byte
		var err error
		if data, rest, err = cutField(rest); err != nil {
			return nil, fmt.Errorf("entry %d: field %q: %w", e.Index, id, err)
		}
		dst = append(dst, ' ')
		switch id {
		case "d-ng", "d-ngv2", "d-modsig":
			if len(data) == 0 {
				continue
			}
			i := indexByte(data, 0)
			if i < 0 {
				return nil, fmt.Errorf("entry %d: field %q lacks the algorithm prefix", e.Index, id)
			}
			dst = append(dst, data[:i]...)
			dst = hex.AppendEncode(dst, data[i+1:])
		case "n-ng":
			name, err := parseNameNG(data)
			if err != nil {
				return nil, fmt.Errorf("entry %d: %w", e.Index, err)
			}
			dst = append(dst, name...)
		default:
			dst = hex.AppendEncode(dst, data)
		}
	}
	return append(dst, '\n'), nil
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}
