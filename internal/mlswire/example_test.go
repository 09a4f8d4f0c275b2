package mlswire_test

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/cairn-chat/cairn-caddy/internal/mlswire"
)

// The delivery service reads the group and epoch a ciphertext really
// carries, instead of trusting the fields declared beside it.
func ExampleParseMessage() {
	msg, _ := mlswire.Marshal(&mlswire.Message{
		Version:    mlswire.ProtocolVersionMLS10,
		WireFormat: mlswire.WireFormatPrivateMessage,
		PrivateMessage: &mlswire.PrivateMessage{
			GroupID:     []byte("convo-1"),
			Epoch:       4,
			ContentType: mlswire.ContentTypeCommit,
			Ciphertext:  []byte{0xde, 0xad},
		},
	})

	m, err := mlswire.ParseMessage(msg)
	if err != nil {
		fmt.Println("InvalidMessage:", err)
		return
	}
	h, ok := m.Header()
	if !ok {
		fmt.Println("not a framed message:", m.WireFormat)
		return
	}
	fmt.Println(m.WireFormat, bytes.Equal(h.GroupID, []byte("convo-1")), h.Epoch, h.ContentType)

	_, err = mlswire.ParseMessage(append(msg, 0))
	fmt.Println(errors.Is(err, mlswire.ErrTrailingData))
	// Output:
	// mls_private_message true 4 commit
	// true
}
