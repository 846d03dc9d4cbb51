package config

import (
	"strings"
	"testing"
)

// The admin API's options: off by default; a network listener needs a key (none is
// generated: the API ends allocations); TLS needs both files; off loopback without TLS it is
// warned about; its port may not lie in the relay range.
func TestAdminOptions(t *testing.T) {
	in := func() *inputs { return &inputs{randomSecret: "0123456789abcdef0123456789abcdef", randomAPIKey: "k"} }
	for _, tc := range []struct {
		name    string
		mod     func(o *Options)
		in      *inputs
		err     string
		warning string
		check   func(t *testing.T, st *Settings)
	}{
		{name: "off by default", check: func(t *testing.T, st *Settings) {
			if st.Admin.Listen != "" || st.Admin.Socket != "" || st.Admin.RevocationsFile != "" {
				t.Errorf("admin settings %+v, want none", st.Admin)
			}
		}},
		{name: "listen needs a key", mod: func(o *Options) { o.AdminListen = "127.0.0.1:9443" }, err: "admin-api-key: the admin API on 127.0.0.1:9443 needs an API key"},
		{name: "key from the file", mod: func(o *Options) { o.AdminListen = "127.0.0.1:9443" }, in: &inputs{adminAPIKeys: []string{"k1"}, randomSecret: "0123456789abcdef0123456789abcdef"},
			check: func(t *testing.T, st *Settings) {
				if st.Admin.Listen != "127.0.0.1:9443" || len(st.Admin.Keys) != 1 || st.Admin.Keys[0] != "k1" {
					t.Errorf("admin settings %+v", st.Admin)
				}
			}},
		{name: "socket needs no key", mod: func(o *Options) {
			o.AdminSocket = "/run/avedge/admin.sock"
			o.RevocationsFile = "/etc/avedge/revocations.json"
		},
			check: func(t *testing.T, st *Settings) {
				if st.Admin.Socket != "/run/avedge/admin.sock" || st.Admin.RevocationsFile != "/etc/avedge/revocations.json" {
					t.Errorf("admin settings %+v", st.Admin)
				}
			}},
		{name: "bad address", mod: func(o *Options) { o.AdminListen = "localhost"; o.AdminAPIKeys = []string{"k"} }, err: "admin-listen: \"localhost\": want ip:port"},
		{name: "half a pair", mod: func(o *Options) {
			o.AdminListen = "127.0.0.1:9443"
			o.AdminAPIKeys = []string{"k"}
			o.AdminTLSCert = "c.pem"
		}, err: "admin-tls-cert/admin-tls-key"},
		{name: "in the relay range", mod: func(o *Options) { o.AdminListen = "127.0.0.1:50001"; o.AdminAPIKeys = []string{"k"} }, err: "admin-listen: port 50001 is inside the relay range"},
		{name: "clear text off loopback", mod: func(o *Options) { o.AdminListen = "0.0.0.0:9443"; o.AdminAPIKeys = []string{"k"} }, warning: "admin-listen 0.0.0.0:9443 is not a loopback address and has no TLS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := Defaults()
			if tc.mod != nil {
				tc.mod(&o)
			}
			i := tc.in
			if i == nil {
				i = in()
			}
			st, err := o.derive(i)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.warning != "" && !strings.Contains(strings.Join(st.Warnings, "\n"), tc.warning) {
				t.Errorf("warnings %q, want %q", st.Warnings, tc.warning)
			}
			if tc.check != nil {
				tc.check(t, st)
			}
		})
	}
}
