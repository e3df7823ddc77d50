package totp

import (
	"encoding/binary"
	"fmt"
	"time"
)

// The sealed form of a key is what Vouch seals into the TPM. It has to fit
// a TPM sealed data object, which holds at most 128 bytes (MAX_SYM_DATA in
// TPM 2.0 Part 2), so it leaves out the issuer and account names:
//
//	offset size  field
//	0      1     version, 1
//	1      1     algorithm: 1 SHA1, 2 SHA256, 3 SHA512
//	2      1     digits
//	3      2     period in seconds, big-endian
//	5      n     secret, MinSecretSize to MaxSecretSize bytes
const sealedVersion = 1

var sealedAlgorithms = []Algorithm{1: SHA1, 2: SHA256, 3: SHA512}

// MarshalSealed encodes the key's secret and parameters for sealing. The
// result contains the secret: pass it only to the TPM.
func MarshalSealed(k Key) ([]byte, error) {
	if err := k.Validate(); err != nil {
		return nil, err
	}
	alg := 0
	for i, a := range sealedAlgorithms {
		if a == k.Algorithm && a != "" {
			alg = i
		}
	}
	out := []byte{sealedVersion, byte(alg), byte(k.Digits)}
	out = binary.BigEndian.AppendUint16(out, uint16(k.Period/time.Second))
	return append(out, k.Secret.b...), nil
}

// ParseSealed decodes what MarshalSealed encoded. Errors never contain
// secret bytes.
func ParseSealed(data []byte) (Key, error) {
	if len(data) < 5 {
		return Key{}, fmt.Errorf("sealed totp key is %d bytes, shorter than its 5-byte header", len(data))
	}
	if data[0] != sealedVersion {
		return Key{}, fmt.Errorf("sealed totp key has version %d: this vouch reads version %d", data[0], sealedVersion)
	}
	if int(data[1]) >= len(sealedAlgorithms) || sealedAlgorithms[data[1]] == "" {
		return Key{}, fmt.Errorf("sealed totp key has unknown algorithm number %d", data[1])
	}
	k := Key{
		Algorithm: sealedAlgorithms[data[1]],
		Digits:    int(data[2]),
		Period:    time.Duration(binary.BigEndian.Uint16(data[3:5])) * time.Second,
		Secret:    NewSecret(data[5:]),
	}
	if err := k.Validate(); err != nil {
		return Key{}, fmt.Errorf("sealed totp key: %w", err)
	}
	return k, nil
}
