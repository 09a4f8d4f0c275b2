package delivery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/cairn-chat/cairn-caddy/internal/mlswire"
	"github.com/cairn-chat/cairn-caddy/internal/store"
	"github.com/cairn-chat/cairn-caddy/internal/xrpc"
)

// messageView is blue.catbird.mls.defs#messageView. It has no sender: the
// lexicon's view has none either, and the store keeps none.
type messageView struct {
	ID          string   `json:"id"`
	ConvoID     string   `json:"convoId"`
	Ciphertext  lexBytes `json:"ciphertext"`
	Epoch       int64    `json:"epoch"`
	Seq         int64    `json:"seq"`
	CreatedAt   string   `json:"createdAt"`
	MessageType string   `json:"messageType"`
}

func newMessageView(m store.Message) messageView {
	t := "app"
	if m.IsCommit {
		t = "commit"
	}
	return messageView{
		ID: m.MsgID, ConvoID: m.ConvoID, Ciphertext: m.Ciphertext, Epoch: m.Epoch, Seq: m.Seq,
		CreatedAt: datetime(m.ReceivedAt), MessageType: t,
	}
}

type sendMessageInput struct {
	ConvoID        string   `json:"convoId"`
	MsgID          string   `json:"msgId"`
	IdempotencyKey string   `json:"idempotencyKey"`
	Ciphertext     lexBytes `json:"ciphertext"`
	Epoch          *int64   `json:"epoch"`
	PaddedSize     *int64   `json:"paddedSize"`
	Delivery       string   `json:"delivery"`
}

type sendMessageOutput struct {
	MessageID  string `json:"messageId"`
	ReceivedAt string `json:"receivedAt"`
	Seq        int64  `json:"seq"`
	Epoch      int64  `json:"epoch"`
}

// validPaddedSize reports whether n is one of the lexicon's padding
// buckets: 512 to 8192 in powers of two, then multiples of 8192 up to
// 10 MiB.
func validPaddedSize(n int64) bool {
	switch n {
	case 512, 1024, 2048, 4096, 8192:
		return true
	}
	return n > 8192 && n <= 10<<20 && n%8192 == 0
}

// sendMessage appends a ciphertext to the conversation. The MLS framing,
// not the declared fields, decides: its group must be the conversation,
// its epoch the declared one; an application message may not be ahead of
// the conversation, and a commit goes through the epoch compare-and-swap
// (409 StaleEpoch for the loser). msgId is the idempotency key.
func (s *Service) sendMessage(ctx context.Context, c call) (any, error) {
	var in sendMessageInput
	if err := decodeBody(c.body, &in); err != nil {
		return nil, err
	}
	if err := convoField(in.ConvoID); err != nil {
		return nil, err
	}
	if err := requireKey("msgId", in.MsgID, 26); err != nil {
		return nil, err
	}
	if err := maxLen("idempotencyKey", in.IdempotencyKey, 36); err != nil {
		return nil, err
	}
	if in.Ciphertext == nil {
		return nil, badRequest("ciphertext is required")
	}
	if in.Epoch == nil {
		return nil, badRequest("epoch is required")
	}
	if in.PaddedSize == nil {
		return nil, badRequest("paddedSize is required")
	}
	if *in.Epoch < 0 {
		return nil, badRequest("epoch must be at least 0")
	}
	if len(in.Ciphertext) > s.cfg.MaxMessageBytes {
		return nil, xrpc.Errorf(http.StatusRequestEntityTooLarge, "MessageTooLarge", "ciphertext exceeds %d bytes", s.cfg.MaxMessageBytes)
	}
	if !validPaddedSize(*in.PaddedSize) {
		return nil, badRequest("paddedSize must be 512, 1024, 2048, 4096, 8192 or a multiple of 8192 up to 10 MiB")
	}
	if *in.PaddedSize != int64(len(in.Ciphertext)) {
		return nil, badRequest("paddedSize must equal the ciphertext length")
	}
	switch in.Delivery {
	case "", "persistent", "ephemeral":
	default:
		return nil, badRequest("delivery must be persistent or ephemeral")
	}
	convoID := normConvoID(in.ConvoID)
	h, err := parseFramed(in.Ciphertext, convoID)
	if err != nil {
		return nil, err
	}
	epoch, err := epochInt(h.Epoch)
	if err != nil {
		return nil, err
	}
	if epoch != *in.Epoch {
		return nil, fmt.Errorf("%w: declared %d, framed %d", ErrEpochMismatch, *in.Epoch, epoch)
	}
	if err := s.admitGroup(ctx, convoID); err != nil {
		return nil, err
	}
	sent := sentMessage{convoID: convoID, msgID: in.MsgID, epoch: epoch, ciphertext: in.Ciphertext,
		isCommit: h.ContentType == mlswire.ContentTypeCommit}
	var out sendMessageOutput
	if sent.isCommit {
		out, err = s.sendCommit(ctx, c, sent, *in.PaddedSize)
	} else {
		var m store.Message
		m, err = s.cfg.Store.AppendMessage(ctx, store.NewMessage{
			ConvoID: convoID, MsgID: in.MsgID, Epoch: epoch, Ciphertext: in.Ciphertext,
			PaddedSize: *in.PaddedSize, ExpiresAt: s.expiry(), Member: memberCheck(c.id),
		})
		out = sendMessageOutput{MessageID: m.MsgID, ReceivedAt: datetime(m.ReceivedAt), Seq: m.Seq, Epoch: m.Epoch}
	}
	if err != nil {
		return s.sendRefused(ctx, c.nsid, err, sent)
	}
	if s.cfg.OnChange != nil {
		s.cfg.OnChange(ctx, convoID)
	}
	return out, nil
}

