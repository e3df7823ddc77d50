package verifier

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/vouch-attest/vouch/api"
	"github.com/vouch-attest/vouch/attest"
	"github.com/vouch-attest/vouch/eventlog"
	"github.com/vouch-attest/vouch/store"
)

// softwareAK signs quotes the way a TPM does, with an ECDSA P-256 key held
// in memory, so a benchmark can play many machines without TPM latency.
type softwareAK struct {
	key    *ecdsa.PrivateKey
	public []byte // TPMT_PUBLIC
}

func newSoftwareAK(tb testing.TB) *softwareAK {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	pub := tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgECC,
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{
			FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true,
			UserWithAuth: true, Restricted: true, SignEncrypt: true,
		},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
			Scheme: tpm2.TPMTECCScheme{
				Scheme:  tpm2.TPMAlgECDSA,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
			},
			CurveID: tpm2.TPMECCNistP256,
			KDF:     tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
			X: tpm2.TPM2BECCParameter{Buffer: key.X.FillBytes(make([]byte, 32))},
			Y: tpm2.TPM2BECCParameter{Buffer: key.Y.FillBytes(make([]byte, 32))},
		}),
	}
	return &softwareAK{key: key, public: tpm2.Marshal(pub)}
}

// quote returns a TPMS_ATTEST over pcrs (every bank of values) and nonce,
// and its TPMT_SIGNATURE.
func (ak *softwareAK) quote(tb testing.TB, nonce []byte, pcrs []int, values eventlog.PCRValues, clock uint64) ([]byte, []byte) {
	var sel tpm2.TPMLPCRSelection
	h := sha256.New()
	for _, alg := range values.Banks() {
		bitmap := make([]byte, 3)
		for _, p := range pcrs {
			bitmap[p/8] |= 1 << (p % 8)
			h.Write(values[alg][p])
		}
		sel.PCRSelections = append(sel.PCRSelections, tpm2.TPMSPCRSelection{Hash: tpm2.TPMIAlgHash(alg), PCRSelect: bitmap})
	}
	att := tpm2.TPMSAttest{
		Magic:     tpm2.TPMGeneratedValue,
		Type:      tpm2.TPMSTAttestQuote,
		ExtraData: tpm2.TPM2BData{Buffer: nonce},
		ClockInfo: tpm2.TPMSClockInfo{Clock: clock, ResetCount: 1, Safe: true},
		Attested: tpm2.NewTPMUAttest(tpm2.TPMSTAttestQuote, &tpm2.TPMSQuoteInfo{
			PCRSelect: sel, PCRDigest: tpm2.TPM2BDigest{Buffer: h.Sum(nil)},
		}),
	}
	raw := tpm2.Marshal(att)
	digest := sha256.Sum256(raw)
	r, s, err := ecdsa.Sign(rand.Reader, ak.key, digest[:])
	if err != nil {
		tb.Fatal(err)
	}
	sig := tpm2.TPMTSignature{
		SigAlg: tpm2.TPMAlgECDSA,
		Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgECDSA, &tpm2.TPMSSignatureECC{
			Hash:       tpm2.TPMAlgSHA256,
			SignatureR: tpm2.TPM2BECCParameter{Buffer: r.FillBytes(make([]byte, 32))},
			SignatureS: tpm2.TPM2BECCParameter{Buffer: s.FillBytes(make([]byte, 32))},
		}),
	}
	return raw, tpm2.Marshal(sig)
}

type benchFleet struct {
	url    string
	client *http.Client
	log    []byte
	values eventlog.PCRValues
	pcrs   []int
	aks    []*softwareAK
}

