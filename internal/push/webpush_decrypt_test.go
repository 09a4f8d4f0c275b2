package push_test

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"testing"
)

// webPushClient is the receiving side of RFC 8291: the device's key pair
// and auth secret, which decrypts what the distributor hands it.
type webPushClient struct {
	priv *ecdh.PrivateKey
	auth []byte
}

func newWebPushClient(t *testing.T) *webPushClient {
	t.Helper()
	priv, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	auth := make([]byte, 16)
	_, _ = rand.Read(auth)
	return &webPushClient{priv: priv, auth: auth}
}

// subscription is the JSON a device registers as its pushToken.
func (c *webPushClient) subscription(endpoint string) string {
	b, _ := json.Marshal(map[string]any{"endpoint": endpoint, "keys": map[string]string{
		"p256dh": base64.RawURLEncoding.EncodeToString(c.priv.PublicKey().Bytes()),
		"auth":   base64.RawURLEncoding.EncodeToString(c.auth),
	}})
	return string(b)
}

// decrypt opens an aes128gcm body (RFC 8188 framing, RFC 8291 keys),
// written here from the RFCs independently of the sending library.
func (c *webPushClient) decrypt(body []byte) ([]byte, error) {
	if len(body) < 21 {
		return nil, errors.New("short header")
	}
	salt, rs, idlen := body[:16], binary.BigEndian.Uint32(body[16:20]), int(body[20])
	if len(body) < 21+idlen || rs < 18 {
		return nil, errors.New("bad header")
	}
	asPub, rest := body[21:21+idlen], body[21+idlen:]
	asKey, err := ecdh.P256().NewPublicKey(asPub)
	if err != nil {
		return nil, err
	}
	shared, err := c.priv.ECDH(asKey)
	if err != nil {
		return nil, err
	}
	info := append([]byte("WebPush: info\x00"), c.priv.PublicKey().Bytes()...)
	info = append(info, asPub...)
	ikm, err := hkdf.Key(sha256.New, shared, c.auth, string(info), 32)
	if err != nil {
		return nil, err
	}
	cek, err := hkdf.Key(sha256.New, ikm, salt, "Content-Encoding: aes128gcm\x00", 16)
	if err != nil {
		return nil, err
	}
	nonce, err := hkdf.Key(sha256.New, ikm, salt, "Content-Encoding: nonce\x00", 12)
	if err != nil {
		return nil, err
	}
	block, _ := aes.NewCipher(cek)
	gcm, _ := cipher.NewGCM(block)
	if len(rest) > int(rs) {
		return nil, errors.New("more than one record")
	}
	plain, err := gcm.Open(nil, nonce, rest, nil)
	if err != nil {
		return nil, err
	}
	// Strip the padding: the last non-zero byte is the delimiter (2 for
	// the last record).
	i := len(plain) - 1
	for i >= 0 && plain[i] == 0 {
		i--
	}
	if i < 0 || plain[i] != 2 {
		return nil, errors.New("no last-record delimiter")
	}
	return plain[:i], nil
}
