package bundle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// MaxDirEntries bounds the bundle files read from one directory.
const MaxDirEntries = 4096

// Loader reads envelopes from files, directories and http(s) URLs and
// verifies each with [Verify]. Bundles that fail are reported, never
// returned.
type Loader struct {
	// Trust holds the publisher keys. Required.
	Trust *TrustStore
	// Now returns the time of verification. Required, so that tests and
	// replays pin it.
	Now func() time.Time
	// Client fetches URLs. When nil, a client with a 30 second timeout is
	// used.
	Client *http.Client
}

// LoadError is the failure to load one bundle source. Its Err is a
// *VerificationError when the bundle was read and rejected.
type LoadError struct {
	Source string
	Err    error
}

func (e *LoadError) Error() string { return e.Source + ": " + e.Err.Error() }
func (e *LoadError) Unwrap() error { return e.Err }

// Load reads one source: an http or https URL, a directory (every *.json
// file in it, not recursive) or a file. It returns the bundles that
// verified and one *LoadError per source that did not.
func (l *Loader) Load(ctx context.Context, source string) ([]*Verified, []error) {
	if strings.HasPrefix(source, "http://") || strings.HasPrefix(source, "https://") {
		v, err := l.Fetch(ctx, source)
		if err != nil {
			return nil, []error{err}
		}
		return []*Verified{v}, nil
	}
	info, err := os.Stat(source)
	if err != nil {
		return nil, []error{&LoadError{Source: source, Err: err}}
	}
	if info.IsDir() {
		return l.LoadDir(source)
	}
	v, err := l.LoadFile(source)
	if err != nil {
		return nil, []error{err}
	}
	return []*Verified{v}, nil
}

// LoadFile reads and verifies one envelope file.
func (l *Loader) LoadFile(path string) (*Verified, error) {
	data, err := readFileLimited(path, MaxEnvelopeSize)
	if err != nil {
		return nil, &LoadError{Source: path, Err: err}
	}
	return l.verifyBytes(path, data)
}

// LoadDir reads every regular *.json file in dir, in name order, and
// verifies each. Subdirectories are not read.
func (l *Loader) LoadDir(dir string) ([]*Verified, []error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, []error{&LoadError{Source: dir, Err: err}}
	}
	var names []string
	for _, e := range entries {
		if e.Type().IsRegular() && strings.HasSuffix(e.Name(), ".json") {
			names = append(names, e.Name())
		}
	}
	if len(names) > MaxDirEntries {
		return nil, []error{&LoadError{Source: dir, Err: fmt.Errorf("directory has %d bundle files, more than the limit of %d", len(names), MaxDirEntries)}}
	}
	sort.Strings(names)
	var out []*Verified
	var errs []error
	for _, name := range names {
		v, err := l.LoadFile(filepath.Join(dir, name))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, v)
	}
	return out, errs
}

// Fetch downloads one envelope from an http or https URL and verifies it.
// Plain http is allowed because the signature, not the transport, makes a
// bundle trusted.
func (l *Loader) Fetch(ctx context.Context, rawURL string) (*Verified, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, &LoadError{Source: rawURL, Err: errors.New("invalid bundle URL: expected http:// or https:// with a host")}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, &LoadError{Source: rawURL, Err: err}
	}
	req.Header.Set("Accept", "application/json")
	client := l.Client
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, &LoadError{Source: rawURL, Err: fmt.Errorf("fetch bundle: %w", err)}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, &LoadError{Source: rawURL, Err: fmt.Errorf("fetch bundle: server returned %s", resp.Status)}
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxEnvelopeSize+1))
	if err != nil {
		return nil, &LoadError{Source: rawURL, Err: fmt.Errorf("read bundle: %w", err)}
	}
	if len(data) > MaxEnvelopeSize {
		return nil, &LoadError{Source: rawURL, Err: fmt.Errorf("bundle is larger than the limit of %d bytes", MaxEnvelopeSize)}
	}
	return l.verifyBytes(rawURL, data)
}

func (l *Loader) verifyBytes(source string, data []byte) (*Verified, error) {
	if l.Now == nil {
		return nil, &LoadError{Source: source, Err: errors.New("loader has no clock: set Loader.Now")}
	}
	if !IsEnvelope(data) {
		if _, err := Parse(data); err == nil {
			return nil, &LoadError{Source: source, Err: reject(ReasonUnsigned, "this is a bare bundle, not a signed envelope: sign it with vouch bundle sign")}
		}
	}
	env, err := ParseEnvelope(data)
	if err != nil {
		return nil, &LoadError{Source: source, Err: err}
	}
	v, err := Verify(env, l.Trust, l.Now())
	if err != nil {
		return nil, &LoadError{Source: source, Err: err}
	}
	v.source = source
	return v, nil
}

// readFileLimited reads a file, failing when it is larger than limit bytes.
func readFileLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than the limit of %d bytes", path, limit)
	}
	return data, nil
}

// ReadFile reads a bundle-related file (an envelope or a bare bundle) with
// the envelope size limit. It is for tools that handle one file.
func ReadFile(path string) ([]byte, error) {
	return readFileLimited(path, MaxEnvelopeSize)
}
