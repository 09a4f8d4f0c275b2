package delivery

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/ratelimit"
	"github.com/cairn-chat/cairn-caddy/internal/store"
	"github.com/cairn-chat/cairn-caddy/internal/xrpc"
)

// Chat request limits and defaults (docs/moderation.md#chat-requests).
const (
	// DefaultChatRequestExpireDays is a recipient's autoExpireDays until it
	// sets its own (the lexicon's default).
	DefaultChatRequestExpireDays = 7
	// maxHeldMessages is the lexicon's maximum of held messages.
	maxHeldMessages = 5
	// maxPreviewBytes is previewText's maxLength.
	maxPreviewBytes = 200
	// maxReportDetails is declineChatRequest's reportDetails maxLength.
	maxReportDetails = 500
)

// Default quotas of sendChatRequest (Config.ChatRequestsPerSender and
// ChatRequestsPerRecipient).
var (
	DefaultChatRequestsPerSender    = ratelimit.Limit{Rate: 20, Period: time.Hour, Burst: 5}
	DefaultChatRequestsPerRecipient = ratelimit.Limit{Rate: 30, Period: time.Hour, Burst: 10}
)

// defaultChatCipherSuite is the suite of a conversation accepted without
// a Welcome (the server cannot read one from nothing; RFC 9420's
// mandatory-to-implement suite).
const defaultChatCipherSuite = "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519"

// Sentinel errors of the chat request methods. mapError names them per
// lexicon.
var (
	// ErrSelfRequest means a chat request to the caller itself.
	ErrSelfRequest = errors.New("delivery: chat request to self")
	// ErrRecipientNotFound means the recipient cannot be reached here: no
	// registered device or key package, or not opted in where the
	// operator requires it.
	ErrRecipientNotFound = errors.New("delivery: chat request recipient not found")
	// ErrRequestNotFound means no chat request by that id is visible to
	// the caller (or, for declineChatRequest, none pending).
	ErrRequestNotFound = errors.New("delivery: chat request not found")
	// ErrAlreadyProcessed means the request was already accepted, declined
	// or blocked.
	ErrAlreadyProcessed = errors.New("delivery: chat request already processed")
	// ErrChatRateLimited means a sender's or recipient's quota is spent.
	ErrChatRateLimited = errors.New("delivery: chat request quota spent")
)

// rateLimitedError carries the quota's Retry-After.
type rateLimitedError struct{ retryAfter int }

func (e *rateLimitedError) Error() string { return ErrChatRateLimited.Error() }
func (e *rateLimitedError) Unwrap() error { return ErrChatRateLimited }

// ChatPreviewSealer seals the previewText of chat requests before it is
// stored, and opens it for the recipient (*seal.Box).
type ChatPreviewSealer interface {
	Seal(ad, plaintext []byte) ([]byte, error)
	Open(ad, sealed []byte) ([]byte, error)
}

// previewAD binds a sealed preview to its request and recipient.
func previewAD(requestID, recipientDID string) []byte {
	return []byte("cairn chat preview\x00" + requestID + "\x00" + recipientDID)
}

// chatRequestError names the chat request sentinels; ok is false for any
// other error.
func chatRequestError(nsid string, err error) (xe *xrpc.Error, ok bool) {
	e := func(status int, name, msg string) (*xrpc.Error, bool) {
		return &xrpc.Error{Status: status, Name: name, Message: msg, Err: err}, true
	}
	var rl *rateLimitedError
	switch {
	case errors.Is(err, ErrSelfRequest):
		return e(http.StatusBadRequest, "SelfRequest", "cannot send a chat request to yourself")
	case errors.Is(err, store.ErrDuplicateRequest):
		return e(http.StatusConflict, "DuplicateRequest", "a pending chat request to this account exists")
	case errors.Is(err, store.ErrChatBlocked), errors.Is(err, ErrBlocked) && nsid == Namespace+"sendChatRequest":
		return e(http.StatusForbidden, "BlockedByRecipient", "the recipient does not accept chat requests from this account")
	case errors.Is(err, ErrRecipientNotFound):
		return e(http.StatusNotFound, "RecipientNotFound", "the recipient has no device on this service (or has not opted in)")
	case errors.As(err, &rl):
		xe, _ := e(http.StatusTooManyRequests, "RateLimited", "too many chat requests; retry later")
		xe.Header = http.Header{"Retry-After": {strconv.Itoa(rl.retryAfter)}}
		return xe, true
	case errors.Is(err, ErrChatRateLimited):
		xe, _ := e(http.StatusServiceUnavailable, "RateLimited", "chat request quotas cannot be checked now; retry later")
		xe.Header = http.Header{"Retry-After": {"5"}}
		return xe, true
	case errors.Is(err, ErrRequestNotFound):
		return e(http.StatusNotFound, "RequestNotFound", "no such chat request for this account")
	case errors.Is(err, store.ErrExpired):
		return e(http.StatusGone, "RequestExpired", "the chat request has expired")
	case errors.Is(err, ErrAlreadyProcessed):
		return e(http.StatusConflict, "AlreadyProcessed", "the chat request was already answered")
	}
	return nil, false
}

