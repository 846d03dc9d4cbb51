package auth

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// TestServicePool: with Pool set, each answer lists what Pool returns for the request's
// location (MRAS) or zone (JSON), and the configured relays when Pool returns nothing.
func TestServicePool(t *testing.T) {
	var mu sync.Mutex
	var asked []string
	var answer []RelayInfo
	srv, _ := newTestService(t, func(c *ServiceConfig) {
		c.Pool = func(location, zone string) []RelayInfo {
			mu.Lock()
			defer mu.Unlock()
			asked = append(asked, location+"/"+zone)
			return answer
		}
	})
	pooled := []RelayInfo{
		{Location: LocationInternet, HostName: "edge2.example.com", UDPPort: 3478},
		{Location: LocationInternet, HostName: "edge1.example.com", UDPPort: 3478, TCPPort: 443},
	}
	getJSON := func(t *testing.T, query string) (int, JSONCredentials) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/credentials?username=alice"+query, nil)
		req.Header.Set("Authorization", "Bearer "+testAPIKey)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var c JSONCredentials
		_ = json.NewDecoder(resp.Body).Decode(&c)
		return resp.StatusCode, c
	}
	mras := func(t *testing.T, location string) []MRASRelay {
		t.Helper()
		body := fmt.Sprintf(`<request xmlns=%q requestID="1" version="2.0" to="a" from="b"><credentialsRequest credentialsRequestID="c1"><identity>alice</identity><location>%s</location></credentialsRequest></request>`, MRASNamespace, location)
		code, out := postMRAS(t, srv, testAPIKey, []byte(body))
		if code != http.StatusOK {
			t.Fatalf("MRAS: %d %s", code, out)
		}
		var resp struct {
			Relays []MRASRelay `xml:"credentialsResponse>mediaRelayList>mediaRelay"`
		}
		if err := xml.Unmarshal(out, &resp); err != nil {
			t.Fatal(err)
		}
		return resp.Relays
	}

	t.Run("pool empty: configured relays", func(t *testing.T) {
		_, c := getJSON(t, "")
		if len(c.URIs) != 3 || !strings.Contains(c.URIs[0], "edge.example.com") {
			t.Fatalf("uris %q, want the configured ones", c.URIs)
		}
		if rs := mras(t, LocationIntranet); len(rs) != len(testRelays) {
			t.Fatalf("MRAS relays %+v, want the configured ones", rs)
		}
	})
	mu.Lock()
	answer, asked = pooled, nil
	mu.Unlock()
	t.Run("pool answers", func(t *testing.T) {
		_, c := getJSON(t, "&zone=eu-west-1a")
		want := []string{"turn:edge2.example.com:3478?transport=udp", "turn:edge1.example.com:3478?transport=udp", "turn:edge1.example.com:443?transport=tcp"}
		if strings.Join(c.URIs, " ") != strings.Join(want, " ") {
			t.Fatalf("uris %q, want %q", c.URIs, want)
		}
		rs := mras(t, LocationInternet)
		if len(rs) != 2 || rs[0].HostName != "edge2.example.com" || rs[1].TCPPort != 443 {
			t.Fatalf("MRAS relays %+v, want the pool's in its order", rs)
		}
		mu.Lock()
		defer mu.Unlock()
		if strings.Join(asked, " ") != "/eu-west-1a internet/" {
			t.Fatalf("Pool asked %q, want JSON with zone then MRAS with location", asked)
		}
	})
	t.Run("bad zone refused", func(t *testing.T) {
		if code, _ := getJSON(t, "&zone=a%2Fb"); code != http.StatusBadRequest {
			t.Fatalf("zone a/b: %d, want 400", code)
		}
	})
}
