package verifier

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/vouch-attest/vouch/api"
	"github.com/vouch-attest/vouch/store"
)

// Reason codes set by the verifier itself; backends and policies add
// their own.
const (
	ReasonAwaitingAttestation = "awaiting_attestation"
	ReasonAwaitingApproval    = "awaiting_approval"
	ReasonReferenceUnapproved = "reference_unapproved"
	ReasonRevoked             = "revoked"
	ReasonUnreachable         = "unreachable"
	ReasonNonceReused         = "nonce_reused"
	ReasonClockBackwards      = "clock_backwards"
	ReasonResetCountBackwards = "reset_count_backwards"
	ReasonEventLogMissing     = "eventlog_missing"
	ReasonEventLogDigest      = "eventlog_digest_mismatch"
)

// usedChallengeRetention is how long a used challenge is remembered, so a
// replay of its evidence is recognized as a reused nonce rather than an
// unknown challenge.
const usedChallengeRetention = 15 * time.Minute

type challenge struct {
	id        string
	machine   string
	nonce     []byte
	pcrs      []int
	expires   time.Time
	used      bool
	logSHA256 string
	imaOffset int64
	// expiryCounted is set once the metrics counted the challenge as expired.
	expiryCounted bool
}

type session struct {
	// wake is closed, and replaced, to wake every challenge request held
	// open for the machine (kick, forget).
	wake    chan struct{}
	nextDue time.Time
	// current is the challenge handed out for the machine's due
	// attestation. Until evidence signed by the machine's AK uses it or it
	// expires, every challenge request gets this same challenge, so a
	// client that polls the machine's challenges cannot take its turn.
	current *challenge
	// waiting counts the challenge requests held open for the machine.
	// Anyone may send them, so they show a connected agent only together
	// with recent authenticated activity (agentConnected).
	waiting int
	// verifiedAt is when evidence for the machine last verified with its AK.
	verifiedAt time.Time
	// hasIMA is set when the agent sent an IMA list (imaSelection).
	hasIMA bool
}

// outstanding returns the session's current challenge while it is unused
// and unexpired, else nil.
func (sess *session) outstanding(now time.Time) *challenge {
	if ch := sess.current; ch != nil && !ch.used && !now.After(ch.expires) {
		return ch
	}
	return nil
}