// chatRequestRoutes adds the chat request methods (issue 14).
func (s *Service) chatRequestRoutes(m map[string]method) {
	small := s.cfg.MaxBodyBytes
	// The held messages of one request are bounded together by
	// MaxMessageBytes, as base64.
	held := int64(s.cfg.MaxMessageBytes)*4/3 + small
	welcome := int64(1<<20)*4/3 + small
	q := func(h func(context.Context, call) (any, error)) method { return method{typ: xrpc.Query, handle: h} }
	p := func(limit int64, h func(context.Context, call) (any, error)) method {
		return method{typ: xrpc.Procedure, bodyLimit: limit, handle: h}
	}
	for name, h := range map[string]method{
		"sendChatRequest":           p(held, s.sendChatRequest),
		"acceptChatRequest":         p(welcome, s.acceptChatRequest),
		"declineChatRequest":        p(small, s.declineChatRequest),
		"listChatRequests":          q(s.listChatRequests),
		"getRequestCount":           q(s.getRequestCount),
		"getChatRequestSettings":    q(s.getChatRequestSettings),
		"updateChatRequestSettings": p(small, s.updateChatRequestSettings),
		"blockChatSender":           p(small, s.blockChatSender),
	} {
		m[Namespace+name] = h
	}
}

// chatRequests returns the chat request interface of a Writer that
// Idempotent handed out; both backends implement it on their transactions.
func chatRequests(tx store.Writer) (store.ChatRequests, error) {
	cr, ok := tx.(store.ChatRequests)
	if !ok {
		return nil, fmt.Errorf("store writer %T does not implement store.ChatRequests", tx)
	}
	return cr, nil
}

