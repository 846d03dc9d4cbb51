package auth

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// readVectors returns the tab-separated rows of a testdata/auth vector file.
func readVectors(t *testing.T, name string, fields int) [][]string {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "testdata", "auth", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows [][]string
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text := sc.Text()
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		row := strings.Split(text, "\t")
		if len(row) != fields {
			t.Fatalf("%s:%d: want %d tab-separated fields, got %d", name, line, fields, len(row))
		}
		rows = append(rows, row)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(rows) == 0 {
		t.Fatalf("%s: no vectors", name)
	}
	return rows
}

// TestMintMRASVectors checks MintMRAS against usernames and passwords
// computed independently with base64 and openssl
// (testdata/auth/keyed_vectors.txt records the commands).
func TestMintMRASVectors(t *testing.T) {
	for _, row := range readVectors(t, "keyed_vectors.txt", 6) {
		id, secret, exp, identity, wantUser, wantPass := row[0], row[1], row[2], row[3], row[4], row[5]
		t.Run(wantUser, func(t *testing.T) {
			sec, err := strconv.ParseInt(exp, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			u, p := MintMRAS(Secret{ID: id, Value: []byte(secret)}, identity, time.Unix(sec, 0))
			if u != wantUser || p != wantPass {
				t.Errorf("MintMRAS = %q %q, want %q %q", u, p, wantUser, wantPass)
			}
			k, ok := parseKeyed(u)
			if !ok || k.keyID != id || k.identity != identity || k.expiry.Unix() != sec {
				t.Errorf("parseKeyed(%q) = %+v, %v", u, k, ok)
			}
		})
	}
}
