package tpm

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/vouch-attest/vouch/attest"
)

// Config selects and configures the TPM to open.
type Config struct {
	// Transport is "device" (the default: /dev/tpmrm0, else /dev/tpm0),
	// "device:/path", "swtpm:tcp:HOST:PORT", "swtpm:unix:/path" or
	// "simulator".
	Transport string
	// Logger receives debug records of TPM operations; nil discards them.
	Logger *slog.Logger
	// SwtpmTimeout is how long Open waits for a swtpm socket to respond
	// to its first command before it returns ErrSwtpmBusy. Zero means
	// DefaultSwtpmTimeout (10 s). Other transports ignore it.
	SwtpmTimeout time.Duration
}

// TPM is an open TPM. Its methods are safe for concurrent use; they run
// one TPM command sequence at a time.
type TPM struct {
	mu     sync.Mutex
	t      transport.TPMCloser
	desc   string
	log    *slog.Logger
	closed bool
}

// Open opens the TPM that cfg names. Close it when done.
func Open(cfg Config) (*TPM, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t, desc, err := openTransport(cfg.Transport, cfg.SwtpmTimeout)
	if err != nil {
		return nil, err
	}
	if strings.HasPrefix(cfg.Transport, TransportSwtpm) {
		if err := startup(t); err != nil {
			t.Close()
			return nil, err
		}
	}
	log.Debug("opened TPM", "transport", desc)
	return &TPM{t: t, desc: desc, log: log}, nil
}

// Close closes the transport. The simulator's state is lost.
func (t *TPM) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	return t.t.Close()
}

// String describes the transport, such as "/dev/tpmrm0".
func (t *TPM) String() string { return t.desc }

// Transport returns the underlying go-tpm transport, for commands this
// package does not wrap. The caller must flush what it creates.
func (t *TPM) Transport() transport.TPM { return t.t }

// lock serializes command sequences and rejects use after Close.
func (t *TPM) lock() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return errors.New("TPM is closed")
	}
	return nil
}

func (t *TPM) unlock() { t.mu.Unlock() }

// flush flushes a transient object or session handle and joins a failure
// into *errp, so deferred flushes cannot hide or lose an error.
func (t *TPM) flush(h tpm2.TPMHandle, errp *error) {
	if _, err := (tpm2.FlushContext{FlushHandle: h}).Execute(t.t); err != nil {
		t.log.Warn("flushing TPM handle failed", "handle", fmt.Sprintf("0x%08x", uint32(h)), "err", err)
		*errp = errors.Join(*errp, fmt.Errorf("flushing handle 0x%08x: %w", uint32(h), err))
	}
}

// Info describes the TPM.
type Info struct {
	// Manufacturer is the TCG vendor ID as text, such as "IFX" or "MSFT".
	Manufacturer   string `json:"manufacturer"`
	ManufacturerID uint32 `json:"manufacturer_id"`
	// VendorString is TPM_PT_VENDOR_STRING_1..4 concatenated.
	VendorString string `json:"vendor_string"`
	// FirmwareVersion is TPM_PT_FIRMWARE_VERSION_1 and _2 as
	// major.minor.build.patch (the usual vendor convention).
	FirmwareVersion string `json:"firmware_version"`
	FirmwareRaw     uint64 `json:"firmware_raw"`
	// SpecRevision is the TPM library revision times 100 (e.g. 159).
	SpecRevision uint32 `json:"spec_revision"`
	SpecLevel    uint32 `json:"spec_level"`
	// Banks lists the active PCR banks and their PCRs.
	Banks attest.Selection `json:"-"`
}