// newBenchFleet starts a verifier over TLS on loopback with a real SQLite
// store and n machines whose AKs are software keys, inserted into the
// store as enrollment would leave them, with approved reference values.
func newBenchFleet(b *testing.B, n int) *benchFleet {
	dir := b.TempDir()
	st, err := store.OpenSQLite(context.Background(), filepath.Join(dir, "vouch.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	raw, err := os.ReadFile("../cmd/vouch/testdata/demo/rhel8-uefi.bin")
	if err != nil {
		b.Fatal(err)
	}
	log, err := eventlog.Parse(raw)
	if err != nil {
		b.Fatal(err)
	}
	values, err := eventlog.Replay(log)
	if err != nil {
		b.Fatal(err)
	}
	srv, err := New(Config{
		Store: st, Backend: &AttestBackend{}, Logger: slog.New(slog.DiscardHandler),
		EKMode: EKModeTOFU, Interval: time.Millisecond, MaxWait: 5 * time.Second,
	}, dir)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(srv.Close)
	hs := httptest.NewTLSServer(srv.Handler())
	b.Cleanup(hs.Close)
	f := &benchFleet{url: hs.URL, log: raw, values: values, pcrs: srv.cfg.PCRs}
	tr := hs.Client().Transport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = n
	tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	f.client = &http.Client{Transport: tr}

	var events []MeasuredEvent
	for i := range log.Events {
		e := &log.Events[i]
		if e.Type == eventlog.EV_NO_ACTION || !contains(f.pcrs, int(e.PCR)) {
			continue
		}
		events = append(events, MeasuredEvent{Index: e.Number, PCR: int(e.PCR), Type: e.Type.String(),
			Digests: map[string]string{"sha256": fmt.Sprintf("%x", e.Digest(eventlog.SHA256))}})
	}
	ref, err := FirstBootPolicy{}.Learn(&Boot{Events: events})
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < n; i++ {
		ak := newSoftwareAK(b)
		f.aks = append(f.aks, ak)
		name := fmt.Sprintf("bench-%d", i)
		ekHash := fmt.Sprintf("%064x", i+1)
		m := store.Machine{Name: name, EKHash: ekHash, AKPublic: ak.public, Approved: true, State: store.StatePending,
			Reference: ref, ReferenceApproved: true, StateSince: time.Now()}
		if err := st.CreateMachine(context.Background(), m, store.EK{Hash: ekHash}, store.Event{Machine: name, Kind: "enrolled"}); err != nil {
			b.Fatal(err)
		}
	}
	return f
}

func contains(list []int, v int) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// attestOnce runs one challenge and evidence round for machine i.
func (f *benchFleet) attestOnce(b *testing.B, i int, clock uint64) {
	c := &api.Client{BaseURL: f.url, HTTP: f.client}
	name := fmt.Sprintf("bench-%d", i)
	var ch api.Challenge
	if _, err := c.Do(context.Background(), http.MethodGet, "/v1/agents/"+name+"/challenge?wait=5", nil, &ch); err != nil {
		b.Error(err)
		return
	}
	quote, sig := f.aks[i].quote(b, ch.Nonce, ch.PCRs, f.values, clock)
	ev := api.Evidence{ChallengeID: ch.ID, Quote: quote, Signature: sig}
	for _, alg := range f.values.Banks() {
		bank := api.PCRBank{Alg: uint16(alg), Values: map[int][]byte{}}
		for _, p := range ch.PCRs {
			bank.Values[p] = f.values[alg][p]
		}
		ev.PCRs = append(ev.PCRs, bank)
	}
	sum := sha256.Sum256(f.log)
	ev.EventLogSHA256 = fmt.Sprintf("%x", sum)
	if ev.EventLogSHA256 != ch.EventLogSHA256 {
		ev.EventLog = f.log
	}
	var v api.Verdict
	if _, err := c.Do(context.Background(), http.MethodPost, "/v1/agents/"+name+"/evidence", ev, &v); err != nil {
		b.Error(err)
		return
	}
	if v.State != api.StateTrusted {
		b.Errorf("%s: verdict %+v", name, v)
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkAttestation measures one verifier attesting a fleet: each
// operation is one attestation (long-poll challenge, TLS, quote check,
// replay of an 83-event log, policy, and a synchronous SQLite commit of
// the verdict). The agents' quote signing runs in this process too, so the
// SignQuote sub-benchmark measures it for subtraction. VerifyQuote and
// SignatureOnly are the peers for the server's CPU per attestation.
func BenchmarkAttestation(b *testing.B) {
	for _, machines := range []int{1, 16} {
		b.Run(fmt.Sprintf("Server/machines=%d", machines), func(b *testing.B) {
			f := newBenchFleet(b, machines)
			for i := range machines { // first round sends the full log
				f.attestOnce(b, i, 1)
			}
			var next atomic.Int64
			var clock atomic.Uint64
			clock.Store(2)
			b.ResetTimer()
			start, cpu0 := time.Now(), cpuTime()
			var wg sync.WaitGroup
			for i := range machines {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for next.Add(1) <= int64(b.N) {
						f.attestOnce(b, i, clock.Add(1))
					}
				}()
			}
			wg.Wait()
			elapsed, cpu := time.Since(start), cpuTime()-cpu0
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "attestations/s")
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/attestation")
		})
	}

	f := newBenchFleet(b, 1)
	nonce := make([]byte, 32)
	b.Run("SignQuote", func(b *testing.B) {
		for b.Loop() {
			f.aks[0].quote(b, nonce, f.pcrs, f.values, 1)
		}
	})
	quote, sig := f.aks[0].quote(b, nonce, f.pcrs, f.values, 1)
	ak, err := attest.ParseAKPublic(f.aks[0].public)
	if err != nil {
		b.Fatal(err)
	}
	var selection attest.Selection
	for _, alg := range f.values.Banks() {
		selection = append(selection, attest.BankSelection{Hash: alg, PCRs: f.pcrs})
	}
	want := attest.QuoteExpectations{Nonce: nonce, Selection: selection, PCRs: f.values}
	b.Run("VerifyQuote", func(b *testing.B) {
		for b.Loop() {
			if _, err := attest.VerifyQuote(ak, attest.Quote{Attest: quote, Signature: sig}, want); err != nil {
				b.Fatal(err)
			}
		}
	})
	parsed, err := attest.ParseSignature(sig)
	if err != nil {
		b.Fatal(err)
	}
	key := ak.Key.(*ecdsa.PublicKey)
	b.Run("SignatureOnly", func(b *testing.B) {
		for b.Loop() {
			digest := sha256.Sum256(quote)
			if !ecdsa.Verify(key, digest[:], new(big.Int).SetBytes(parsed.R), new(big.Int).SetBytes(parsed.S)) {
				b.Fatal("signature does not verify")
			}
		}
	})
	be := &AttestBackend{}
	vq, err := attest.VerifyQuote(ak, attest.Quote{Attest: quote, Signature: sig}, want)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("ReplayEventLog", func(b *testing.B) {
		for b.Loop() {
			if _, err := be.ReplayEventLog(f.log, &QuoteResult{Opaque: vq}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
