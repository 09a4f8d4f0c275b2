package delivery

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/caller"
	"github.com/cairn-chat/cairn-caddy/internal/mlswire"
	"github.com/cairn-chat/cairn-caddy/internal/store"
	"github.com/cairn-chat/cairn-caddy/internal/xrpc"
)

// maxKeyPackageB64 is the lexicon's maxLength of a base64 key package.
const maxKeyPackageB64 = 65536

// keyPackage checks an uploaded key package and returns the record to
// store: it must parse and verify (leaf and package signatures), be of the
// declared suite, be unexpired, and carry a basic credential whose
// identity is the caller's DID or did#device for the caller's device (for
// device, when set: that device). Its expiry is its own lifetime's end,
// capped by Config.MaxKeyPackageLifetime and by a declared expires.
func (s *Service) keyPackage(id caller.Identity, device, b64, suiteName, expires string) (store.KeyPackage, error) {
	if b64 == "" {
		return store.KeyPackage{}, badRequest("keyPackage is required")
	}
	if len(b64) > maxKeyPackageB64 {
		return store.KeyPackage{}, badRequest("keyPackage exceeds %d characters", maxKeyPackageB64)
	}
	if suiteName == "" {
		return store.KeyPackage{}, badRequest("cipherSuite is required")
	}
	suite, ok := suiteByName(suiteName)
	if !ok {
		return store.KeyPackage{}, fmt.Errorf("%w: %q", ErrInvalidCipherSuite, suiteName)
	}
	now := s.cfg.Now()
	limit := now.Add(s.cfg.MaxKeyPackageLifetime)
	expiry := limit
	if expires != "" {
		t, err := time.Parse(time.RFC3339Nano, expires)
		if err != nil {
			return store.KeyPackage{}, badRequest("expires must be an RFC 3339 datetime")
		}
		// An hour of slack absorbs clock skew and clients that compute
		// exactly 90 days from their own clock.
		if t.After(limit.Add(time.Hour)) {
			return store.KeyPackage{}, ErrExpirationTooFar
		}
		if !t.After(now) {
			return store.KeyPackage{}, fmt.Errorf("%w: expires is in the past", ErrInvalidKeyPackage)
		}
		if t.Before(expiry) {
			expiry = t
		}
	}
	data, err := xrpc.DecodeBase64(b64)
	if err != nil {
		return store.KeyPackage{}, badRequest("keyPackage is not valid base64")
	}
	kp, err := mlswire.ParseKeyPackage(data)
	if err != nil {
		return store.KeyPackage{}, fmt.Errorf("%w: %v", ErrInvalidKeyPackage, err)
	}
	if kp.CipherSuite != suite {
		return store.KeyPackage{}, fmt.Errorf("%w: key package is %v, declared %v", ErrInvalidCipherSuite, kp.CipherSuite, suite)
	}
	if err := kp.Verify(); err != nil {
		if errors.Is(err, mlswire.ErrUnsupportedCipherSuite) {
			return store.KeyPackage{}, fmt.Errorf("%w: %v", ErrInvalidCipherSuite, err)
		}
		return store.KeyPackage{}, fmt.Errorf("%w: %v", ErrInvalidKeyPackage, err)
	}
	ident, ok := kp.Credential().BasicIdentity()
	if !ok {
		return store.KeyPackage{}, fmt.Errorf("%w: not a basic credential", ErrIdentityMismatch)
	}
	user, dev := splitDID(string(ident))
	switch {
	case user != id.DID:
		return store.KeyPackage{}, ErrIdentityMismatch
	case dev != "" && id.DeviceID != "" && dev != id.DeviceID:
		return store.KeyPackage{}, fmt.Errorf("%w: another device", ErrIdentityMismatch)
	case dev != "" && device != "" && dev != device:
		return store.KeyPackage{}, fmt.Errorf("%w: another device", ErrIdentityMismatch)
	case strings.Contains(string(ident), "#") && dev == "":
		return store.KeyPackage{}, ErrIdentityMismatch
	}
	lt := kp.Lifetime()
	if end := lt.End(); end.Before(expiry) {
		expiry = end
	}
	if !expiry.After(now) {
		return store.KeyPackage{}, fmt.Errorf("%w: expired", ErrInvalidKeyPackage)
	}
	ref, err := kp.Ref()
	if err != nil {
		return store.KeyPackage{}, fmt.Errorf("%w: %v", ErrInvalidKeyPackage, err)
	}
	lastResort := false
	for _, e := range kp.Extensions {
		if e.Type == extensionTypeLastResort {
			lastResort = true
		}
	}
	return store.KeyPackage{
		Ref: hex.EncodeToString(ref), OwnerDID: id.DID, DeviceID: dev, CipherSuite: suite.String(),
		Data: data, ExpiresAt: expiry.UTC(), LastResort: lastResort,
	}, nil
}

