package deploy_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/avedge/avedge/auth"
)

// checkPoolEgress: the credential service's egress is limited to what polling the pool needs:
// DNS (port 53) and the relays' metrics port, nothing else.
func checkPoolEgress(t *testing.T, p pool, np object) {
	t.Helper()
	rel, rc := p.container(t, "avedge")
	metricsPort, ok := rc.port(intOrString{Str: "metrics"})
	if !ok {
		t.Fatalf("%s: no container port named metrics", rel)
	}
	allowed := map[string]bool{"UDP/53": true, "TCP/53": true, "TCP/" + strconv.Itoa(metricsPort): true}
	type rule struct {
		Ports []struct {
			Protocol string      `yaml:"protocol"`
			Port     intOrString `yaml:"port"`
		} `yaml:"ports"`
	}
	for i, n := range np.Spec.Egress {
		var r rule
		if err := n.Decode(&r); err != nil {
			t.Fatalf("%s: egress rule %d: %v", np, i, err)
		}
		if len(r.Ports) == 0 {
			t.Errorf("%s: egress rule %d allows every port; want DNS and the relays' metrics port only", np, i)
		}
		for _, pt := range r.Ports {
			if k := pt.Protocol + "/" + strconv.Itoa(pt.Port.Int); !allowed[k] {
				t.Errorf("%s: egress rule %d allows %s; want DNS and the relays' metrics port (%d) only", np, i, k, metricsPort)
			}
		}
	}
}

// TestPoolDiscoveryManifests: the shipped manifests run the pool balanced by default: the
// credential service and the relays discover the pool through the SRV records of a headless
// Service over the relays' metrics port; each relay publishes where clients reach it and
// redirects above a threshold.
func TestPoolDiscoveryManifests(t *testing.T) {
	p := loadPool(t)
	rs := loadRelay(t, p)
	ao, ac := p.container(t, "avedge-auth")
	authArgs := ac.flagArgs(t, ao)
	relayArgs := rs.c.flagArgs(t, rs.obj)

	// _<port name>._tcp.<service>: a headless Service selecting the relays, with that port
	// on the relays' metrics container port.
	checkSRV := func(t *testing.T, who string, vals []string) {
		t.Helper()
		if len(vals) != 1 {
			t.Fatalf("%s: want one --pool-discover, got %q", who, vals)
		}
		parts := strings.SplitN(vals[0], ".", 3)
		if len(parts) != 3 || !strings.HasPrefix(parts[0], "_") || parts[1] != "_tcp" {
			t.Fatalf("%s: --pool-discover=%s: want _<port>._tcp.<headless service>", who, vals[0])
		}
		svc, ok := p.find("Service", parts[2])
		if !ok {
			t.Fatalf("%s: --pool-discover names Service %q, not shipped", who, parts[2])
		}
		if svc.Spec.ClusterIP != "None" || !matches(svc.selector(t), rs.obj.Spec.Template.Metadata.Labels) {
			t.Fatalf("%s is not a headless Service over the relays: no SRV record per relay", svc)
		}
		for _, sp := range svc.Spec.Ports {
			if sp.Name != strings.TrimPrefix(parts[0], "_") {
				continue
			}
			n, ok := rs.c.port(sp.TargetPort)
			if m, _ := rs.c.port(intOrString{Str: "metrics"}); !ok || n != m {
				t.Fatalf("%s port %s targets %+v, not the relays' metrics port", svc, sp.Name, sp.TargetPort)
			}
			return
		}
		t.Fatalf("%s has no port named %s", svc, parts[0])
	}
	t.Run("credential service discovers the pool", func(t *testing.T) { checkSRV(t, "avedge-auth", authArgs["pool-discover"]) })
	t.Run("relays discover their peers", func(t *testing.T) { checkSRV(t, "avedge", relayArgs["pool-discover"]) })

	t.Run("relays publish where clients reach them", func(t *testing.T) {
		if len(relayArgs["pool-relay"]) == 0 {
			t.Fatal("no --pool-relay: the relay would publish its wildcard listen address")
		}
		for _, r := range relayArgs["pool-relay"] {
			if _, err := auth.ParseRelay(strings.ReplaceAll(r, "$(POD_IP)", "192.0.2.1")); err != nil {
				t.Errorf("--pool-relay=%s: %v", r, err)
			}
		}
		pl := rs.settings.Pool
		if pl.Monitor == nil || pl.Monitor.Discover == "" {
			t.Errorf("the relay's settings have no pool monitor: %+v", pl)
		}
		if pl.RedirectThreshold <= 0 || pl.RedirectThreshold >= 1 {
			t.Errorf("--pool-redirect-threshold %v: want a score between 0 and 1 (redirect on by default)", pl.RedirectThreshold)
		}
	})
}