// sendCommit appends a commit framed as a message, through the epoch
// compare-and-swap.
func (s *Service) sendCommit(ctx context.Context, c call, m sentMessage, paddedSize int64) (sendMessageOutput, error) {
	if _, err := s.member(ctx, m.convoID, c.id); err != nil {
		return sendMessageOutput{}, err
	}
	ch, err := s.cfg.Store.AppendCommit(ctx, m.convoID, store.NewCommit{
		Epoch: m.epoch, MsgID: m.msgID, Data: m.ciphertext, PaddedSize: paddedSize, ExpiresAt: s.expiry(),
	})
	if err != nil {
		return sendMessageOutput{}, err
	}
	return sendMessageOutput{MessageID: m.msgID, ReceivedAt: datetime(ch.ReceivedAt), Seq: ch.Seq, Epoch: m.epoch}, nil
}

// sentMessage is what a sendMessage call asks to store.
type sentMessage struct {
	convoID, msgID string
	epoch          int64
	ciphertext     []byte
	isCommit       bool
}

// sendRefused answers a refused sendMessage. The message row itself is
// the idempotency record: (convo, msgId) is unique, and unlike a record
// keyed by the caller, it links no sender to the message. So a refusal
// (msgId taken, the epoch a commit advanced, even the sender's membership
// that ended after the first attempt) is a retry when the conversation
// holds this very message, and replays its answer. A taken msgId holding
// other bytes is 422 IdempotencyKeyReused; any other refusal stands.
func (s *Service) sendRefused(ctx context.Context, nsid string, err error, m sentMessage) (any, error) {
	if s.mapError(nsid, err).Status >= 500 {
		return nil, err
	}
	stored, lerr := s.cfg.Store.Message(ctx, m.convoID, m.msgID)
	switch {
	case errors.Is(lerr, store.ErrNotFound):
		return nil, err
	case lerr != nil:
		return nil, lerr
	case stored.Epoch == m.epoch && stored.IsCommit == m.isCommit && bytes.Equal(stored.Ciphertext, m.ciphertext):
		return sendMessageOutput{MessageID: stored.MsgID, ReceivedAt: datetime(stored.ReceivedAt), Seq: stored.Seq, Epoch: stored.Epoch}, nil
	case errors.Is(err, store.ErrConflict):
		return nil, xrpc.Errorf(http.StatusUnprocessableEntity, "IdempotencyKeyReused", "msgId is already used in this conversation for a different message")
	}
	return nil, err
}

type gapInfo struct {
	HasGaps       bool    `json:"hasGaps"`
	MissingSeqs   []int64 `json:"missingSeqs"`
	TotalMessages int64   `json:"totalMessages"`
}

type getMessagesOutput struct {
	Messages []messageView `json:"messages"`
	LastSeq  *int64        `json:"lastSeq,omitempty"`
	GapInfo  *gapInfo      `json:"gapInfo,omitempty"`
}