// newChatRequestID returns a request id: the bucketed creation time in
// milliseconds (6 bytes, so ids sort by age) and 10 random bytes, as 32
// hex digits. It is also a valid MLS group id: a 1:1 request's
// conversation takes it.
func newChatRequestID(now time.Time) string {
	var b [16]byte
	var ms [8]byte
	binary.BigEndian.PutUint64(ms[:], uint64(store.Bucket(now).UnixMilli()))
	copy(b[:6], ms[2:])
	_, _ = rand.Read(b[6:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// chatBlockHash is the stored form of "recipient blocks sender's chat
// requests": a keyed hash of the pair (Config.HashIdentity), so the table
// names nobody.
func (s *Service) chatBlockHash(recipientDID, senderDID string) []byte {
	pair := "cairn chat block\x00" + recipientDID + "\x00" + senderDID
	if s.cfg.HashIdentity != nil {
		return []byte(s.cfg.HashIdentity(pair))
	}
	sum := sha256.Sum256([]byte(pair))
	return sum[:]
}

// quotaKey is a limiter key for an account's chat request quota: a hash,
// never the DID, since limiter keys may reach Redis.
func (s *Service) quotaKey(kind, did string) string {
	if s.cfg.HashIdentity != nil {
		return "chat_request_" + kind + ":" + s.cfg.HashIdentity(did)
	}
	sum := sha256.Sum256([]byte(did))
	return "chat_request_" + kind + ":" + hex.EncodeToString(sum[:])
}

// checkQuotas spends one request of the sender's and the recipient's
// quotas. A limiter that cannot decide refuses (fail closed).
func (s *Service) checkQuotas(ctx context.Context, sender, recipient string) error {
	if s.cfg.ChatRequestLimiter == nil {
		return nil
	}
	for _, q := range []struct {
		kind, did string
		limit     ratelimit.Limit
	}{{"sender", sender, s.cfg.ChatRequestsPerSender}, {"recipient", recipient, s.cfg.ChatRequestsPerRecipient}} {
		res, err := s.cfg.ChatRequestLimiter.Allow(ctx, s.quotaKey(q.kind, q.did), q.limit)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrChatRateLimited, err)
		}
		if !res.Allowed {
			return &rateLimitedError{retryAfter: res.RetryAfterSeconds()}
		}
	}
	return nil
}

type heldMessageInput struct {
	Ciphertext lexBytes `json:"ciphertext"`
	PaddedSize *int64   `json:"paddedSize"`
	EphPubKey  lexBytes `json:"ephPubKey"`
}

type sendChatRequestInput struct {
	RecipientDID  string             `json:"recipientDid"`
	PreviewText   string             `json:"previewText"`
	HeldMessages  []heldMessageInput `json:"heldMessages"`
	IsGroupInvite bool               `json:"isGroupInvite"`
	GroupID       string             `json:"groupId"`
	// IdempotencyKey is this server's optional extension; without it the
	// request's own content is the key (see sendChatRequest).
	IdempotencyKey string `json:"idempotencyKey"`
}

type sendChatRequestOutput struct {
	RequestID string `json:"requestId"`
	Status    string `json:"status"`
	CreatedAt string `json:"createdAt"`
	ExpiresAt string `json:"expiresAt"`
	ConvoID   string `json:"convoId,omitempty"`
}

// decodeSendChatRequest decodes and checks a sendChatRequest body.
func (s *Service) decodeSendChatRequest(body []byte) (sendChatRequestInput, []store.HeldMessage, error) {
	var in sendChatRequestInput
	if err := decodeBody(body, &in); err != nil {
		return in, nil, err
	}
	if err := required("recipientDid", in.RecipientDID); err != nil {
		return in, nil, err
	}
	if !validDID(in.RecipientDID, false) {
		return in, nil, xrpc.Errorf(http.StatusBadRequest, "InvalidDid", "recipientDid is not a valid account DID")
	}
	if err := maxLen("previewText", in.PreviewText, maxPreviewBytes); err != nil {
		return in, nil, err
	}
	if err := maxLen("idempotencyKey", in.IdempotencyKey, 128); err != nil {
		return in, nil, err
	}
	switch {
	case in.IsGroupInvite && !validGroupID(in.GroupID):
		return in, nil, badRequest("a group invite needs groupId, the hex id of the conversation")
	case !in.IsGroupInvite && in.GroupID != "":
		return in, nil, badRequest("groupId is only for a group invite (isGroupInvite true)")
	}
	in.GroupID = normConvoID(in.GroupID)
	if len(in.HeldMessages) > maxHeldMessages {
		return in, nil, badRequest("heldMessages takes at most %d messages", maxHeldMessages)
	}
	var held []store.HeldMessage
	total := 0
	for i, m := range in.HeldMessages {
		if len(m.Ciphertext) == 0 || m.PaddedSize == nil {
			return in, nil, badRequest("heldMessages[%d]: ciphertext and paddedSize are required", i)
		}
		if !validPaddedSize(*m.PaddedSize) || *m.PaddedSize != int64(len(m.Ciphertext)) {
			return in, nil, badRequest("heldMessages[%d]: paddedSize must be a padding bucket (512 … 10 MiB) equal to the ciphertext length", i)
		}
		if len(m.EphPubKey) > 256 {
			return in, nil, badRequest("heldMessages[%d]: ephPubKey exceeds 256 bytes", i)
		}
		total += len(m.Ciphertext)
		if total > s.cfg.MaxMessageBytes {
			return in, nil, errTooLarge("heldMessages", s.cfg.MaxMessageBytes)
		}
		held = append(held, store.HeldMessage{Ciphertext: m.Ciphertext, PaddedSize: *m.PaddedSize, EphPubKey: m.EphPubKey})
	}
	return in, held, nil
}

// sendChatRequest serves blue.catbird.mls.sendChatRequest: the caller asks
// an account to chat, holding up to five messages of ciphertext until it
// answers. The request is refused to self, to an account that blocks the
// caller (on Bluesky or by blockChatSender), to an account with no device
// here, past either side's quota, and while a request of the pair is
// pending. The status is always "pending": the server does not read the
// follow graph, so nothing bypasses the request (docs/api.md).
//
// previewText is plaintext the server would see. Without a
// ChatPreviewSealer (the default) it is dropped unread; with one it is
// sealed under a key outside the database and cleared when the request
// closes.
//
// The lexicon has no idempotency key: the server's idempotencyKey
// extension, or else the recipient with a hash of the body, is the key. A
// retry of the same body replays the first answer; held messages are
// fresh ciphertext each time, so two distinct requests differ.
func (s *Service) sendChatRequest(ctx context.Context, c call) (any, error) {
	in, held, err := s.decodeSendChatRequest(c.body)
	if err != nil {
		return nil, err
	}
	if in.RecipientDID == c.id.DID {
		return nil, ErrSelfRequest
	}
	key := in.IdempotencyKey
	if key == "" {
		sum := sha256.Sum256(c.body)
		key = "chatRequest:" + in.RecipientDID + ":" + hex.EncodeToString(sum[:])
	}
	pre := func(ctx context.Context) error {
		if err := s.chatReachable(ctx, c.id.DID, in.RecipientDID); err != nil {
			return err
		}
		if in.IsGroupInvite {
			if _, err := s.member(ctx, in.GroupID, c.id); err != nil {
				return err
			}
		}
		return s.checkQuotas(ctx, c.id.DID, in.RecipientDID)
	}
	return s.idempotent(ctx, c, key, in, "", pre, func(ctx context.Context, tx store.Writer) (any, error) {
		cr, err := chatRequests(tx)
		if err != nil {
			return nil, err
		}
		days := DefaultChatRequestExpireDays
		switch st, err := cr.ChatRequestSettings(ctx, in.RecipientDID); {
		case err == nil:
			days = st.AutoExpireDays
		case !errors.Is(err, store.ErrNotFound):
			return nil, err
		}
		now := s.cfg.Now()
		r := store.ChatRequest{ID: newChatRequestID(now), SenderDID: c.id.DID, RecipientDID: in.RecipientDID,
			GroupID: in.GroupID, ExpiresAt: store.Bucket(now.Add(time.Duration(days) * 24 * time.Hour))}
		if in.PreviewText != "" && s.cfg.ChatPreviewSealer != nil {
			if r.SealedPreview, err = s.cfg.ChatPreviewSealer.Seal(previewAD(r.ID, r.RecipientDID), []byte(in.PreviewText)); err != nil {
				return nil, fmt.Errorf("seal preview: %w", err)
			}
		}
		r, err = cr.CreateChatRequest(ctx, r, held, s.chatBlockHash(in.RecipientDID, c.id.DID))
		if err != nil {
			return nil, err
		}
		return sendChatRequestOutput{RequestID: r.ID, Status: store.ChatRequestPending, CreatedAt: datetime(r.CreatedAt),
			ExpiresAt: datetime(r.ExpiresAt)}, nil
	})
}

// chatReachable applies the rules that keep a request from reaching its
// recipient: a Bluesky block either way, opt-in where required (the
// sender's own too, since accepting puts both in a conversation), and a
// recipient with a registered device or a published key package.
func (s *Service) chatReachable(ctx context.Context, sender, recipient string) error {
	if s.cfg.RequireOptIn {
		in, err := s.cfg.Store.OptedIn(ctx, []string{sender, recipient})
		if err != nil {
			return fmt.Errorf("read opt-ins: %w", err)
		}
		if _, ok := in[recipient]; !ok {
			return ErrRecipientNotFound
		}
		if _, ok := in[sender]; !ok {
			return ErrNotOptedIn
		}
	}
	devices, err := s.cfg.Store.Devices(ctx, recipient)
	if err != nil {
		return fmt.Errorf("read devices: %w", err)
	}
	if len(devices) == 0 {
		// A client without registered devices is known by its key
		// packages.
		st, err := s.cfg.Store.KeyPackageStats(ctx, recipient, "")
		if err != nil {
			return fmt.Errorf("read key package stats: %w", err)
		}
		if st.Total == 0 {
			return ErrRecipientNotFound
		}
	}
	return s.checkBlocksOnAdd(ctx, nil, []string{sender, recipient})
}

// visibleRequest reads a request addressed to the caller; any other is
// ErrRequestNotFound, so an id reveals nothing to others.
func (s *Service) visibleRequest(ctx context.Context, id string, c call) (store.ChatRequest, error) {
	r, err := s.cfg.Store.ChatRequest(ctx, id)
	if errors.Is(err, store.ErrNotFound) || err == nil && r.RecipientDID != c.id.DID {
		return store.ChatRequest{}, ErrRequestNotFound
	}
	if err != nil {
		return store.ChatRequest{}, fmt.Errorf("read chat request: %w", err)
	}
	return r, nil
}

// requestIDField checks a required requestId.
func requestIDField(id string) error {
	if err := required("requestId", id); err != nil {
		return err
	}
	return maxLen("requestId", id, 64)
}

// closeError maps a store answer to closing a request.
func closeError(err error, notPending error) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return ErrRequestNotFound
	case errors.Is(err, store.ErrNotPending):
		return notPending
	}
	return err
}

