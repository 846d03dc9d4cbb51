// Package metrics owns avedge's Prometheus metrics and the HTTP endpoints for
// scraping and health checks.
//
// The relay's data path never calls Prometheus. Per packet a worker does two
// atomic adds on counters it owns (one set per worker, each direction on its
// own cache line); what pion relays itself (indications, stream clients) is
// counted on shared atomics of the relay. These are running totals since the
// process started, so nothing needs folding in when an allocation ends, and
// the allocation, permission and channel gauges are atomics the relay keeps
// in step with pion's events. At scrape time the collector built by [New]
// asks the relay for a [Snapshot] through the [Source] interface, and the
// relay sums its counters into it; the collector turns that into constant
// metrics, so a scrape during a call shows what has flowed so far and
// counters never go backwards. Descriptors are built once, node_exporter
// style.
//
// Control-plane events (an allocation attempt, an authentication failure, a
// credential request) are rare compared with packets; they are counted
// directly through the event methods of [Metrics]. Every label value comes
// from a bounded, documented set; anything else is counted as "other", so a
// label never carries a user name, an address or a port.
//
// Exposed metrics (all under the avedge_ prefix, base units):
//
//	avedge_build_info{version,goversion,pion_version}      gauge, always 1
//	avedge_allocations_active{transport,family}             gauge
//	avedge_allocation_attempts_total{result}                counter
//	avedge_allocation_lifetime_seconds                      histogram, 10s … 8h
//	avedge_permissions_active                               gauge
//	avedge_channels_active                                  gauge
//	avedge_relay_ports_capacity                             gauge
//	avedge_relay_ports{state="held|reserved|quarantined"}   gauge
//	avedge_relayed_packets_total{direction,path}            counter
//	avedge_relayed_bytes_total{direction,path}              counter
//	avedge_dropped_packets_total{reason}                    counter
//	avedge_auth_failures_total{reason}                      counter
//	avedge_credential_requests_total{api,result}            counter
//	avedge_stun_binding_requests_total                      counter
//	avedge_draining                                         gauge, 0 or 1
//	avedge_allocation_redirects_total{reason}               counter, 300 Try Alternate
//	avedge_tls_certificate_expiry_timestamp_seconds{pair}   gauge, once the pair loads
//	avedge_tls_certificate_reload_failures_total{pair}      counter
//	avedge_tcp_relay_connections_active                     gauge, RFC 6062 peer connections
//	avedge_tcp_relay_bind_timeouts_total                    counter
//	avedge_tcp_relay_idle_closes_total                      counter
//	avedge_tcp_relay_limit_refusals_total{limit}            counter, total|per_user|per_allocation
//	avedge_tcp_relay_policy_refusals_total{stage}           counter, connect|inbound|reload
//	avedge_proxy_protocol_refusals_total{reason}            counter, not_from_proxy|no_header|invalid_header|timeout
//
// A process that monitors the pool (package pool: the credential service, a relay that
// redirects when over its threshold) registers [NewPoolCollector] too: what it believes of
// each relay, as avedge_pool_member_{healthy,draining,listed,score,rank,allocations,failed_polls}{member}.
//
// The edge's port range is split into a capacity gauge and a gauge by state
// rather than one gauge with state="capacity": summing avedge_relay_ports
// over state then gives the ports not free, and
// avedge_relay_ports_capacity - sum(avedge_relay_ports) the ports free.
//
// [Handler] serves /metrics, /healthz and /readyz on the listener the caller
// chooses (loopback by default in cmd/avedge).
package metrics