// agentConnected reports whether the machine's agent is likely to send
// evidence soon. That needs a challenge request held open for it, an
// outstanding challenge, or verified evidence within agentReconnectGrace.
// It also needs authenticated activity (enrollment or verified evidence)
// recent enough that the machine is not due to become unreachable.
// Challenge requests are not authenticated, so a stranger's polling must
// not pass for the agent of a machine that went silent.
func (s *Server) agentConnected(m store.Machine) bool {
	now := s.now()
	if now.Sub(m.LastSeenAt) > s.unreachableLimit(m) {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.sessions[m.Name]
	if !ok {
		return false
	}
	return sess.waiting > 0 || sess.outstanding(now) != nil || now.Sub(sess.verifiedAt) < agentReconnectGrace
}

type cachedLog struct {
	sha256 string
	log    []byte
	// events is the replay of log against the PCR values whose digest is
	// valuesSHA256.
	valuesSHA256 string
	events       []MeasuredEvent
}

func (s *Server) sessionLocked(name string) *session {
	sess, ok := s.sessions[name]
	if !ok {
		sess = &session{wake: make(chan struct{})}
		s.sessions[name] = sess
	}
	return sess
}

// kick makes the machine's next challenge due now and wakes its waiting
// challenge requests.
func (s *Server) kick(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.sessionLocked(name)
	sess.nextDue = time.Time{}
	sess.wakeLocked()
}

// wakeLocked wakes every challenge request waiting on sess.
func (sess *session) wakeLocked() {
	close(sess.wake)
	sess.wake = make(chan struct{})
}

// jittered returns d moved randomly by up to ±Jitter·d.
func (s *Server) jittered(d time.Duration) time.Duration {
	j := (rand.Float64()*2 - 1) * s.cfg.Jitter
	return time.Duration(float64(d) * (1 + j))
}

func (s *Server) interval(m store.Machine) time.Duration {
	if m.IntervalS > 0 {
		return time.Duration(m.IntervalS) * time.Second
	}
	return s.cfg.Interval
}

// handleChallenge holds the agent's request open until the machine's next
// attestation is due, then returns its challenge. It responds 204 when wait
// elapses first.
//
// NOTE: challenge requests are not authenticated (evidence is, by the AK's
// signature), so anyone who can reach the server may poll a machine's
// challenges. A poll cannot take the machine's turn, because a due
// challenge stays outstanding until evidence that verifies with the
// machine's AK uses it or it expires. Every poller gets it, and only then
// is the next one made. The nonce need not be secret, because only the AK
// can sign it. A poller still learns when the machine is due and its
// challenge's PCR selection, event log digest and IMA offset.
func (s *Server) handleChallenge(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	ctx := r.Context()
	m, err := s.store.Machine(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, api.CodeNotEnrolled, fmt.Sprintf("machine %q is not enrolled: enroll again", name))
		return
	}
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	if revoked(m) {
		writeError(w, http.StatusForbidden, api.CodeEKRevoked, fmt.Sprintf("machine %q is revoked", name))
		return
	}
	wait := s.cfg.MaxWait
	if v := r.URL.Query().Get("wait"); v != "" {
		secs, err := strconv.ParseFloat(v, 64)
		if err != nil || secs < 0 {
			writeError(w, http.StatusBadRequest, api.CodeBadRequest, fmt.Sprintf("invalid wait %q: give seconds", v))
			return
		}
		wait = min(wait, time.Duration(secs*float64(time.Second)))
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()

	s.mu.Lock()
	if _, known := s.sessions[name]; !known && !m.LastVerdictAt.IsZero() {
		// A session this server has not seen since it started: continue the
		// machine's schedule from its last verdict, so agents reconnecting
		// after a verifier restart are attested over one interval instead
		// of all at once.
		s.sessionLocked(name).nextDue = m.LastVerdictAt.Add(s.jittered(s.interval(m)))
	}
	held := s.sessionLocked(name)
	held.waiting++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		held.waiting--
		s.mu.Unlock()
	}()
	for {
		s.mu.Lock()
		if s.sessions[name] != held {
			// The machine was forgotten while the request waited.
			s.mu.Unlock()
			writeError(w, http.StatusNotFound, api.CodeNotEnrolled, fmt.Sprintf("machine %q is not enrolled: enroll again", name))
			return
		}
		now := s.now()
		ch := held.outstanding(now)
		if ch == nil && !now.Before(held.nextDue) {
			ch, err = s.newChallengeLocked(m, now)
			if err != nil {
				s.mu.Unlock()
				s.internalError(w, r, err)
				return
			}
			held.current = ch
		}
		if ch != nil {
			resp := api.Challenge{
				ID: ch.id, Nonce: ch.nonce, ExpiresAt: ch.expires, PCRs: ch.pcrs,
				EventLogSHA256: ch.logSHA256, IMAOffset: ch.imaOffset,
			}
			s.mu.Unlock()
			writeJSON(w, http.StatusOK, resp)
			return
		}
		due := time.NewTimer(held.nextDue.Sub(now))
		wake := held.wake
		s.mu.Unlock()

		select {
		case <-due.C:
		case <-wake:
			due.Stop()
		case <-deadline.C:
			due.Stop()
			w.WriteHeader(http.StatusNoContent)
			return
		case <-ctx.Done():
			due.Stop()
			return
		case <-s.stop:
			due.Stop()
			writeError(w, http.StatusServiceUnavailable, api.CodeUnavailable, "the verifier is shutting down: reconnect")
			return
		}
	}
}

