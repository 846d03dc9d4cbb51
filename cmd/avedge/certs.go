package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/avedge/avedge/auth"
	"github.com/avedge/avedge/config"
	"github.com/avedge/avedge/internal/secretfile"
	"github.com/avedge/avedge/metrics"
)

// tlsPair is one TLS certificate and key the daemon serves and re-reads from the files it
// started with: the TURN TLS listeners' (cert, pkey), the credential service's
// (auth-tls-cert, auth-tls-key) or the admin API's (admin-tls-cert, admin-tls-key).
type tlsPair struct {
	name              string // for the log
	label             string // for the metrics
	certKey, keyKey   string // the options naming the files
	certFile, keyFile string // the files, as started with
	cert              *auth.Certificate
}

// tlsPairs lists the pairs st serves.
func tlsPairs(st *config.Settings) []tlsPair {
	var ps []tlsPair
	if st.TLS != nil {
		ps = append(ps, tlsPair{name: "turn", label: metrics.TLSPairTURN, certKey: "cert", keyKey: "pkey", certFile: st.TLSCert, keyFile: st.TLSKey, cert: st.TLS})
	}
	if st.AuthTLS != nil {
		ps = append(ps, tlsPair{name: "credential service", label: metrics.TLSPairCredentialService, certKey: "auth-tls-cert", keyKey: "auth-tls-key", certFile: st.AuthTLSCert, keyFile: st.AuthTLSKey, cert: st.AuthTLS})
	}
	if st.Admin.TLS != nil {
		ps = append(ps, tlsPair{name: "admin API", label: metrics.TLSPairAdmin, certKey: "admin-tls-cert", keyKey: "admin-tls-key", certFile: st.Admin.TLSCert, keyFile: st.Admin.TLSKey, cert: st.Admin.TLS})
	}
	return ps
}

// observeTLS has m expose the expiry of each pair of st, and count refused reloads.
func observeTLS(st *config.Settings, m *metrics.Metrics) {
	for _, p := range tlsPairs(st) {
		p.cert.Observe(func(cur *tls.Certificate, err error) { m.TLSCertificate(p.label, cur.Leaf.NotAfter, err) })
	}
}

// reloadTLS re-reads every TLS pair of st (SIGHUP) from the files it was started with: the
// next handshake gets the new pair, connections already open keep theirs. A key file others
// can read (unless allow-readable-secrets in o, the configuration as re-read; nil when it did
// not parse) or a pair that does not load (unreadable, key not matching, expired) is refused
// with a log line naming the files, and the current pair keeps serving. Other files named in
// o are logged as needing a restart: the listeners keep the pair they have.
func reloadTLS(log *slog.Logger, st *config.Settings, o *config.Options) {
	if o != nil && st.Service != nil && o.AuthListen != "" && (o.AuthTLSCert != st.AuthTLSCert || o.AuthTLSKey != st.AuthTLSKey) {
		log.Warn("SIGHUP: auth-tls-cert or auth-tls-key changed: the credential service keeps the files it started with until avedge restarts",
			"auth-tls-cert", st.AuthTLSCert, "auth-tls-key", st.AuthTLSKey)
	}
	if o != nil && st.TLS != nil && (o.Cert != st.TLSCert || o.PKey != st.TLSKey) {
		log.Warn("SIGHUP: cert or pkey changed: the TLS listeners keep the files they started with until avedge restarts",
			"cert", st.TLSCert, "pkey", st.TLSKey)
	}
	allowReadable := o != nil && o.AllowReadableSecrets
	for _, p := range tlsPairs(st) {
		p.reload(log, "SIGHUP: ", allowReadable, func() (bool, error) { return true, p.cert.Reload() })
	}
}

// pollTLS reloads each pair of st whose files changed since they were last read (see
// auth.Certificate.ReloadIfChanged), as reloadTLS would; it logs nothing for a pair unchanged.
func pollTLS(log *slog.Logger, st *config.Settings, allowReadable bool) {
	for _, p := range tlsPairs(st) {
		p.reload(log, "TLS files changed: ", allowReadable, p.cert.ReloadIfChanged)
	}
}

// reload checks the key file's mode, then loads the pair with load and logs the outcome
// (prefix says what caused it).
func (p tlsPair) reload(log *slog.Logger, prefix string, allowReadable bool, load func() (tried bool, err error)) {
	err := secretfile.Check(p.keyFile)
	var exposed *secretfile.ExposedError
	if errors.As(err, &exposed) && allowReadable {
		log.Warn(prefix + p.keyKey + ": " + exposed.Warning())
		err = nil
	}
	tried := true
	if err != nil {
		err = fmt.Errorf("%s: %w", p.keyKey, err)
	} else {
		tried, err = load()
	}
	switch {
	case !tried:
	case err != nil:
		log.Error(prefix+"TLS certificate not reloaded; keeping the current pair", append([]any{"pair", p.name, "err", err, p.certKey, p.certFile, p.keyKey, p.keyFile}, certAttrs(p.cert)...)...)
	default:
		log.Info(prefix+"TLS certificate reloaded", append([]any{"pair", p.name}, certAttrs(p.cert)...)...)
	}
}

// tlsWatcher polls the TLS pairs' files every interval (pollTLS) until stop.
type tlsWatcher struct {
	done chan struct{}
	wg   sync.WaitGroup
}

// watchTLS starts polling st's pairs every interval; nil when there is nothing to watch or
// interval is not positive.
func watchTLS(log *slog.Logger, st *config.Settings, interval time.Duration, allowReadable bool) *tlsWatcher {
	if interval <= 0 || len(tlsPairs(st)) == 0 {
		return nil
	}
	w := &tlsWatcher{done: make(chan struct{})}
	w.wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				pollTLS(log, st, allowReadable)
			case <-w.done:
				return
			}
		}
	})
	return w
}

// stop ends the polling and waits for it.
func (w *tlsWatcher) stop() {
	if w == nil {
		return
	}
	close(w.done)
	w.wg.Wait()
}
