package delivery

import (
	"context"
	"crypto/sha256"
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
	isCommit := h.ContentType == mlswire.ContentTypeCommit
	sum := sha256.Sum256(in.Ciphertext)
	hashed := struct {
		ConvoID, MsgID string
		Epoch          int64
		Ciphertext     []byte
	}{convoID, in.MsgID, epoch, sum[:]}
	pre := func(ctx context.Context) error {
		_, err := s.member(ctx, convoID, c.id)
		return err
	}
	return s.idempotent(ctx, c, convoID+"/"+in.MsgID, hashed, convoID, pre, func(ctx context.Context, tx store.Writer) (any, error) {
		if isCommit {
			ch, err := tx.AppendCommit(ctx, convoID, store.NewCommit{
				Epoch: epoch, MsgID: in.MsgID, Data: in.Ciphertext, PaddedSize: *in.PaddedSize, ExpiresAt: s.expiry(),
			})
			if err != nil {
				return nil, err
			}
			return sendMessageOutput{MessageID: in.MsgID, ReceivedAt: datetime(store.Bucket(s.cfg.Now())), Seq: ch.Seq, Epoch: epoch}, nil
		}
		m, err := tx.AppendMessage(ctx, store.NewMessage{
			ConvoID: convoID, MsgID: in.MsgID, Epoch: epoch, Ciphertext: in.Ciphertext,
			PaddedSize: *in.PaddedSize, ExpiresAt: s.expiry(),
		})
		if err != nil {
			return nil, err
		}
		return sendMessageOutput{MessageID: m.MsgID, ReceivedAt: datetime(m.ReceivedAt), Seq: m.Seq, Epoch: m.Epoch}, nil
	})
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