// useChallenge marks ch used by evidence that verified with the machine's
// AK and schedules the machine's next attestation an interval from now. It
// reports whether ch was used before, which makes the evidence a replay.
func (s *Server) useChallenge(m store.Machine, ch *challenge, now time.Time) (reused bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ch.used {
		return true
	}
	ch.used = true
	sess := s.sessionLocked(m.Name)
	sess.verifiedAt = now
	if sess.current == ch {
		sess.nextDue = now.Add(s.jittered(s.interval(m)))
	}
	return false
}

func (s *Server) newChallengeLocked(m store.Machine, now time.Time) (*challenge, error) {
	for id, ch := range s.challenges {
		if now.After(ch.expires.Add(usedChallengeRetention)) {
			if !ch.used {
				s.countExpiredLocked(ch)
			}
			delete(s.challenges, id)
		}
	}
	id, err := s.randomID()
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, api.NonceSize)
	if _, err := io.ReadFull(s.rand, nonce); err != nil {
		return nil, err
	}
	ch := &challenge{
		id: id, machine: m.Name, nonce: nonce, pcrs: s.pcrSelectionLocked(m),
		expires: now.Add(s.cfg.ChallengeTTL), imaOffset: m.IMAOffset,
	}
	if c, ok := s.logCache[m.Name]; ok {
		ch.logSHA256 = c.sha256
	}
	s.challenges[id] = ch
	return ch, nil
}

func revoked(m store.Machine) bool {
	return slices.Contains(m.Reasons, ReasonRevoked)
}

// handleEvidence verifies the evidence for a challenge and records the verdict.
func (s *Server) handleEvidence(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var ev api.Evidence
	if !s.readEvidence(w, r, name, &ev) {
		return
	}
	log := s.log.With("machine", name)
	now := s.now()
	s.mu.Lock()
	ch, ok := s.challenges[ev.ChallengeID]
	s.mu.Unlock()
	if !ok || ch.machine != name {
		s.logRejected(log, "evidence rejected: unknown challenge")
		writeError(w, http.StatusBadRequest, api.CodeChallenge, "unknown challenge for this machine: request a new one")
		return
	}
	if now.After(ch.expires) {
		s.logRejected(log, "evidence rejected: challenge expired", "expired_at", ch.expires)
		writeError(w, http.StatusBadRequest, api.CodeChallenge, fmt.Sprintf("challenge expired at %s: request a new one", ch.expires.Format(time.RFC3339)))
		return
	}

	ctx := r.Context()
	// The machine is read, judged and written back under its lock, so a
	// concurrent change (an approval, the unreachable check) is not lost.
	defer s.lockMachine(name)()
	m, err := s.store.Machine(ctx, name)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	if revoked(m) {
		writeError(w, http.StatusForbidden, api.CodeEKRevoked, fmt.Sprintf("machine %q is revoked", name))
		return
	}
	result, err := s.judge(m, ch, &ev, now)
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	if result.rejected == rejectedQuote {
		// Evidence the machine's AK did not sign proves nothing about the
		// machine, and anyone holding a challenge ID can send it, so the
		// machine's state stays as it is. A machine whose agent keeps
		// failing this check becomes unreachable.
		s.logRejected(log, "evidence rejected: quote does not verify with the machine's AK", "remote", r.RemoteAddr, "reason", result.reasons[0].Message)
		s.countVerdict(r, resultQuoteRejected, reasonCodes(result.reasons))
		writeJSON(w, http.StatusForbidden, api.Error{Code: api.CodeEvidence, Message: result.reasons[0].Message})
		return
	}
	if err := s.record(r, m, result, now); err != nil {
		s.internalError(w, r, err)
		return
	}
	verdict := api.Verdict{State: result.machine.State, Reasons: result.reasons, At: now, BootCount: result.machine.BootCount, IMA: result.ima}
	// The machine as record stored it.
	stored := result.machine
	stored.LastVerdictAt, stored.Reasons = now, reasonCodes(result.reasons)
	if signed, err := s.signedResult(stored); err != nil {
		log.Error("signing the attestation result failed: the agent gets the verdict without it", "err", err)
	} else {
		verdict.Result = signed
	}
	switch {
	case result.rejected == ReasonNonceReused:
		writeJSON(w, http.StatusConflict, api.Error{Code: api.CodeChallenge, Message: "nonce already used: this evidence is a replay"})
	default:
		writeJSON(w, http.StatusOK, verdict)
	}
}

