package pool

import "errors"

// Sentinels a caller may branch on.
var (
	// ErrBadLoad: a load document that does not parse or whose values are out of range.
	ErrBadLoad = errors.New("bad load document")
	// ErrBadMember: a member address or URL that does not parse.
	ErrBadMember = errors.New("bad pool member")
	// ErrBadConfig: a MonitorConfig or ReporterConfig value out of range.
	ErrBadConfig = errors.New("bad pool configuration")
)
