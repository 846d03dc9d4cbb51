package secretfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// statInfo is an fs.FileInfo with a chosen mode and owner, so that files owned by root and by
// others are checked without chown.
type statInfo struct {
	mode     fs.FileMode
	uid, gid uint32
}

func (s statInfo) Name() string       { return "f" }
func (s statInfo) Size() int64        { return 0 }
func (s statInfo) Mode() fs.FileMode  { return s.mode }
func (s statInfo) ModTime() time.Time { return time.Time{} }
func (s statInfo) IsDir() bool        { return false }
func (s statInfo) Sys() any           { return &syscall.Stat_t{Uid: s.uid, Gid: s.gid} }

func TestCheckInfo(t *testing.T) {
	for _, tc := range []struct {
		name string
		mode fs.FileMode
		uid  uint32
		who  string // "" : accepted
	}{
		{"0600 own", 0o600, 1000, ""},
		{"0400 own", 0o400, 1000, ""},
		{"0700 own", 0o700, 1000, ""},
		{"0611 own: execute only for others", 0o611, 1000, ""},
		{"0644 own", 0o644, 1000, "every user of this host can read it and group 50 can read it"},
		{"0604 own", 0o604, 1000, "every user of this host can read it"},
		{"0602 own", 0o602, 1000, "every user of this host can write it"},
		{"0640 own", 0o640, 1000, "group 50 can read it"},
		{"0660 own", 0o660, 1000, "group 50 can read and write it"},
		{"0440 root: a Kubernetes Secret with fsGroup", 0o440, 0, ""},
		{"0640 root", 0o640, 0, ""},
		{"0600 root", 0o600, 0, ""},
		{"0660 root", 0o660, 0, "group 50 can read and write it"},
		{"0620 root", 0o620, 0, "group 50 can write it"},
		{"0644 root", 0o644, 0, "every user of this host can read it"},
		{"0444 root", 0o444, 0, "every user of this host can read it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckInfo("/etc/avedge/secrets", statInfo{mode: tc.mode, uid: tc.uid, gid: 50})
			if tc.who == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var ee *ExposedError
			if !errors.As(err, &ee) {
				t.Fatalf("err %v, want an *ExposedError", err)
			}
			if ee.Who() != tc.who {
				t.Errorf("Who() = %q, want %q", ee.Who(), tc.who)
			}
		})
	}
}

// TestCheckFiles checks real files: a 0644 file is refused with a message that names the
// file, its mode, who can read it and both ways out; 0600 is accepted; a symbolic link is
// followed to the file it names (as a Kubernetes Secret volume's are).
func TestCheckFiles(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "secrets")
	if err := os.WriteFile(p, []byte("k1 s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o644); err != nil { // whatever the umask
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(p, link); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{p, link} {
		err := Check(path)
		if err == nil {
			t.Fatalf("%s (0644) accepted", path)
		}
		for _, want := range []string{path + " holds secrets and is mode 0644", "every user of this host can read it", "chmod 600 " + path, "--allow-readable-secrets"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
		}
	}
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{p, link} {
		if err := Check(path); err != nil {
			t.Errorf("%s (0600) refused: %v", path, err)
		}
	}
	if err := Check(filepath.Join(dir, "none")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v, want fs.ErrNotExist", err)
	}
}

// TestErrorSuggestsRootForAGroup checks the advice for a file its unprivileged owner shared
// with a group: root's 0640 would be accepted.
func TestErrorSuggestsRootForAGroup(t *testing.T) {
	err := CheckInfo("/s", statInfo{mode: 0o640, uid: 1000, gid: 50})
	want := "/s holds secrets and is mode 0640, owner uid 1000: group 50 can read it; chmod 600 /s (or, to share it with a group on purpose, give it to root: chown root /s; chmod 640 /s), or pass --allow-readable-secrets to read it as it is"
	if err == nil || err.Error() != want {
		t.Fatalf("error %q\nwant  %q", err, want)
	}
}