// agentReconnectGrace is how long an agent whose evidence just verified
// counts as connected before its next challenge request arrives.
const agentReconnectGrace = 5 * time.Second

// maxQuotedAgentText bounds the agent-supplied text a reason quotes.
const maxQuotedAgentText = 512

// quoteAgentText returns text sent by an agent as a Go string literal, so
// control characters are escaped, cut to maxQuotedAgentText bytes.
func quoteAgentText(text string) string {
	if len(text) <= maxQuotedAgentText {
		return strconv.Quote(text)
	}
	return fmt.Sprintf("%q… (%d bytes)", text[:maxQuotedAgentText], len(text))
}

// rejectedQuote marks a judgement whose quote did not verify.
const rejectedQuote = "quote"

type judgement struct {
	machine store.Machine
	reasons []api.Reason
	// rejected is set when the evidence itself was refused (the quote did
	// not verify or the nonce was reused), as opposed to a verified boot
	// that policy found wanting.
	rejected string
	newBoot  bool
	learned  bool
	// revised describes a new revision of the reference values, such as
	// after a firmware update.
	revised string
	// ima is the IMA part of the verdict (checkIMA, in ima.go).
	ima *api.IMAReport
}

func untrusted(j *judgement, reasons ...api.Reason) *judgement {
	j.machine.State = store.StateUntrusted
	j.reasons = append(j.reasons, reasons...)
	return j
}