// maxMissingSeqs bounds the missing sequence numbers one page reports.
const maxMissingSeqs = 1000

// getMessages pages through the conversation after sinceSeq, ascending.
// Gap information covers the page's range only (sinceSeq to the last
// returned message) and needs no scan: the missing numbers are read off
// the page itself, and totalMessages is the conversation's counter (the
// number of sequence numbers assigned so far).
func (s *Service) getMessages(ctx context.Context, c call) (any, error) {
	convoID, err := convoParam(c.params)
	if err != nil {
		return nil, err
	}
	limit, _, err := c.params.integer("limit", 1, 100, 50)
	if err != nil {
		return nil, err
	}
	since, _, err := c.params.integer("sinceSeq", 0, 1<<62, 0)
	if err != nil {
		return nil, err
	}
	if _, err := s.member(ctx, convoID, c.id); err != nil {
		return nil, err
	}
	page, err := s.cfg.Store.Messages(ctx, convoID, since, int(limit))
	if err != nil {
		return nil, fmt.Errorf("read messages: %w", err)
	}
	if since > page.ConvoLastSeq {
		return nil, fmt.Errorf("%w: sinceSeq beyond the last message", ErrInvalidCursor)
	}
	out := getMessagesOutput{Messages: make([]messageView, 0, len(page.Messages))}
	for _, m := range page.Messages {
		out.Messages = append(out.Messages, newMessageView(m))
	}
	if len(page.Messages) > 0 {
		last := page.Messages[len(page.Messages)-1].Seq
		out.LastSeq = &last
	}
	// Sequence numbers are assigned under the conversation's row lock and
	// become visible in order, so a number missing between sinceSeq and
	// the last returned message is gone (purged), never still in flight.
	// Beyond the last returned message nothing is claimed: the counter is
	// read after the rows, and a message committed in between is not
	// missing.
	var missing []int64
	next := since + 1
	for _, m := range page.Messages {
		for ; next < m.Seq && len(missing) < maxMissingSeqs; next++ {
			missing = append(missing, next)
		}
		next = m.Seq + 1
	}
	if len(missing) > 0 {
		out.GapInfo = &gapInfo{HasGaps: true, MissingSeqs: missing, TotalMessages: page.ConvoLastSeq}
	}
	return out, nil
}

// commitMessage is getCommits#commitMessage without its sender (see the
// package documentation, DEVIATIONS).
type commitMessage struct {
	Epoch      int64    `json:"epoch"`
	CommitData lexBytes `json:"commitData"`
	CreatedAt  string   `json:"createdAt"`
}

type getCommitsOutput struct {
	ConvoID string          `json:"convoId"`
	Commits []commitMessage `json:"commits"`
}

// maxCommitRange bounds the epochs one getCommits call may span.
const maxCommitRange = 1000

// getCommits returns the commits made in epochs fromEpoch..toEpoch.
func (s *Service) getCommits(ctx context.Context, c call) (any, error) {
	convoID, err := convoParam(c.params)
	if err != nil {
		return nil, err
	}
	from, ok, err := c.params.integer("fromEpoch", 0, 1<<62, 0)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, badRequest("parameter fromEpoch is required")
	}
	to, hasTo, err := c.params.integer("toEpoch", 0, 1<<62, -1)
	if err != nil {
		return nil, err
	}
	if hasTo && to < from {
		return nil, xrpc.Errorf(http.StatusBadRequest, "InvalidEpochRange", "toEpoch is before fromEpoch")
	}
	if _, err := s.member(ctx, convoID, c.id); err != nil {
		return nil, err
	}
	if !hasTo || to-from >= maxCommitRange {
		to = from + maxCommitRange - 1
	}
	commits, err := s.cfg.Store.Commits(ctx, convoID, from, to)
	if err != nil {
		return nil, fmt.Errorf("read commits: %w", err)
	}
	out := getCommitsOutput{ConvoID: convoID, Commits: make([]commitMessage, 0, len(commits))}
	for _, cm := range commits {
		out.Commits = append(out.Commits, commitMessage{Epoch: cm.Epoch, CommitData: cm.Data, CreatedAt: datetime(cm.CreatedAt)})
	}
	return out, nil
}
