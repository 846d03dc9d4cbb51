// Package pool joins the relays of a pool to the credential service and to each other: each
// relay reports its own load in a small JSON document ([Load], served at GET /load beside
// /metrics), and a [Monitor] polls the documents of every member it knows (a static list of
// URLs, or the SRV/A records of a Kubernetes headless Service) to keep, per relay, whether it
// is healthy, whether it drains, and its [Score]. The credential service lists relays in the
// Monitor's order (healthy, non-draining, least loaded first); a relay over its threshold asks
// its own Monitor for a less-loaded member to name in 300 (Try Alternate).
//
// Start here: [Reporter] (a relay's document), [Load.Score] (how loaded it is), [Monitor]
// (the pool as polled), [Monitor.Relays] and [Monitor.Alternate] (what it is asked).
//
// No database, no message bus: the only state is each relay's own report, and a Monitor
// forgets a relay that stops answering within FailAfter×Interval+Timeout.
package pool
