//go:build linux

package probe

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/avedge/avedge/auth"
	"github.com/avedge/avedge/relay"
)

// startService runs the credential service listing the relay s.
func startService(t *testing.T, s *relay.Server) *httptest.Server {
	t.Helper()
	var udpPort, tcpPort int
	for _, l := range s.Addrs() {
		switch l.Network {
		case relay.UDP:
			udpPort = int(l.Addr.Port())
		case relay.TCP:
			tcpPort = int(l.Addr.Port())
		}
	}
	svc, err := auth.NewService(auth.ServiceConfig{
		Keyring: auth.NewKeyring(auth.Secret{ID: "k1", Value: testSecret}),
		Relays:  []auth.RelayInfo{{Location: auth.LocationInternet, HostName: "127.0.0.1", UDPPort: udpPort, TCPPort: tcpPort}},
		APIKeys: []string{"good-key"},
		Logger:  testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(svc)
	t.Cleanup(hs.Close)
	return hs
}

func TestFetchCredentialsThenGather(t *testing.T) {
	s := startRelay(t)
	hs := startService(t, s)
	for _, tt := range []struct {
		name    string
		mras    bool
		key     string
		wantErr error
		wantTTL time.Duration
	}{
		{"json", false, "good-key", nil, 2 * time.Hour},
		{"mras", true, "good-key", nil, 2 * time.Hour},
		{"json wrong key", false, "bad-key", ErrAuthRefused, 0},
		{"mras wrong key", true, "bad-key", ErrAuthRefused, 0},
		{"json no key", false, "", ErrAuthRefused, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g, err := FetchCredentials(context.Background(), Service{URL: hs.URL, APIKey: tt.key, Identity: "alice@example.com", TTL: 2 * time.Hour, MRAS: tt.mras})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("FetchCredentials: %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if !strings.HasPrefix(g.Username, "mras1:k1:") || g.Password == "" || g.TTL != tt.wantTTL || len(g.URLs) != 2 {
				t.Fatalf("grant %+v", g)
			}
			urls, err := ParseURLs(g.URLs, g.Credentials)
			if err != nil {
				t.Fatal(err)
			}
			rep, err := Gather(context.Background(), testConfig(t, urls, Credentials{}))
			if err != nil {
				t.Fatal(err)
			}
			if rep.Err() != nil || rep.Count("relay") != 2 {
				t.Errorf("with the service's credentials: %v, %d relay candidates (want 2)", rep.Err(), rep.Count("relay"))
			}
		})
	}
}

func TestFetchCredentialsServiceDown(t *testing.T) {
	_, tcp := closedPorts(t)
	_, err := FetchCredentials(context.Background(), Service{URL: "http://" + tcp})
	if !errors.Is(err, ErrServiceFailed) || errors.Is(err, ErrAuthRefused) {
		t.Errorf("FetchCredentials: %v, want ErrServiceFailed", err)
	}
	if _, err := FetchCredentials(context.Background(), Service{URL: "ftp://x"}); !errors.Is(err, ErrServiceFailed) {
		t.Errorf("bad URL: %v", err)
	}
}

func TestMRASRequestParsesOnTheService(t *testing.T) {
	doc, err := MRASRequest("https://mras.example.com", "sip:alice@example.com", 90*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	req, err := auth.ParseMRASRequest(strings.NewReader(string(doc)))
	if err != nil {
		t.Fatalf("the service refuses our request: %v\n%s", err, doc)
	}
	if len(req.Requests) != 1 || req.Requests[0].Identity != "sip:alice@example.com" || req.Requests[0].Duration != 2 {
		t.Errorf("parsed %+v", req)
	}
}

func TestParseAnswers(t *testing.T) {
	mrasOK := `<?xml version="1.0"?><response xmlns="http://schemas.microsoft.com/2006/09/sip/mrasp" version="2.0" reasonPhrase="OK">
<credentialsResponse credentialsRequestID="1"><credentials><username>u</username><password>p</password><duration>480</duration></credentials>
<mediaRelayList><mediaRelay><location>internet</location><hostName>edge.example.com</hostName><udpPort>3478</udpPort><tcpPort>443</tcpPort></mediaRelay></mediaRelayList>
</credentialsResponse></response>`
	tests := []struct {
		name     string
		mras     bool
		in       string
		wantErr  error
		wantURLs []string
		wantTTL  time.Duration
	}{
		{"json ok", false, `{"username":"u","password":"p","ttl":86400,"uris":["turn:a:3478?transport=udp"]}`, nil, []string{"turn:a:3478?transport=udp"}, 24 * time.Hour},
		{"json no password", false, `{"username":"u","ttl":1}`, ErrServiceAnswer, nil, 0},
		{"json negative ttl", false, `{"username":"u","password":"p","ttl":-1}`, ErrServiceAnswer, nil, 0},
		{"json garbage", false, `{"username":`, ErrServiceAnswer, nil, 0},
		{"json too large", false, `{"username":"` + strings.Repeat("a", MaxAnswerBytes) + `"}`, ErrAnswerTooLarge, nil, 0},
		{"mras ok", true, mrasOK, nil, []string{"turn:edge.example.com:3478?transport=udp", "turn:edge.example.com:443?transport=tcp"}, 8 * time.Hour},
		{"mras forbidden", true, `<response xmlns="http://schemas.microsoft.com/2006/09/sip/mrasp" reasonPhrase="Forbidden"/>`, ErrAuthRefused, nil, 0},
		{"mras busy", true, `<response xmlns="http://schemas.microsoft.com/2006/09/sip/mrasp" reasonPhrase="Server Busy"/>`, ErrServiceFailed, nil, 0},
		{"mras no response", true, `<response xmlns="http://schemas.microsoft.com/2006/09/sip/mrasp" reasonPhrase="OK"/>`, ErrServiceAnswer, nil, 0},
		{"mras bad host", true, strings.Replace(mrasOK, "edge.example.com", "a/b", 1), ErrServiceAnswer, nil, 0},
		{"mras bad port", true, strings.Replace(mrasOK, "3478", "70000", 1), ErrServiceAnswer, nil, 0},
		{"mras not xml", true, `{}`, ErrServiceAnswer, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parse := ParseJSONAnswer
			if tt.mras {
				parse = ParseMRASAnswer
			}
			g, err := parse(strings.NewReader(tt.in))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if g.Username != "u" || g.Password != "p" || g.TTL != tt.wantTTL || strings.Join(g.URLs, " ") != strings.Join(tt.wantURLs, " ") {
				t.Errorf("grant %+v", g)
			}
		})
	}
}

func TestParseURLs(t *testing.T) {
	c := Credentials{Username: "u", Password: "p"}
	us, err := ParseURLs([]string{"turn:h:3478?transport=tcp", "turns:h:443?transport=tcp", "stun:h:3478"}, c)
	if err != nil {
		t.Fatal(err)
	}
	if us[0].Username != "u" || us[1].Password != "p" || us[2].Username != "" {
		t.Errorf("credentials not set on turn URLs only: %+v %+v %+v", us[0], us[1], us[2])
	}
	if _, err := ParseURLs([]string{"http://h"}, c); !errors.Is(err, ErrBadURL) {
		t.Errorf("http URL: %v", err)
	}
}
