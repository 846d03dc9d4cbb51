package metrics

import "errors"

// ErrNilRegisterer is returned by [New] when it is given no registerer.
var ErrNilRegisterer = errors.New("metrics: nil prometheus.Registerer")