type acceptChatRequestInput struct {
	RequestID   string   `json:"requestId"`
	WelcomeData lexBytes `json:"welcomeData"`
}

type deliveredMessage struct {
	ID         string   `json:"id"`
	Ciphertext lexBytes `json:"ciphertext"`
	PaddedSize int64    `json:"paddedSize"`
	Sequence   int      `json:"sequence"`
	EphPubKey  lexBytes `json:"ephPubKey,omitempty"`
}

type acceptChatRequestOutput struct {
	ConvoID      string             `json:"convoId"`
	HeldMessages []deliveredMessage `json:"heldMessages"`
	AcceptedAt   string             `json:"acceptedAt"`
}

// acceptChatRequest serves blue.catbird.mls.acceptChatRequest, for the
// recipient. A 1:1 request becomes a conversation whose id is the request
// id (the recipient's client creates its MLS group with that group id):
// the recipient's device as admin and the requester as member, in one
// transaction with closing the request. With welcomeData, the MLS Welcome
// that adds the requester's device, the member row names that device and
// the Welcome waits for it (getWelcome); without, the requester is added
// as an account and joins later. A group invite's conversation exists: its
// id is returned, and a member adds the recipient as usual. The held
// messages are returned once and deleted.
func (s *Service) acceptChatRequest(ctx context.Context, c call) (any, error) {
	var in acceptChatRequestInput
	if err := decodeBody(c.body, &in); err != nil {
		return nil, err
	}
	if err := requestIDField(in.RequestID); err != nil {
		return nil, err
	}
	if len(in.WelcomeData) > 1<<20 {
		return nil, errTooLarge("welcomeData", 1<<20)
	}
	var nc *store.NewConvo
	pre := func(ctx context.Context) error {
		r, err := s.visibleRequest(ctx, in.RequestID, c)
		if err != nil {
			return err
		}
		switch r.Status {
		case store.ChatRequestExpired:
			return store.ErrExpired
		case store.ChatRequestPending:
		default:
			return ErrAlreadyProcessed
		}
		if err := s.checkOptIn(ctx, s.cfg.Store, []string{r.SenderDID, c.id.DID}); err != nil {
			return err
		}
		if err := s.checkBlocksOnAdd(ctx, nil, []string{r.SenderDID, c.id.DID}); err != nil {
			return err
		}
		if r.GroupID != "" {
			if len(in.WelcomeData) > 0 {
				return badRequest("welcomeData is for a 1:1 request: a group invite's recipient is added by a member of the group")
			}
			_, err := s.cfg.Store.Convo(ctx, r.GroupID)
			return err
		}
		nc, err = s.acceptedConvo(ctx, r, c, in.WelcomeData)
		return err
	}
	convoID := ""
	if validGroupID(in.RequestID) {
		convoID = normConvoID(in.RequestID)
	}
	req := struct{ RequestID, Welcome string }{in.RequestID, hex.EncodeToString(sha256Sum(in.WelcomeData))}
	return s.idempotent(ctx, c, "accept:"+in.RequestID, req, convoID, pre, func(ctx context.Context, tx store.Writer) (any, error) {
		cr, err := chatRequests(tx)
		if err != nil {
			return nil, err
		}
		r, held, err := cr.CloseChatRequest(ctx, in.RequestID, store.ChatRequestAccepted)
		if err != nil {
			return nil, closeError(err, ErrAlreadyProcessed)
		}
		out := acceptChatRequestOutput{ConvoID: r.GroupID, HeldMessages: make([]deliveredMessage, 0, len(held)), AcceptedAt: datetime(r.ClosedAt)}
		if r.GroupID == "" {
			if nc == nil {
				return nil, ErrAlreadyProcessed
			}
			if _, err := tx.CreateConvo(ctx, *nc); err != nil {
				return nil, err
			}
			out.ConvoID = nc.ID
		}
		for _, m := range held {
			out.HeldMessages = append(out.HeldMessages, deliveredMessage{ID: r.ID + "-" + strconv.Itoa(m.Seq),
				Ciphertext: m.Ciphertext, PaddedSize: m.PaddedSize, Sequence: m.Seq, EphPubKey: m.EphPubKey})
		}
		return out, nil
	})
}