type publishKeyPackageInput struct {
	KeyPackage     string `json:"keyPackage"`
	IdempotencyKey string `json:"idempotencyKey"`
	CipherSuite    string `json:"cipherSuite"`
	Expires        string `json:"expires"`
}

// publishKeyPackage stores one of the caller's key packages.
func (s *Service) publishKeyPackage(ctx context.Context, c call) (any, error) {
	var in publishKeyPackageInput
	if err := decodeBody(c.body, &in); err != nil {
		return nil, err
	}
	if err := requireKey("idempotencyKey", in.IdempotencyKey, 128); err != nil {
		return nil, err
	}
	kp, err := s.keyPackage(c.id, "", in.KeyPackage, in.CipherSuite, in.Expires)
	if err != nil {
		return nil, err
	}
	return s.idempotent(ctx, c, in.IdempotencyKey, in, "", nil, func(ctx context.Context, tx store.Writer) (any, error) {
		if err := tx.PutKeyPackage(ctx, kp, s.cfg.MaxKeyPackagesPerDevice); err != nil {
			return nil, err
		}
		return struct{}{}, nil
	})
}

// keyPackageItem is publishKeyPackages#keyPackageItem (and
// registerDevice's, which lacks idempotencyKey).
type keyPackageItem struct {
	KeyPackage     string `json:"keyPackage"`
	CipherSuite    string `json:"cipherSuite"`
	Expires        string `json:"expires"`
	IdempotencyKey string `json:"idempotencyKey,omitempty"`
}

type publishKeyPackagesInput struct {
	KeyPackages []keyPackageItem `json:"keyPackages"`
}

type batchError struct {
	Index int    `json:"index"`
	Error string `json:"error"`
}

type publishKeyPackagesOutput struct {
	Succeeded int          `json:"succeeded"`
	Failed    int          `json:"failed"`
	Errors    []batchError `json:"errors,omitempty"`
}

// publishKeyPackages stores up to 100 key packages, each on its own: a bad
// package fails alone and is reported in errors. It is naturally
// idempotent: re-publishing a package the caller already has changes
// nothing, so the per-item idempotencyKey is accepted and not needed.
func (s *Service) publishKeyPackages(ctx context.Context, c call) (any, error) {
	var in publishKeyPackagesInput
	if err := decodeBody(c.body, &in); err != nil {
		return nil, err
	}
	if len(in.KeyPackages) == 0 {
		return nil, badRequest("keyPackages is required")
	}
	if len(in.KeyPackages) > 100 {
		return nil, xrpc.Errorf(http.StatusBadRequest, "BatchTooLarge", "at most 100 key packages per batch")
	}
	var out publishKeyPackagesOutput
	for i, item := range in.KeyPackages {
		err := s.putItem(ctx, c.id, "", item)
		if err == nil {
			out.Succeeded++
			continue
		}
		xe := s.mapError(c.nsid, err)
		if xe.Status >= 500 {
			return nil, err
		}
		out.Failed++
		out.Errors = append(out.Errors, batchError{Index: i, Error: xe.Name + ": " + xe.Message})
	}
	return out, nil
}

// putItem checks and stores one key package of a batch.
func (s *Service) putItem(ctx context.Context, id caller.Identity, device string, item keyPackageItem) error {
	if item.Expires == "" {
		return badRequest("expires is required")
	}
	kp, err := s.keyPackage(id, device, item.KeyPackage, item.CipherSuite, item.Expires)
	if err != nil {
		return err
	}
	if device != "" && kp.DeviceID == "" {
		kp.DeviceID = device
	}
	if err := s.cfg.Store.PutKeyPackage(ctx, kp, s.cfg.MaxKeyPackagesPerDevice); err != nil {
		return fmt.Errorf("store key package: %w", err)
	}
	return nil
}

// keyPackageRefView is blue.catbird.mls.defs#keyPackageRef.
type keyPackageRefView struct {
	DID            string `json:"did"`
	KeyPackage     string `json:"keyPackage"`
	KeyPackageHash string `json:"keyPackageHash"`
	CipherSuite    string `json:"cipherSuite"`
}

type getKeyPackagesOutput struct {
	KeyPackages []keyPackageRefView `json:"keyPackages"`
	Missing     []string            `json:"missing,omitempty"`
}

