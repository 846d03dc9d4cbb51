// Package deploy holds no code: it is the home of avedge's deployment artefacts (Kubernetes
// manifests in kubernetes/, a systemd unit in systemd/, the Dockerfile, the Grafana dashboard
// in grafana/) and of the tests that keep them honest: every manifest parses, its image, ports,
// probes, flags and secret references agree with what avedge accepts, the configs load with
// avedge's own loader, and a two-relay pool on loopback drains one relay while the other takes
// the new allocations.
package deploy
