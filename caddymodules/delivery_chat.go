package caddymodules

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/cairn-chat/cairn-caddy/internal/delivery"
	"github.com/cairn-chat/cairn-caddy/internal/ratelimit"
	"github.com/cairn-chat/cairn-caddy/internal/seal"
)

// chatPreviewKeyFile is the key chat request previews are sealed under,
// in the data directory (backups carry it with the other key files).
const chatPreviewKeyFile = "chat-preview.key"

// chatRequestSetup is what cairn_delivery gives the chat request methods.
type chatRequestSetup struct {
	// previews is nil (an untyped nil, so the service sees none) unless
	// previews are on.
	previews                delivery.ChatPreviewSealer
	limiter                 ratelimit.Limiter
	perSender, perRecipient ratelimit.Limit
}

// chatRequestLimit parses a requests/period quota; "" is def.
func chatRequestLimit(v string, def ratelimit.Limit) (ratelimit.Limit, error) {
	if v == "" {
		return def, nil
	}
	rate, period, err := ratelimit.ParseRate(v)
	if err != nil {
		return ratelimit.Limit{}, err
	}
	return ratelimit.Limit{Rate: rate, Period: period}, nil
}

// chatRequests builds the chat request quotas over the app's limiter
// (shared through Redis when there is one, failing over to the node's
// own) and, when previews are on, the preview key: read from the data
// directory, or made there on first use. It runs when the service is
// built, after the app started, never in Provision.
func (d *Delivery) chatRequests() (chatRequestSetup, error) {
	var st chatRequestSetup
	var err error
	if st.perSender, err = chatRequestLimit(d.ChatRequestSenderRate, delivery.DefaultChatRequestsPerSender); err != nil {
		return st, fmt.Errorf("chat_request_sender_rate: %w", err)
	}
	if st.perRecipient, err = chatRequestLimit(d.ChatRequestRecipientRate, delivery.DefaultChatRequestsPerRecipient); err != nil {
		return st, fmt.Errorf("chat_request_recipient_rate: %w", err)
	}
	st.limiter = d.app.LocalLimiter()
	if d.app.RedisClient() != nil {
		if st.limiter, err = d.app.SharedLimiter(ratelimit.PolicyLocal); err != nil {
			return st, fmt.Errorf("chat request quotas: %w", err)
		}
	}
	if !d.ChatRequestPreviews {
		return st, nil
	}
	key, err := readOrMakeSealKey(filepath.Join(d.app.DataDir, chatPreviewKeyFile))
	if err != nil {
		return st, fmt.Errorf("chat_request_previews: %w", err)
	}
	box, err := seal.New(key)
	if err != nil {
		return st, fmt.Errorf("chat_request_previews: %w", err)
	}
	st.previews = box
	return st, nil
}

// readOrMakeSealKey reads the key file at path, writing a new key there
// if there is none (another node writing first wins: its key is read).
func readOrMakeSealKey(path string) ([]byte, error) {
	key, err := seal.ReadKeyFile(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	if key, err = seal.NewKey(); err != nil {
		return nil, err
	}
	if err := seal.WriteKeyFile(path, key); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return seal.ReadKeyFile(path)
		}
		return nil, err
	}
	return key, nil
}
