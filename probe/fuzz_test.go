package probe

import (
	"bytes"
	"testing"
)

// The credential service's answer is untrusted bytes from the network.

func FuzzParseJSONAnswer(f *testing.F) {
	f.Add([]byte(`{"username":"u","password":"p","ttl":86400,"uris":["turn:a:3478?transport=udp"]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := ParseJSONAnswer(bytes.NewReader(data))
		if err == nil && (g.Username == "" || g.Password == "" || g.TTL < 0) {
			t.Fatalf("accepted %+v", g)
		}
	})
}

func FuzzParseMRASAnswer(f *testing.F) {
	f.Add([]byte(`<response xmlns="http://schemas.microsoft.com/2006/09/sip/mrasp" reasonPhrase="OK"><credentialsResponse credentialsRequestID="1"><credentials><username>u</username><password>p</password><duration>1</duration></credentials><mediaRelayList><mediaRelay><location>internet</location><hostName>h</hostName><udpPort>3478</udpPort></mediaRelay></mediaRelayList></credentialsResponse></response>`))
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := ParseMRASAnswer(bytes.NewReader(data))
		if err != nil {
			return
		}
		if g.Username == "" || g.Password == "" || g.TTL < 0 {
			t.Fatalf("accepted %+v", g)
		}
		// Every relay URL it returns must parse as a TURN URI.
		if _, err := ParseURLs(g.URLs, g.Credentials); err != nil {
			t.Fatalf("relay list yields bad URL: %v (%q)", err, g.URLs)
		}
	})
}

func FuzzValidPing(f *testing.F) {
	p := make([]byte, 32)
	fillPing(p, kindPing, 1, 7)
	f.Add(p)
	f.Fuzz(func(t *testing.T, data []byte) {
		if !validPing(data, len(data)) {
			return
		}
		// Valid means exactly what fillPing writes for that header.
		q := make([]byte, len(data))
		fillPing(q, data[0], data[1], uint32(data[2])<<24|uint32(data[3])<<16|uint32(data[4])<<8|uint32(data[5]))
		if !bytes.Equal(q, data) {
			t.Fatalf("validPing accepted %x", data)
		}
	})
}