func sha256Sum(b []byte) []byte {
	sum := sha256.Sum256(b)
	return sum[:]
}

// acceptedConvo is the conversation a 1:1 request becomes: its id is the
// request's, the caller's device is admin, and the requester joins by the
// Welcome's key packages that are its own (at least one when a Welcome is
// given), or as an account without one.
func (s *Service) acceptedConvo(ctx context.Context, r store.ChatRequest, c call, welcome []byte) (*store.NewConvo, error) {
	if !validGroupID(r.ID) {
		return nil, fmt.Errorf("chat request id %q is not a group id", r.ID)
	}
	creator := store.NewMember{MemberDID: memberDID(c.id), UserDID: c.id.DID, DeviceID: c.id.DeviceID, Role: store.RoleAdmin}
	nc := &store.NewConvo{ID: normConvoID(r.ID), CreatorDID: c.id.DID, CipherSuite: defaultChatCipherSuite}
	if len(welcome) == 0 {
		nc.Members = []store.NewMember{creator, {MemberDID: r.SenderDID, UserDID: r.SenderDID}}
		return nc, nil
	}
	w, err := parseWelcome(welcome)
	if err != nil {
		return nil, err
	}
	var joined []store.NewMember
	for _, ref := range w.NewMembers() {
		kp, err := s.cfg.Store.KeyPackageByHash(ctx, r.SenderDID, hex.EncodeToString(ref))
		if errors.Is(err, store.ErrKeyPackageNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("find key package: %w", err)
		}
		m := store.NewMember{MemberDID: r.SenderDID, UserDID: r.SenderDID, DeviceID: kp.DeviceID, KeyPackageRef: kp.Ref}
		if kp.DeviceID != "" {
			m.MemberDID = r.SenderDID + "#" + kp.DeviceID
		}
		joined = append(joined, m)
	}
	if len(joined) == 0 {
		return nil, fmt.Errorf("%w: welcomeData adds no key package of the requester", ErrInvalidMessage)
	}
	nc.CipherSuite = w.CipherSuite.String()
	nc.Epoch = 1
	nc.Members = append([]store.NewMember{creator}, joined...)
	nc.Welcome = &store.NewWelcome{Data: welcome}
	for _, m := range joined {
		nc.Welcome.Recipients = append(nc.Welcome.Recipients, m.MemberDID)
	}
	return nc, nil
}

