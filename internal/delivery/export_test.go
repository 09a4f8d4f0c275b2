package delivery

// Exported for the fuzz targets of package delivery_test.
var (
	ParseDatetime = parseDatetime
	ParsePSKHash  = parsePSKHash
	// ParseExternalCommit is parseExternalCommit.
	ParseExternalCommit = parseExternalCommit
)

// DecodeSendChatRequest runs sendChatRequest's body decoder.
func DecodeSendChatRequest(s *Service, body []byte) (recipient string, held int, err error) {
	in, h, err := s.decodeSendChatRequest(body)
	return in.RecipientDID, len(h), err
}