// judge checks the evidence, in order:
//  1. the quote is signed by the machine's AK over the challenge's nonce
//     and covers the reported PCR values (Backend.VerifyQuote). Evidence
//     that fails this is rejected without changing the machine's state;
//  2. the nonce was not used before (a replay of signed evidence makes
//     the machine untrusted);
//  3. the TPM's resetCount did not go backwards, and its clock did not go
//     backwards within one boot. A higher resetCount starts a new boot;
//  4. the event log is present, matches its digest and replays to the
//     quoted PCRs (Backend.ReplayEventLog);
//  5. the replayed events match the machine's reference values (Policy).
//     The first verified boot becomes the reference values, pending an
//     administrator's approval.
//
// It returns an operational error only when it could not judge.
func (s *Server) judge(m store.Machine, ch *challenge, ev *api.Evidence, now time.Time) (*judgement, error) {
	j := &judgement{machine: m}
	ak, err := s.be.ParseAK(m.AKPublic)
	if err != nil {
		return nil, fmt.Errorf("stored AK of %q: %w", m.Name, err)
	}
	q, err := s.be.VerifyQuote(ak, ev.Quote, ev.Signature, ch.nonce, ch.pcrs, ev.PCRs)
	if f, ok := AsFailure(err); ok {
		j.rejected = rejectedQuote
		return untrusted(j, f.Reasons...), nil
	}
	if err != nil {
		return nil, err
	}
	// Only evidence signed by the AK uses the challenge. Anyone may send
	// evidence for it, and evidence the AK did not sign must not spend the
	// machine's nonce.
	if s.useChallenge(m, ch, now) {
		j.rejected = ReasonNonceReused
		return untrusted(j, api.Reason{Code: ReasonNonceReused, Message: "the challenge's nonce was already answered: this evidence is a replay"}), nil
	}

	seen := m.BootCount > 0
	switch {
	case seen && q.ResetCount < m.ResetCount:
		return untrusted(j, api.Reason{Code: ReasonResetCountBackwards, Message: fmt.Sprintf("TPM resetCount went backwards from %d to %d: the TPM was cleared or the quote is old", m.ResetCount, q.ResetCount)}), nil
	case seen && q.ResetCount == m.ResetCount && q.Clock < m.Clock:
		return untrusted(j, api.Reason{Code: ReasonClockBackwards, Message: fmt.Sprintf("TPM clock went backwards from %d ms to %d ms without a reset", m.Clock, q.Clock)}), nil
	}
	j.newBoot = !seen || q.ResetCount != m.ResetCount
	j.machine.ResetCount, j.machine.RestartCount, j.machine.Clock = q.ResetCount, q.RestartCount, q.Clock
	if j.newBoot {
		j.machine.BootCount++
		j.machine.EventLogSHA256 = ""
		j.machine.IMAOffset = 0
		j.machine.IMAState = nil
	}

	logBytes, reason := s.eventLogOf(j.machine, ev)
	if reason != nil {
		return untrusted(j, *reason), nil
	}
	sum := sha256.Sum256(logBytes)
	logSHA256 := hex.EncodeToString(sum[:])
	// The replay of the same log against the same verified PCR values
	// gives the same events: reuse the last one when both are unchanged.
	s.mu.Lock()
	cached := s.logCache[m.Name]
	s.mu.Unlock()
	var events []MeasuredEvent
	if cached.sha256 == logSHA256 && cached.valuesSHA256 == q.ValuesSHA256 && q.ValuesSHA256 != "" {
		events = cached.events
	} else {
		events, err = s.be.ReplayEventLog(logBytes, q)
		if f, ok := AsFailure(err); ok {
			return untrusted(j, f.Reasons...), nil
		}
		if err != nil {
			return nil, err
		}
	}
	j.machine.EventLogSHA256 = logSHA256
	s.mu.Lock()
	s.logCache[m.Name] = cachedLog{sha256: logSHA256, log: logBytes, valuesSHA256: q.ValuesSHA256, events: events}
	s.mu.Unlock()

	boot := s.newBoot(j.machine, events, logBytes, q, now)
	if j.machine.Reference == nil {
		// ReferenceApproved may already be set: an administrator approved
		// the machine before this first verified boot.
		if err := s.learnReference(&j.machine, boot); err != nil {
			return untrusted(j, api.Reason{Code: "reference_unlearnable", Message: err.Error()}), nil
		}
		j.learned = true
	}
	out, err := s.policy.Evaluate(j.machine.Reference, boot)
	if err != nil {
		return nil, err
	}
	if out.Revised != nil {
		j.machine.Reference, j.machine.ReferenceApproved, j.revised = out.Revised, out.RevisedApproved, out.RevisionNote
	}
	reasons := out.Reasons
	if !slices.Contains(ch.pcrs, imaPCR) {
		s.noteIMA(m.Name, ev)
	} else {
		imaReasons, err := s.checkIMA(j, ev, q)
		if err != nil {
			return nil, err
		}
		reasons = append(reasons, imaReasons...)
	}
	if len(reasons) > 0 {
		return untrusted(j, append(reasons, out.Warnings...)...), nil
	}
	j.reasons = append(j.reasons, out.Warnings...)
	switch {
	case !j.machine.Approved:
		j.machine.State = store.StatePending
		j.reasons = append(j.reasons, api.Reason{Code: ReasonAwaitingApproval, Message: "the machine waits for an administrator's approval (vouch hosts approve)"})
	case !j.machine.ReferenceApproved:
		j.machine.State = store.StatePending
		j.reasons = append(j.reasons, api.Reason{Code: ReasonReferenceUnapproved, Message: fmt.Sprintf("reference values learned from boot %d (%d events) wait for an administrator's approval (vouch hosts approve)", j.machine.BootCount, len(events))})
	default:
		j.machine.State = store.StateTrusted
	}
	return j, nil
}