type declineChatRequestInput struct {
	RequestID     string `json:"requestId"`
	ReportReason  string `json:"reportReason"`
	ReportDetails string `json:"reportDetails"`
}

// reportReasons are the lexicons' enum of decline and block reasons.
var reportReasons = map[string]bool{"": true, "spam": true, "harassment": true, "inappropriate": true, "other": true}

// declineChatRequest serves blue.catbird.mls.declineChatRequest: the
// recipient closes a pending request, whose held messages and preview are
// deleted. reportReason and reportDetails are checked and not kept: a
// chat request has no admins to report to, and the details are plaintext
// (docs/privacy.md). A request that is not pending is RequestNotFound,
// the lexicon's only error.
func (s *Service) declineChatRequest(ctx context.Context, c call) (any, error) {
	var in declineChatRequestInput
	if err := decodeBody(c.body, &in); err != nil {
		return nil, err
	}
	if err := requestIDField(in.RequestID); err != nil {
		return nil, err
	}
	if !reportReasons[in.ReportReason] {
		return nil, badRequest("reportReason must be spam, harassment, inappropriate or other")
	}
	if err := maxLen("reportDetails", in.ReportDetails, maxReportDetails); err != nil {
		return nil, err
	}
	pre := func(ctx context.Context) error {
		r, err := s.visibleRequest(ctx, in.RequestID, c)
		if err != nil {
			return err
		}
		if r.Status != store.ChatRequestPending {
			return ErrRequestNotFound
		}
		return nil
	}
	return s.idempotent(ctx, c, "decline:"+in.RequestID, in.RequestID, "", pre, func(ctx context.Context, tx store.Writer) (any, error) {
		cr, err := chatRequests(tx)
		if err != nil {
			return nil, err
		}
		if _, _, err := cr.CloseChatRequest(ctx, in.RequestID, store.ChatRequestDeclined); err != nil {
			if errors.Is(err, store.ErrExpired) {
				return nil, ErrRequestNotFound
			}
			return nil, closeError(err, ErrRequestNotFound)
		}
		return successOutput{Success: true}, nil
	})
}