// Info reads the TPM's fixed properties and active PCR banks.
func (t *TPM) Info() (*Info, error) {
	if err := t.lock(); err != nil {
		return nil, err
	}
	defer t.unlock()
	props, err := t.fixedProperties()
	if err != nil {
		return nil, err
	}
	info := &Info{
		ManufacturerID: props[tpm2.TPMPTManufacturer],
		Manufacturer:   propertyString(props[tpm2.TPMPTManufacturer]),
		SpecRevision:   props[tpm2.TPMPTRevision],
		SpecLevel:      props[tpm2.TPMPTLevel],
	}
	var vendor strings.Builder
	for p := tpm2.TPMPTVendorString1; p <= tpm2.TPMPTVendorString1+3; p++ {
		vendor.WriteString(propertyString(props[p]))
	}
	info.VendorString = vendor.String()
	fw1, fw2 := props[tpm2.TPMPTFirmwareVersion1], props[tpm2.TPMPTFirmwareVersion1+1]
	info.FirmwareRaw = uint64(fw1)<<32 | uint64(fw2)
	info.FirmwareVersion = fmt.Sprintf("%d.%d.%d.%d", fw1>>16, fw1&0xffff, fw2>>16, fw2&0xffff)
	if info.Banks, err = t.activeBanks(); err != nil {
		return nil, err
	}
	return info, nil
}

// propertyString decodes a 4-character property value, dropping NULs and
// trailing spaces.
func propertyString(v uint32) string {
	b := []byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
	return strings.TrimRight(strings.ReplaceAll(string(b), "\x00", ""), " ")
}

func (t *TPM) fixedProperties() (map[tpm2.TPMPT]uint32, error) {
	props := make(map[tpm2.TPMPT]uint32)
	next := uint32(tpm2.TPMPTFamilyIndicator)
	for range 8 {
		rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapTPMProperties, Property: next, PropertyCount: 64}.Execute(t.t)
		if err != nil {
			return nil, fmt.Errorf("reading TPM properties: %w", err)
		}
		list, err := rsp.CapabilityData.Data.TPMProperties()
		if err != nil {
			return nil, fmt.Errorf("reading TPM properties: %w", err)
		}
		for _, p := range list.TPMProperty {
			props[p.Property] = p.Value
			next = uint32(p.Property) + 1
		}
		if !rsp.MoreData || len(list.TPMProperty) == 0 || next >= 0x200 {
			break
		}
	}
	return props, nil
}

// ActiveBanks returns the PCR banks the TPM has allocated, with the PCRs
// each contains, in the TPM's order.
func (t *TPM) ActiveBanks() (attest.Selection, error) {
	if err := t.lock(); err != nil {
		return nil, err
	}
	defer t.unlock()
	return t.activeBanks()
}

func (t *TPM) activeBanks() (attest.Selection, error) {
	rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapPCRs, PropertyCount: 1}.Execute(t.t)
	if err != nil {
		return nil, fmt.Errorf("reading PCR banks: %w", err)
	}
	pcrs, err := rsp.CapabilityData.Data.AssignedPCR()
	if err != nil {
		return nil, fmt.Errorf("reading PCR banks: %w", err)
	}
	var banks attest.Selection
	for _, s := range pcrs.PCRSelections {
		var idx []int
		for i, b := range s.PCRSelect {
			for bit := range 8 {
				if b&(1<<bit) != 0 {
					idx = append(idx, i*8+bit)
				}
			}
		}
		if len(idx) > 0 {
			banks = append(banks, attest.BankSelection{Hash: attest.Algorithm(s.Hash), PCRs: idx})
		}
	}
	if len(banks) == 0 {
		return nil, errors.New("the TPM reports no active PCR bank")
	}
	return banks, nil
}

// TransientHandles lists the transient objects and loaded sessions the TPM
// currently holds, for diagnostics and leak tests. Through the kernel
// resource manager only this connection's handles are visible.
func (t *TPM) TransientHandles() ([]uint32, error) {
	if err := t.lock(); err != nil {
		return nil, err
	}
	defer t.unlock()
	var out []uint32
	// 0x80: transient objects; 0x02: loaded HMAC sessions; 0x03: loaded
	// policy sessions.
	for _, first := range []uint32{0x80000000, 0x02000000, 0x03000000} {
		rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapHandles, Property: first, PropertyCount: 64}.Execute(t.t)
		if err != nil {
			return nil, fmt.Errorf("listing handles from 0x%08x: %w", first, err)
		}
		hs, err := rsp.CapabilityData.Data.Handles()
		if err != nil {
			return nil, fmt.Errorf("listing handles from 0x%08x: %w", first, err)
		}
		for _, h := range hs.Handle {
			if uint32(h)>>24 == first>>24 {
				out = append(out, uint32(h))
			}
		}
	}
	return out, nil
}
