// Command avedge-token mints an avedge credential offline from a shared
// secret, for scripts and tests. By default it prints a TURN REST credential
// (coturn use-auth-secret compatible); with --mras it prints a keyed username
// like the credential service issues. --secret-file is refused when users other
// than its owner can read it (internal/secretfile), unless --allow-readable-secrets;
// --secret works with a warning (every user of the host can read a command line).
//
//	avedge-token --secret-file /etc/avedge/secrets --user alice --ttl 8h
//	avedge-token --secret s3cr3t --mras --user sip:alice@example.com --json
package main

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/avedge/avedge/auth"
	"github.com/avedge/avedge/internal/secretfile"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr, time.Now); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "avedge-token:", err)
		os.Exit(2)
	}
}

type output struct {
	Username string `json:"username"`
	Password string `json:"password"`
	TTL      int64  `json:"ttl"`
	Expires  string `json:"expires"`
	KeyID    string `json:"keyId,omitempty"`
	Key      string `json:"key,omitempty"` // hex long-term key, with --realm
}

func run(args []string, stdout, stderr io.Writer, now func() time.Time) error {
	fs := flag.NewFlagSet("avedge-token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	secret := fs.String("secret", "", "shared secret (prefer --secret-file: arguments are visible to other users)")
	secretFile := fs.String("secret-file", "", "secrets file (\"id secret\" or \"secret\" per line, newest first); the newest is used unless --key-id")
	keyID := fs.String("key-id", "", "key id: with --secret, the id to put in a --mras username (default: derived from the secret); with --secret-file, which secret to use")
	user := fs.String("user", "", "user (REST) or identity (--mras); may be empty")
	ttl := fs.Duration("ttl", 8*time.Hour, "lifetime of the credential")
	mras := fs.Bool("mras", false, "mint a keyed (MRAS-issued) username instead of a TURN REST one")
	sep := fs.String("separator", auth.DefaultSeparator, "TURN REST separator between expiry and user (coturn rest-api-separator)")
	realm := fs.String("realm", "", "also print the RFC 8489 long-term key MD5(username:realm:password) for this realm")
	asJSON := fs.Bool("json", false, "print JSON instead of text")
	allowReadable := fs.Bool(secretfile.AllowFlag, false, "read --secret-file even when users other than its owner can read it (refused otherwise: chmod 600 it; root's 0640 and 0440 files are accepted)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: avedge-token (--secret S | --secret-file F) [flags]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *ttl <= 0 {
		return fmt.Errorf("--ttl %v: must be positive", *ttl)
	}
	if *sep == "" {
		return errors.New("--separator: must not be empty")
	}
	if *mras && !auth.ValidIdentity(*user) {
		return fmt.Errorf("--user: identity must be at most %d bytes of UTF-8 without control characters", auth.MaxIdentityLen)
	}
	var sec auth.Secret
	switch {
	case *secret != "" && *secretFile != "":
		return errors.New("--secret and --secret-file: give only one")
	case *secret != "":
		fmt.Fprintln(stderr, "avedge-token: warning:", secretfile.CommandLineWarning("secret", "secret-file"))
		sec = auth.Secret{ID: *keyID, Value: []byte(*secret)}
		if sec.ID == "" {
			sec.ID = auth.DefaultKeyID(sec.Value)
		}
		if err := auth.ValidateSecrets([]auth.Secret{sec}); err != nil {
			return fmt.Errorf("--key-id: %w", err)
		}
	case *secretFile != "":
		err := secretfile.Check(*secretFile)
		var exposed *secretfile.ExposedError
		switch {
		case errors.As(err, &exposed) && *allowReadable:
			fmt.Fprintln(stderr, "avedge-token: warning: --secret-file:", exposed.Warning())
		case err != nil:
			return fmt.Errorf("--secret-file: %w", err)
		}
		secrets, err := auth.LoadSecretsFile(*secretFile)
		if err != nil {
			return fmt.Errorf("--secret-file: %w", err)
		}
		ring := auth.NewKeyring(secrets...)
		var ok bool
		if *keyID == "" {
			sec, ok = ring.Newest()
		} else {
			sec, ok = ring.ByID(*keyID)
		}
		if !ok {
			return fmt.Errorf("--key-id %q: not in %s", *keyID, *secretFile)
		}
	default:
		return errors.New("--secret or --secret-file is required")
	}

	expiry := now().Add(*ttl)
	out := output{TTL: int64(*ttl / time.Second), Expires: expiry.UTC().Format(time.RFC3339)}
	if *mras {
		out.Username, out.Password = auth.MintMRAS(sec, *user, expiry)
		out.KeyID = sec.ID
	} else {
		out.Username, out.Password = auth.MintRESTSep(sec.Value, *user, expiry, *sep)
	}
	if *realm != "" {
		// RFC 8489 section 9.2.2: key = MD5(username ":" OpaqueString(realm)
		// ":" OpaqueString(password)).
		out.Key = hex.EncodeToString(auth.LongTermKey(out.Username, *realm, out.Password))
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	fmt.Fprintf(stdout, "username: %s\npassword: %s\nexpires:  %s\n", out.Username, out.Password, out.Expires)
	if out.Key != "" {
		fmt.Fprintf(stdout, "key:      %s\n", out.Key)
	}
	return nil
}
