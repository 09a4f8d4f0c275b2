package delivery

// Exported for the fuzz targets of package delivery_test.
var (
	ParseDatetime = parseDatetime
	ParsePSKHash  = parsePSKHash
)
