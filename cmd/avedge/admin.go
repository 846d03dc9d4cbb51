package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/avedge/avedge/admin"
	"github.com/avedge/avedge/config"
	"github.com/avedge/avedge/relay"
)

// adminAPI is the running admin API (package admin): the revocations the relay refuses, and
// the handler served on admin-listen and admin-socket.
type adminAPI struct {
	st  *config.Settings   // Static.
	rev *admin.Revocations // Static.
	h   *admin.Handler     // Static.

	stop     chan struct{}  // closed by close: ends watch
	watching sync.WaitGroup // watch
}

// revocationsPoll is how often the revocations file is checked for a change (a Kubernetes
// ConfigMap update swaps the file's symlink; an editor or another relay renames a new file
// over it): a change is re-read (the revocations only, not the rest of SIGHUP).
const revocationsPoll = 10 * time.Second

// newAdminAPI returns the admin API of st, not started.
func newAdminAPI(st *config.Settings) *adminAPI {
	return &adminAPI{st: st, stop: make(chan struct{})}
}

// start loads the revocations file (it applies whether or not the API is served), serves
// the admin API where st.Admin says, through h, and watches the file. reload is what POST
// /v1/reload does (what SIGHUP does). On error, what it started is still to be stopped
// (close, h.stop).
func (a *adminAPI) start(h *httpServers, srv *relay.Server, reload func() error) error {
	st := a.st
	last := fileStamp(st.Admin.RevocationsFile) // before the read: a change in between is read again
	rev, err := admin.NewRevocations(st.Admin.RevocationsFile)
	if err != nil {
		return fmt.Errorf("revocations-file: %w", err)
	}
	srv.SetRevocations(rev)
	if f := st.Admin.RevocationsFile; f != "" {
		if _, err := os.Stat(f); err != nil {
			h.log.Warn("revocations-file does not exist yet: no revocation in force; the admin API creates it", "file", f)
		} else {
			h.log.Info("revocations loaded", "file", f, "revocations", rev.Len())
		}
	}
	// The handler also ends the allocations of revocations a re-read of the file adds, API
	// served or not.
	hd, err := admin.NewHandler(admin.Config{Backend: srv, Revocations: rev, APIKeys: st.Admin.Keys,
		Version: version, Reload: reload, Logger: h.log})
	if err != nil {
		return err
	}
	a.rev, a.h = rev, hd // before anything that may call reload starts
	if st.Admin.Listen != "" {
		var attrs []any
		var tc *tls.Config
		if st.Admin.TLS != nil {
			tc = st.Admin.TLS.TLSConfig()
			attrs = certAttrs(st.Admin.TLS)
		}
		if _, err := h.serve("admin API", "admin-listen", st.Admin.Listen, a.h, tc, attrs...); err != nil {
			return err
		}
	}
	if st.Admin.Socket != "" {
		if err := h.serveUnix("admin API", st.Admin.Socket, a.h.Local()); err != nil {
			return fmt.Errorf("admin-socket: %w", err)
		}
	}
	if st.Admin.RevocationsFile != "" {
		a.watching.Go(func() {
			a.watch(func() error { return a.reloadRevocations(h.log, "revocations file changed") }, revocationsPoll, last)
		})
	}
	return nil
}

// watch calls reload when the revocations file changes from last (its size, modification
// time or inode, as stat sees through symlinks), checking every period, until close.
func (a *adminAPI) watch(reload func() error, period time.Duration, last stamp) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-a.stop:
			return
		case <-t.C:
		}
		if now := fileStamp(a.st.Admin.RevocationsFile); now != last {
			last = now
			_ = reload()
		}
	}
}

// reloadRevocations re-reads the revocations file (if any) and ends the live allocations of
// what it added; why prefixes the log line.
func (a *adminAPI) reloadRevocations(log *slog.Logger, why string) error {
	if a.st.Admin.RevocationsFile == "" {
		return nil
	}
	added, err := a.rev.Reload()
	if err != nil {
		log.Error(why+": revocations file not reloaded, keeping the list in force", "err", err)
		return err
	}
	n := a.h.ApplyRevocations(added)
	log.Info(why+": revocations reloaded", "file", a.st.Admin.RevocationsFile, "revocations", a.rev.Len(), "new", len(added), "allocations-ended", n)
	return nil
}

// stamp is what watch compares: a file's identity and version.
type stamp struct {
	ino, size uint64
	mtime     int64
	exists    bool
}

func fileStamp(path string) stamp {
	fi, err := os.Stat(path)
	if err != nil {
		return stamp{}
	}
	st := stamp{size: uint64(fi.Size()), mtime: fi.ModTime().UnixNano(), exists: true}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = sys.Ino
	}
	return st
}

// close stops watching the revocations file (the servers stop with httpServers.stop).
func (a *adminAPI) close() {
	close(a.stop)
	a.watching.Wait()
}

// reload re-reads the revocations file (ending the live allocations of what it added): its
// part of SIGHUP. The admin API's TLS pair is one of reloadTLS's pairs.
func (a *adminAPI) reload(log *slog.Logger) error {
	if a.rev == nil { // not started
		return nil
	}
	return a.reloadRevocations(log, "SIGHUP")
}

// serveUnix serves handler on a Unix socket at path, mode 0600 (a stale socket file is
// replaced; any other file is refused). The socket file is removed at stop.
func (h *httpServers) serveUnix(name, path string, handler http.Handler) error {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return fmt.Errorf("%s exists and is not a socket", path)
		}
		_ = os.Remove(path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return err
	}
	hs := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second,
		ErrorLog: slog.NewLogLogger(h.log.Handler(), slog.LevelWarn)}
	h.servers = append(h.servers, hs)
	h.serving.Go(func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			h.log.Error(name+" stopped", "err", err)
		}
	})
	h.log.Info(name+" listening", "socket", path)
	return nil
}