// eventLogOf returns the event log the evidence carries or, when the agent
// omitted an unchanged log, the cached copy.
func (s *Server) eventLogOf(m store.Machine, ev *api.Evidence) ([]byte, *api.Reason) {
	if ev.EventLogMissing != "" {
		// The agent's text is quoted and cut, because it is stored with
		// every verdict and shown to administrators.
		return nil, &api.Reason{Code: ReasonEventLogMissing, Message: "the agent has no event log: " + quoteAgentText(ev.EventLogMissing) + "; without it no quoted PCR can be explained"}
	}
	if len(ev.EventLog) == 0 {
		// The cache is keyed by content: a log with the same SHA-256 is
		// the same log, in this boot or the previous one.
		s.mu.Lock()
		c, ok := s.logCache[m.Name]
		s.mu.Unlock()
		if !ok || ev.EventLogSHA256 == "" || c.sha256 != ev.EventLogSHA256 {
			return nil, &api.Reason{Code: ReasonEventLogMissing, Message: "the agent omitted the event log but the verifier has no copy of it"}
		}
		return c.log, nil
	}
	if len(ev.EventLog) > api.MaxEventLogBytes {
		return nil, &api.Reason{Code: ReasonEventLogMissing, Message: fmt.Sprintf("event log of %d bytes exceeds the limit of %d", len(ev.EventLog), api.MaxEventLogBytes)}
	}
	if ev.EventLogSHA256 != "" {
		sum := sha256.Sum256(ev.EventLog)
		if hex.EncodeToString(sum[:]) != ev.EventLogSHA256 {
			return nil, &api.Reason{Code: ReasonEventLogDigest, Message: "the event log does not hash to the eventlog_sha256 the agent sent"}
		}
	}
	return ev.EventLog, nil
}

// record stores the judgement: the verdict, the machine, and a history
// entry when the state changed or a new boot began.
func (s *Server) record(r *http.Request, old store.Machine, j *judgement, now time.Time) error {
	m := j.machine
	m.LastVerdictAt = now
	m.LastSeenAt = now
	m.Reasons = reasonCodes(j.reasons)
	if m.State != old.State {
		m.StateSince = now
	}
	detail, err := json.Marshal(j.reasons)
	if err != nil {
		return err
	}
	ev := store.Event{Machine: m.Name}
	switch {
	case m.State != old.State:
		ev.Kind, ev.From, ev.To = "state", old.State, m.State
		ev.Detail = summarize(j.reasons)
		if j.newBoot && old.BootCount > 0 {
			ev.Detail = fmt.Sprintf("reboot detected (boot %d); %s", m.BootCount, ev.Detail)
		}
	case j.newBoot && old.BootCount > 0:
		ev.Kind, ev.From, ev.To = "reboot", old.State, m.State
		ev.Detail = fmt.Sprintf("reboot detected: TPM resetCount %d -> %d (boot %d)", old.ResetCount, m.ResetCount, m.BootCount)
	case j.revised != "":
		ev.Kind, ev.From, ev.To, ev.Detail = "reference-revised", old.State, m.State, j.revised
	case j.learned:
		ev.Kind, ev.To = "reference-learned", m.State
		ev.Detail = fmt.Sprintf("reference values learned from boot %d", m.BootCount)
	}
	var imaJSON []byte
	if j.ima != nil {
		if imaJSON, err = json.Marshal(j.ima); err != nil {
			return err
		}
	}
	if _, err := s.store.RecordVerdict(r.Context(), m, store.Verdict{
		Machine: m.Name, At: now, State: m.State, Reasons: m.Reasons, Detail: detail, BootCount: m.BootCount, IMA: imaJSON,
	}, ev); err != nil {
		return err
	}
	result := m.State
	if j.rejected != "" {
		result = j.rejected
	}
	s.countVerdict(r, result, m.Reasons)
	if m.State != old.State {
		s.stateChanged(old.State, m, ev, now)
	}
	logArgs := []any{"machine", m.Name, "state", m.State, "boot", m.BootCount}
	if len(m.Reasons) > 0 {
		logArgs = append(logArgs, "reasons", m.Reasons)
	}
	if ev.Kind == "state" || ev.Kind == "reboot" {
		s.log.Info("machine "+ev.Kind+" changed", append(logArgs, "detail", ev.Detail)...)
	} else {
		s.log.Debug("verdict", logArgs...)
	}
	return nil
}