// getKeyPackages hands out one key package per device of each DID,
// consuming it (a device's last-resort package is handed out unconsumed
// when it has nothing else). DIDs with none are reported as missing.
func (s *Service) getKeyPackages(ctx context.Context, c call) (any, error) {
	dids, err := c.params.list("dids", 1000, 2048)
	if err != nil {
		return nil, err
	}
	if len(dids) == 0 {
		return nil, badRequest("parameter dids is required")
	}
	suiteName, err := c.params.str("cipherSuite", 128)
	if err != nil {
		return nil, err
	}
	if suiteName != "" {
		if _, ok := suiteByName(suiteName); !ok {
			return nil, fmt.Errorf("%w: %q", ErrInvalidCipherSuite, suiteName)
		}
	}
	seen := map[string]bool{}
	var owners []string
	for _, d := range dids {
		if !validDID(d, false) {
			return nil, xrpc.Errorf(http.StatusBadRequest, "InvalidDid", "one or more DIDs are invalid")
		}
		if !seen[d] {
			seen[d] = true
			owners = append(owners, d)
		}
	}
	if len(owners) > 100 {
		return nil, xrpc.Errorf(http.StatusBadRequest, "TooManyDids", "at most 100 DIDs per request")
	}
	kps, err := s.cfg.Store.ClaimKeyPackages(ctx, owners, suiteName)
	if err != nil {
		return nil, fmt.Errorf("claim key packages: %w", err)
	}
	out := getKeyPackagesOutput{KeyPackages: make([]keyPackageRefView, 0, len(kps))}
	found := map[string]bool{}
	for _, kp := range kps {
		found[kp.OwnerDID] = true
		out.KeyPackages = append(out.KeyPackages, keyPackageRefView{
			DID: kp.OwnerDID, KeyPackage: encodeB64URL(kp.Data), KeyPackageHash: kp.Ref, CipherSuite: kp.CipherSuite,
		})
	}
	for _, d := range owners {
		if !found[d] {
			out.Missing = append(out.Missing, d)
		}
	}
	return out, nil
}

type cipherSuiteStats struct {
	CipherSuite string `json:"cipherSuite"`
	Available   int    `json:"available"`
	Consumed    int    `json:"consumed"`
}

type getKeyPackageStatsOutput struct {
	Available               int                `json:"available"`
	Threshold               int                `json:"threshold"`
	NeedsReplenish          bool               `json:"needsReplenish"`
	Total                   int                `json:"total"`
	Consumed                int                `json:"consumed"`
	ConsumedLast24h         int                `json:"consumedLast24h"`
	ConsumedLast7d          int                `json:"consumedLast7d"`
	AverageDailyConsumption int                `json:"averageDailyConsumption"`
	PredictedDepletionDays  *int               `json:"predictedDepletionDays,omitempty"`
	OldestExpiresIn         string             `json:"oldestExpiresIn,omitempty"`
	ByCipherSuite           []cipherSuiteStats `json:"byCipherSuite,omitempty"`
}

// getKeyPackageStats reports the caller's key package inventory. Only the
// caller's own DID may be asked for.
func (s *Service) getKeyPackageStats(ctx context.Context, c call) (any, error) {
	did, err := c.params.str("did", 2048)
	if err != nil {
		return nil, err
	}
	if did != "" && !validDID(did, false) {
		return nil, xrpc.Errorf(http.StatusBadRequest, "InvalidDid", "did is not a valid DID")
	}
	if did != "" && did != c.id.DID {
		return nil, ErrForbidden
	}
	suite, err := c.params.str("cipherSuite", 128)
	if err != nil {
		return nil, err
	}
	st, err := s.cfg.Store.KeyPackageStats(ctx, c.id.DID, suite)
	if err != nil {
		return nil, fmt.Errorf("key package stats: %w", err)
	}
	out := getKeyPackageStatsOutput{
		Available: st.Available, Threshold: s.cfg.KeyPackageThreshold, Total: st.Total, Consumed: st.Consumed,
		ConsumedLast24h: st.Consumed24h, ConsumedLast7d: st.Consumed7d,
		AverageDailyConsumption: st.Consumed7d * 100 / 7,
	}
	depleting := false
	if st.Consumed7d > 0 {
		days := st.Available * 700 / st.Consumed7d
		out.PredictedDepletionDays = &days
		depleting = days < 300
	}
	out.NeedsReplenish = st.Available < s.cfg.KeyPackageThreshold || depleting
	if !st.OldestExpiry.IsZero() {
		out.OldestExpiresIn = humanDuration(st.OldestExpiry.Sub(s.cfg.Now()))
	}
	for _, cs := range st.ByCipherSuite {
		out.ByCipherSuite = append(out.ByCipherSuite, cipherSuiteStats{CipherSuite: cs.CipherSuite, Available: cs.Available, Consumed: cs.Consumed})
	}
	return out, nil
}

