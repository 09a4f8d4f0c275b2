package delivery

// Exported for the fuzz targets of package delivery_test.
var (
	ParseDatetime = parseDatetime
	ParsePSKHash  = parsePSKHash
	// ParseExternalCommit is parseExternalCommit.
	ParseExternalCommit = parseExternalCommit
)