func reasonCodes(reasons []api.Reason) []string {
	var codes []string
	for _, r := range reasons {
		if !slices.Contains(codes, r.Code) {
			codes = append(codes, r.Code)
		}
	}
	return codes
}

func summarize(reasons []api.Reason) string {
	if len(reasons) == 0 {
		return "verified"
	}
	msg := reasons[0].Message
	if len(reasons) > 1 {
		msg += fmt.Sprintf(" (and %d more)", len(reasons)-1)
	}
	return msg
}

// watch marks machines unreachable when they missed UnreachableAfter
// intervals, until Close.
func (s *Server) watch() {
	defer s.wg.Done()
	started := s.now()
	period := min(max(s.cfg.Interval/4, 200*time.Millisecond), 5*time.Second)
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		if err := s.markUnreachable(started); err != nil {
			s.log.Error("unreachable check failed", "err", err)
		}
	}
}

func (s *Server) markUnreachable(started time.Time) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	machines, err := s.store.Machines(ctx)
	if err != nil {
		return err
	}
	now := s.now()
	for _, listed := range machines {
		unlock := s.lockMachine(listed.Name)
		err := s.markOneUnreachable(ctx, listed.Name, started, now)
		unlock()
		if err != nil {
			return err
		}
	}
	return nil
}

// markOneUnreachable re-reads the machine under its lock and marks it
// unreachable when it missed UnreachableAfter intervals.
func (s *Server) markOneUnreachable(ctx context.Context, name string, started, now time.Time) error {
	m, err := s.store.Machine(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return nil // forgotten meanwhile
	}
	if err != nil {
		return err
	}
	if m.State == store.StateUnreachable || revoked(m) {
		return nil
	}
	last := latest(m.LastVerdictAt, m.StateSince, started)
	if now.Sub(last) <= s.unreachableLimit(m) {
		return nil
	}
	old := m.State
	m.State = store.StateUnreachable
	m.StateSince = now
	m.Reasons = []string{ReasonUnreachable}
	detail := fmt.Sprintf("no verified evidence since %s (%d intervals of %s missed)", last.Format(time.RFC3339), s.cfg.UnreachableAfter, s.interval(m))
	ev := store.Event{Machine: m.Name, Kind: "state", From: old, To: m.State, Detail: detail}
	if err := s.store.UpdateMachine(ctx, m, ev); err != nil {
		return err
	}
	s.stateChanged(old, m, ev, now)
	s.log.Warn("machine unreachable", "machine", m.Name, "last_verdict", m.LastVerdictAt)
	return nil
}

// unreachableLimit is how long a machine may go without a verdict:
// UnreachableAfter of its intervals, each of which the jitter may lengthen.
func (s *Server) unreachableLimit(m store.Machine) time.Duration {
	return time.Duration(float64(time.Duration(s.cfg.UnreachableAfter)*s.interval(m)) * (1 + s.cfg.Jitter))
}

func latest(times ...time.Time) time.Time {
	var t time.Time
	for _, u := range times {
		if u.After(t) {
			t = u
		}
	}
	return t
}

// lockMachine serializes the read-modify-write sequences of one machine
// within this server and returns the unlock function.
//
// NOTE: this does not serialize several verifier replicas sharing one
// database, which would need row versions in the store.
func (s *Server) lockMachine(name string) func() {
	s.mu.Lock()
	l, ok := s.machineLocks[name]
	if !ok {
		l = &machineLock{}
		s.machineLocks[name] = l
	}
	l.users++
	s.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		s.mu.Lock()
		l.users--
		if l.users == 0 {
			delete(s.machineLocks, name)
		}
		s.mu.Unlock()
	}
}

type machineLock struct {
	mu    sync.Mutex
	users int // holders and waiters, guarded by Server.mu
}
