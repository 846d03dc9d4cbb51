// Package secretfile checks, before avedge's commands read a file of secrets (shared secrets,
// static users' passwords, API keys, a TLS private key), that no one but its owner can read or
// write it, and says what to do when others can. It also words the warning for a secret given
// on the command line, which every user of the host can read.
//
// The rule is PostgreSQL's for its key files: the file's mode gives its group and other users
// no access (0600, 0400), except that a file root owns may be readable by its group (0640,
// 0440). That exception is how a file is shared on purpose with a service's group: a
// Kubernetes Secret mounted with fsGroup is root's, mode 0440, group fsGroup; Debian's
// ssl-cert group reads root's 0640 keys. A file that its own (unprivileged) owner made readable
// to a group, or any file every user can read, is refused: that is a umask or a cp away from an
// accident, not a decision.
//
// The mode is read from the file a path names after following symbolic links (a Kubernetes
// Secret volume is a tree of links). It is checked before the file is read, by path: whoever can
// swap the file between the two can write its directory and so the secrets anyway.
package secretfile

import (
	"fmt"
	"io/fs"
	"os"
	"strings"
	"syscall"
)

// AllowFlag is the flag (in avedge also the YAML key) that lets a command read a secrets file
// Check refuses.
const AllowFlag = "allow-readable-secrets"

// ExposedError says that users other than the owner of a secrets file can read or write it.
type ExposedError struct {
	Path string
	Mode fs.FileMode // the permission bits
	UID  uint32      // the owner
	GID  uint32      // the group
}

// Who says who besides the owner can read or write the file: "every user of this host can
// read it", "group 1000 can read and write it", or both joined.
func (e *ExposedError) Who() string {
	var who []string
	if s := access(e.Mode, 4, 2); s != "" {
		who = append(who, "every user of this host can "+s+" it")
	}
	if s := access(e.Mode, 040, 020); s != "" && !allowedGroup(e.Mode, e.UID) {
		who = append(who, fmt.Sprintf("group %d can %s it", e.GID, s))
	}
	return strings.Join(who, " and ")
}

// access names the access bits r and w of mode give: "read", "write", "read and write" or "".
func access(mode fs.FileMode, r, w fs.FileMode) string {
	switch {
	case mode&r != 0 && mode&w != 0:
		return "read and write"
	case mode&r != 0:
		return "read"
	case mode&w != 0:
		return "write"
	}
	return ""
}

// Error says which file, its mode and owner, who else can get at it, and the two ways out.
func (e *ExposedError) Error() string {
	fix := fmt.Sprintf("chmod 600 %s", e.Path)
	if e.Mode&060 != 0 && e.UID != 0 {
		fix += " (or, to share it with a group on purpose, give it to root: chown root " + e.Path + "; chmod 640 " + e.Path + ")"
	}
	return fmt.Sprintf("%s holds secrets and is mode %04o, owner uid %d: %s; %s, or pass --%s to read it as it is",
		e.Path, uint32(e.Mode), e.UID, e.Who(), fix, AllowFlag)
}

// Warning is what to log when the file is read all the same, under AllowFlag.
func (e *ExposedError) Warning() string {
	return fmt.Sprintf("%s holds secrets and is mode %04o, owner uid %d: %s; read all the same (--%s); chmod 600 %s",
		e.Path, uint32(e.Mode), e.UID, e.Who(), AllowFlag, e.Path)
}

// CommandLineWarning is the warning for a secret given as the flag --name, which belongs in
// the file that the flag --file names.
func CommandLineWarning(name, file string) string {
	return fmt.Sprintf("--%s is given on the command line, which every user of this host can read (ps, /proc/PID/cmdline): put it in a file named by --%s instead", name, file)
}

// Check returns an *ExposedError when users other than its owner can read or write the file at
// path (symbolic links followed), nil when they cannot, and the error of stat when the file
// cannot be examined.
func Check(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	return CheckInfo(path, fi)
}

// CheckInfo is Check for a file already examined: fi is what os.Stat or (*os.File).Stat
// returned for path.
func CheckInfo(path string, fi fs.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil // not a Unix file: no owner or group to compare with
	}
	mode := fi.Mode().Perm()
	if mode&066 == 0 || mode&026 == 0 && allowedGroup(mode, st.Uid) {
		return nil
	}
	return &ExposedError{Path: path, Mode: mode, UID: st.Uid, GID: st.Gid}
}

// allowedGroup reports whether a file of that mode and owner may be read by its group: root's.
func allowedGroup(mode fs.FileMode, uid uint32) bool {
	return uid == 0 && mode&020 == 0
}