// chatRequestView is listChatRequests#chatRequest.
type chatRequestView struct {
	ID            string `json:"id"`
	SenderDID     string `json:"senderDid"`
	Status        string `json:"status"`
	CreatedAt     string `json:"createdAt"`
	ExpiresAt     string `json:"expiresAt"`
	PreviewText   string `json:"previewText,omitempty"`
	MessageCount  int    `json:"messageCount"`
	IsGroupInvite bool   `json:"isGroupInvite"`
	GroupID       string `json:"groupId,omitempty"`
}

type listChatRequestsOutput struct {
	Requests []chatRequestView `json:"requests"`
	Cursor   string            `json:"cursor,omitempty"`
}

// chatStatuses are listChatRequests' status enum.
var chatStatuses = map[string]bool{store.ChatRequestPending: true, store.ChatRequestAccepted: true,
	store.ChatRequestDeclined: true, store.ChatRequestBlocked: true, store.ChatRequestExpired: true}

// listChatRequests serves blue.catbird.mls.listChatRequests: the requests
// the caller received, newest first, pending ones by default. A sealed
// preview is opened for the recipient; one that does not open (the key
// file was replaced) is left out.
func (s *Service) listChatRequests(ctx context.Context, c call) (any, error) {
	limit, _, err := c.params.integer("limit", 1, 100, 50)
	if err != nil {
		return nil, err
	}
	cursor, err := c.params.str("cursor", 64)
	if err != nil {
		return nil, err
	}
	status, err := c.params.str("status", 16)
	if err != nil {
		return nil, err
	}
	if status == "" {
		status = store.ChatRequestPending
	}
	if !chatStatuses[status] {
		return nil, badRequest("status must be pending, accepted, declined, blocked or expired")
	}
	rs, err := s.cfg.Store.ChatRequestsFor(ctx, c.id.DID, status, cursor, int(limit))
	if err != nil {
		return nil, fmt.Errorf("list chat requests: %w", err)
	}
	out := listChatRequestsOutput{Requests: make([]chatRequestView, 0, len(rs))}
	for _, r := range rs {
		v := chatRequestView{ID: r.ID, SenderDID: r.SenderDID, Status: r.Status, CreatedAt: datetime(r.CreatedAt),
			ExpiresAt: datetime(r.ExpiresAt), MessageCount: r.MessageCount, IsGroupInvite: r.GroupID != "", GroupID: r.GroupID}
		if len(r.SealedPreview) > 0 && s.cfg.ChatPreviewSealer != nil {
			if text, err := s.cfg.ChatPreviewSealer.Open(previewAD(r.ID, r.RecipientDID), r.SealedPreview); err == nil {
				v.PreviewText = string(text)
			}
		}
		out.Requests = append(out.Requests, v)
	}
	if len(rs) == int(limit) {
		out.Cursor = rs[len(rs)-1].ID
	}
	return out, nil
}

type getRequestCountOutput struct {
	PendingCount  int    `json:"pendingCount"`
	LastRequestAt string `json:"lastRequestAt,omitempty"`
}

// getRequestCount serves blue.catbird.mls.getRequestCount: how many
// requests await the caller, and when the newest came.
func (s *Service) getRequestCount(ctx context.Context, c call) (any, error) {
	n, latest, err := s.cfg.Store.PendingChatRequests(ctx, c.id.DID)
	if err != nil {
		return nil, fmt.Errorf("count chat requests: %w", err)
	}
	return getRequestCountOutput{PendingCount: n, LastRequestAt: optDatetime(latest)}, nil
}

type chatRequestSettingsView struct {
	AllowFollowersBypass bool `json:"allowFollowersBypass"`
	AllowFollowingBypass bool `json:"allowFollowingBypass"`
	AutoExpireDays       int  `json:"autoExpireDays"`
}

// chatSettings reads the caller's settings, or the lexicon's defaults.
func (s *Service) chatSettings(ctx context.Context, did string) (store.ChatRequestSettings, error) {
	st, err := s.cfg.Store.ChatRequestSettings(ctx, did)
	if errors.Is(err, store.ErrNotFound) {
		return store.ChatRequestSettings{DID: did, AllowFollowersBypass: true, AutoExpireDays: DefaultChatRequestExpireDays}, nil
	}
	if err != nil {
		return store.ChatRequestSettings{}, fmt.Errorf("read chat request settings: %w", err)
	}
	return st, nil
}

func newChatSettingsView(st store.ChatRequestSettings) chatRequestSettingsView {
	return chatRequestSettingsView{AllowFollowersBypass: st.AllowFollowersBypass, AllowFollowingBypass: st.AllowFollowingBypass,
		AutoExpireDays: st.AutoExpireDays}
}