// humanDuration renders d as "23d 4h" (or "0h").
func humanDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	days := int(d / (24 * time.Hour))
	hours := int(d % (24 * time.Hour) / time.Hour)
	if days > 0 {
		return fmt.Sprintf("%dd %dh", days, hours)
	}
	return fmt.Sprintf("%dh", hours)
}

type consumedPackageView struct {
	KeyPackageHash string `json:"keyPackageHash"`
	UsedInGroup    string `json:"usedInGroup,omitempty"`
	ConsumedAt     string `json:"consumedAt"`
	CipherSuite    string `json:"cipherSuite,omitempty"`
}

type getKeyPackageStatusOutput struct {
	TotalUploaded    int                   `json:"totalUploaded"`
	Available        int                   `json:"available"`
	Consumed         int                   `json:"consumed"`
	ConsumedPackages []consumedPackageView `json:"consumedPackages"`
	Cursor           string                `json:"cursor,omitempty"`
}

// getKeyPackageStatus reports the caller's inventory and pages through its
// consumed packages, most recent first.
func (s *Service) getKeyPackageStatus(ctx context.Context, c call) (any, error) {
	limit, _, err := c.params.integer("limit", 1, 100, 20)
	if err != nil {
		return nil, err
	}
	cursor, err := c.params.str("cursor", 512)
	if err != nil {
		return nil, err
	}
	st, err := s.cfg.Store.KeyPackageStats(ctx, c.id.DID, "")
	if err != nil {
		return nil, fmt.Errorf("key package stats: %w", err)
	}
	kps, next, err := s.cfg.Store.ConsumedKeyPackages(ctx, c.id.DID, cursor, int(limit))
	if err != nil {
		return nil, fmt.Errorf("consumed key packages: %w", err)
	}
	out := getKeyPackageStatusOutput{
		TotalUploaded: st.Total, Available: st.Available, Consumed: st.Consumed,
		ConsumedPackages: make([]consumedPackageView, 0, len(kps)), Cursor: next,
	}
	for _, kp := range kps {
		out.ConsumedPackages = append(out.ConsumedPackages, consumedPackageView{
			KeyPackageHash: kp.Ref, UsedInGroup: kp.UsedInConvo, ConsumedAt: datetime(kp.ConsumedAt), CipherSuite: kp.CipherSuite,
		})
	}
	return out, nil
}

type syncKeyPackagesInput struct {
	LocalHashes []string `json:"localHashes"`
	DeviceID    string   `json:"deviceId"`
}

type syncKeyPackagesOutput struct {
	ServerHashes       []string `json:"serverHashes"`
	OrphanedCount      int      `json:"orphanedCount"`
	DeletedCount       int      `json:"deletedCount"`
	OrphanedHashes     []string `json:"orphanedHashes,omitempty"`
	RemainingAvailable int      `json:"remainingAvailable"`
	DeviceID           string   `json:"deviceId"`
}

// syncKeyPackages deletes the caller's device's available key packages
// that the device no longer holds. It is naturally idempotent: a retry
// finds nothing more to delete.
func (s *Service) syncKeyPackages(ctx context.Context, c call) (any, error) {
	var in syncKeyPackagesInput
	if err := decodeBody(c.body, &in); err != nil {
		return nil, err
	}
	if err := required("deviceId", in.DeviceID); err != nil {
		return nil, err
	}
	if err := maxLen("deviceId", in.DeviceID, 128); err != nil {
		return nil, err
	}
	if in.LocalHashes == nil {
		return nil, badRequest("localHashes is required")
	}
	if len(in.LocalHashes) > 200 {
		return nil, badRequest("localHashes takes at most 200 hashes")
	}
	keep := make([]string, 0, len(in.LocalHashes))
	for _, h := range in.LocalHashes {
		if err := maxLen("localHashes item", h, 128); err != nil {
			return nil, err
		}
		keep = append(keep, strings.ToLower(h))
	}
	res, err := s.cfg.Store.SyncKeyPackages(ctx, c.id.DID, in.DeviceID, keep)
	if err != nil {
		return nil, fmt.Errorf("sync key packages: %w", err)
	}
	out := syncKeyPackagesOutput{
		ServerHashes: res.Remaining, OrphanedCount: len(res.Deleted), DeletedCount: len(res.Deleted),
		OrphanedHashes: res.Deleted, RemainingAvailable: len(res.Remaining), DeviceID: in.DeviceID,
	}
	if out.ServerHashes == nil {
		out.ServerHashes = []string{}
	}
	return out, nil
}
