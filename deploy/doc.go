// Package deploy holds no code: it is the home of avedge's deployment artefacts (Kubernetes
// manifests in kubernetes/, a systemd unit in systemd/, the Dockerfile, the Grafana dashboard
// in grafana/) and of the tests that keep them honest: every manifest parses, its image, ports,
// probes, flags and secret references agree with what avedge accepts, the configs load with
// avedge's own loader, images are pinned by digest, the pods run unprivileged, the systemd
// unit's sandbox lets avedge start with the shipped config (its address-family filter rebuilt
// as a seccomp filter, sandbox_linux_test.go), and a two-relay pool on loopback drains one
// relay while the other takes the new allocations.
package deploy