// getChatRequestSettings serves blue.catbird.mls.getChatRequestSettings.
func (s *Service) getChatRequestSettings(ctx context.Context, c call) (any, error) {
	st, err := s.chatSettings(ctx, c.id.DID)
	if err != nil {
		return nil, err
	}
	return newChatSettingsView(st), nil
}

type updateChatRequestSettingsInput struct {
	AllowFollowersBypass *bool `json:"allowFollowersBypass"`
	AllowFollowingBypass *bool `json:"allowFollowingBypass"`
	AutoExpireDays       *int  `json:"autoExpireDays"`
}

// updateChatRequestSettings serves
// blue.catbird.mls.updateChatRequestSettings: the fields given replace the
// caller's settings. It is naturally idempotent (the same body sets the
// same values) and takes no key. The bypass settings are stored and
// returned but bypass nothing: the server does not read the follow graph
// (docs/api.md). autoExpireDays applies to requests sent from then on.
func (s *Service) updateChatRequestSettings(ctx context.Context, c call) (any, error) {
	var in updateChatRequestSettingsInput
	if err := decodeBody(c.body, &in); err != nil {
		return nil, err
	}
	if in.AutoExpireDays != nil && (*in.AutoExpireDays < 1 || *in.AutoExpireDays > 30) {
		return nil, badRequest("autoExpireDays must be between 1 and 30")
	}
	st, err := s.chatSettings(ctx, c.id.DID)
	if err != nil {
		return nil, err
	}
	if in.AllowFollowersBypass != nil {
		st.AllowFollowersBypass = *in.AllowFollowersBypass
	}
	if in.AllowFollowingBypass != nil {
		st.AllowFollowingBypass = *in.AllowFollowingBypass
	}
	if in.AutoExpireDays != nil {
		st.AutoExpireDays = *in.AutoExpireDays
	}
	if st, err = s.cfg.Store.PutChatRequestSettings(ctx, st); err != nil {
		return nil, fmt.Errorf("update chat request settings: %w", err)
	}
	return newChatSettingsView(st), nil
}

type blockChatSenderInput struct {
	SenderDID string `json:"senderDid"`
	RequestID string `json:"requestId"`
	Reason    string `json:"reason"`
}

type blockChatSenderOutput struct {
	Success      bool `json:"success"`
	BlockedCount int  `json:"blockedCount"`
}

// blockChatSender serves blue.catbird.mls.blockChatSender: the caller
// refuses every future request from senderDid and closes its pending ones
// as blocked (their messages and previews deleted). What is stored is a
// keyed hash of the pair, never the two DIDs. reason is checked and not
// kept. requestId, when given, must be a request senderDid sent the
// caller. The sender's DID is the idempotency key: blocking twice is one
// block.
func (s *Service) blockChatSender(ctx context.Context, c call) (any, error) {
	var in blockChatSenderInput
	if err := decodeBody(c.body, &in); err != nil {
		return nil, err
	}
	if err := required("senderDid", in.SenderDID); err != nil {
		return nil, err
	}
	if !validDID(in.SenderDID, false) {
		return nil, xrpc.Errorf(http.StatusBadRequest, "InvalidDid", "senderDid is not a valid account DID")
	}
	if in.SenderDID == c.id.DID {
		return nil, badRequest("cannot block yourself")
	}
	if !reportReasons[in.Reason] {
		return nil, badRequest("reason must be spam, harassment, inappropriate or other")
	}
	if err := maxLen("requestId", in.RequestID, 64); err != nil {
		return nil, err
	}
	pre := func(ctx context.Context) error {
		if in.RequestID == "" {
			return nil
		}
		r, err := s.visibleRequest(ctx, in.RequestID, c)
		if err != nil {
			return err
		}
		if r.SenderDID != in.SenderDID {
			return badRequest("requestId is not a request from senderDid")
		}
		return nil
	}
	return s.idempotent(ctx, c, "blockSender:"+in.SenderDID, in.SenderDID, "", pre, func(ctx context.Context, tx store.Writer) (any, error) {
		cr, err := chatRequests(tx)
		if err != nil {
			return nil, err
		}
		n, err := cr.BlockChatSender(ctx, c.id.DID, in.SenderDID, s.chatBlockHash(c.id.DID, in.SenderDID))
		if err != nil {
			return nil, err
		}
		return blockChatSenderOutput{Success: true, BlockedCount: n}, nil
	})
}
