package policy

import "errors"

// ErrInvalidPrefix is wrapped by [ParsePrefixes] for an entry that is neither
// a CIDR prefix nor a bare IP address (or carries an IPv6 zone).
var ErrInvalidPrefix = errors.New("policy: invalid prefix")
