package deploy_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/avedge/avedge/auth"
	"github.com/avedge/avedge/config"
	"github.com/avedge/avedge/internal/nsguard"
	"github.com/avedge/avedge/relay"
)

const (
	k8sDir     = "kubernetes"
	systemdDir = "systemd"
	// imageRepo is the one image of the relay and the credential service.
	imageRepo = "ghcr.io/avedge/avedge"
	// placeholderDigest is the digest the manifests ship with: it names no image, so nothing
	// runs until the operator pins a real one (docs/operator-guide.md, "Pinning the image").
	placeholderDigest = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
)

var digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// pinnedImage checks that ref names imageRepo by digest only ("repo@sha256:<64 hex>"): a tag
// ("repo:latest", "repo:1.2") can be moved to other content under the pods' feet, and a tag
// next to the digest ("repo:1.2@sha256:…") reads as if the tag mattered.
func pinnedImage(ref string) error {
	name, digest, ok := strings.Cut(ref, "@")
	switch {
	case !ok:
		return fmt.Errorf("image %q is not pinned: want %s@sha256:<digest>", ref, imageRepo)
	case name != imageRepo:
		return fmt.Errorf("image %q: want %s@sha256:<digest> (no tag, one image for relay and credential service)", ref, imageRepo)
	case !digestRE.MatchString(digest):
		return fmt.Errorf("image %q: digest %q is not sha256:<64 lowercase hex digits>", ref, digest)
	}
	return nil
}

// authBinary is cmd/avedge-auth built once by TestMain ("" when the command does not exist or
// does not build; tests that need it skip with the reason in authBuildErr).
var authBinary, authBuildErr = "", error(nil)

// testDir holds what TestMain and the tests build; removed when the tests end.
var testDir string

func TestMain(m *testing.M) {
	runSandboxLauncher() // returns unless this binary was re-executed as the sandbox launcher
	nsguard.Arm()        // the relays these tests start inherit it
	dir, err := os.MkdirTemp("", "avedge-deploy-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testDir = dir
	authBinary, authBuildErr = buildCommand(dir, "avedge-auth")
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func buildCommand(dir, name string) (string, error) {
	src := filepath.Join("..", "cmd", name)
	if m, _ := filepath.Glob(filepath.Join(src, "*.go")); len(m) == 0 {
		return "", fmt.Errorf("cmd/%s has no Go files yet", name)
	}
	out := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-o", out, "./cmd/"+name)
	cmd.Dir = ".."
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/%s: %v\n%s", name, err, b)
	}
	return out, nil
}

// --- The subset of the Kubernetes API the checks read. -------------------------------------

type object struct {
	File       string            `yaml:"-"`
	APIVersion string            `yaml:"apiVersion"`
	Kind       string            `yaml:"kind"`
	Metadata   meta              `yaml:"metadata"`
	Type       string            `yaml:"type"`
	Data       map[string]string `yaml:"data"`
	StringData map[string]string `yaml:"stringData"`
	Spec       struct {
		// NetworkPolicy.
		PodSelector labelSelector `yaml:"podSelector"`
		PolicyTypes []string      `yaml:"policyTypes"`
		Ingress     []struct {
			From []struct {
				NamespaceSelector *labelSelector `yaml:"namespaceSelector"`
				PodSelector       *labelSelector `yaml:"podSelector"`
				IPBlock           *yaml.Node     `yaml:"ipBlock"`
			} `yaml:"from"`
			Ports []struct {
				Protocol string      `yaml:"protocol"`
				Port     intOrString `yaml:"port"`
			} `yaml:"ports"`
		} `yaml:"ingress"`
		Egress []yaml.Node `yaml:"egress"`

		Selector  yaml.Node `yaml:"selector"` // a map (Service) or {matchLabels} (workloads)
		ClusterIP string    `yaml:"clusterIP"`
		Ports     []struct {
			Name       string      `yaml:"name"`
			Port       int         `yaml:"port"`
			TargetPort intOrString `yaml:"targetPort"`
			Protocol   string      `yaml:"protocol"`
		} `yaml:"ports"`
		Template struct {
			Metadata meta    `yaml:"metadata"`
			Spec     podSpec `yaml:"spec"`
		} `yaml:"template"`
		Endpoints []struct {
			Port string `yaml:"port"`
			Path string `yaml:"path"`
		} `yaml:"endpoints"`
	} `yaml:"spec"`
}

func (o object) String() string { return o.Kind + "/" + o.Metadata.Name + " (" + o.File + ")" }

func (o object) isWorkload() bool {
	return o.Kind == "DaemonSet" || o.Kind == "Deployment" || o.Kind == "StatefulSet"
}

// secretKeys returns the keys a Secret or ConfigMap defines.
func (o object) keys() map[string]bool {
	k := map[string]bool{}
	for n := range o.Data {
		k[n] = true
	}
	for n := range o.StringData {
		k[n] = true
	}
	return k
}

// selector returns a Service's selector, or a workload's or ServiceMonitor's matchLabels.
func (o object) selector(t *testing.T) map[string]string {
	t.Helper()
	var out map[string]string
	if o.Spec.Selector.Kind == 0 {
		return nil
	}
	if o.Kind == "Service" {
		if err := o.Spec.Selector.Decode(&out); err != nil {
			t.Fatalf("%s: selector: %v", o, err)
		}
		return out
	}
	var ml struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	}
	if err := o.Spec.Selector.Decode(&ml); err != nil {
		t.Fatalf("%s: selector: %v", o, err)
	}
	return ml.MatchLabels
}

type labelSelector struct {
	MatchLabels      map[string]string `yaml:"matchLabels"`
	MatchExpressions []yaml.Node       `yaml:"matchExpressions"`
}

type meta struct {
	Name        string            `yaml:"name"`
	Namespace   string            `yaml:"namespace"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type podSpec struct {
	AutomountServiceAccountToken *bool `yaml:"automountServiceAccountToken"`
	SecurityContext              struct {
		FSGroup *int64 `yaml:"fsGroup"`
	} `yaml:"securityContext"`
	HostNetwork                   bool              `yaml:"hostNetwork"`
	NodeSelector                  map[string]string `yaml:"nodeSelector"`
	DNSPolicy                     string            `yaml:"dnsPolicy"`
	TerminationGracePeriodSeconds *int64            `yaml:"terminationGracePeriodSeconds"`
	Containers                    []container       `yaml:"containers"`
	InitContainers                []container       `yaml:"initContainers"`
	Volumes                       []struct {
		Name   string `yaml:"name"`
		Secret *struct {
			SecretName  string    `yaml:"secretName"`
			DefaultMode *int      `yaml:"defaultMode"`
			Items       []keyPath `yaml:"items"`
		} `yaml:"secret"`
		ConfigMap *struct {
			Name  string    `yaml:"name"`
			Items []keyPath `yaml:"items"`
		} `yaml:"configMap"`
	} `yaml:"volumes"`
}

type keyPath struct {
	Key  string `yaml:"key"`
	Path string `yaml:"path"`
}

type container struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Env     []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			FieldRef *struct {
				FieldPath string `yaml:"fieldPath"`
			} `yaml:"fieldRef"`
			SecretKeyRef    *nameKey `yaml:"secretKeyRef"`
			ConfigMapKeyRef *nameKey `yaml:"configMapKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	EnvFrom []struct {
		SecretRef    *nameKey `yaml:"secretRef"`
		ConfigMapRef *nameKey `yaml:"configMapRef"`
	} `yaml:"envFrom"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
		HostPort      int    `yaml:"hostPort"`
		Protocol      string `yaml:"protocol"`
	} `yaml:"ports"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	StartupProbe   *probe `yaml:"startupProbe"`
	VolumeMounts   []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		SubPath   string `yaml:"subPath"`
	} `yaml:"volumeMounts"`
	SecurityContext struct {
		RunAsUser                *int64 `yaml:"runAsUser"`
		RunAsNonRoot             *bool  `yaml:"runAsNonRoot"`
		AllowPrivilegeEscalation *bool  `yaml:"allowPrivilegeEscalation"`
		Capabilities             struct {
			Add  []string `yaml:"add"`
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
	} `yaml:"securityContext"`
}

type nameKey struct {
	Name string `yaml:"name"`
	Key  string `yaml:"key"`
}

type probe struct {
	HTTPGet *struct {
		Path string      `yaml:"path"`
		Port intOrString `yaml:"port"`
	} `yaml:"httpGet"`
	TCPSocket *struct {
		Port intOrString `yaml:"port"`
	} `yaml:"tcpSocket"`
}

// intOrString is Kubernetes' IntOrString: a port number or a port name.
type intOrString struct {
	Int int
	Str string
}

func (v *intOrString) UnmarshalYAML(n *yaml.Node) error {
	if n.Tag == "!!int" {
		return n.Decode(&v.Int)
	}
	return n.Decode(&v.Str)
}

// port resolves p against c's named ports (protocol TCP, the only one probes and Services
// here use).
func (c container) port(p intOrString) (int, bool) {
	if p.Str == "" {
		return p.Int, p.Int != 0
	}
	for _, cp := range c.Ports {
		if cp.Name == p.Str {
			return cp.ContainerPort, true
		}
	}
	return 0, false
}

// flagArgs splits "--name=value" args into name → values, failing on anything else (a
// space-separated "--name value" pair in args is a trap in YAML lists).
func (c container) flagArgs(t *testing.T, o object) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, a := range c.Args {
		name, val, ok := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !strings.HasPrefix(a, "--") || !ok || name == "" {
			t.Errorf("%s container %s: arg %q: write every flag as --name=value", o, c.Name, a)
			continue
		}
		out[name] = append(out[name], val)
	}
	return out
}

type kustomization struct {
	APIVersion string   `yaml:"apiVersion"`
	Kind       string   `yaml:"kind"`
	Namespace  string   `yaml:"namespace"`
	Resources  []string `yaml:"resources"`
	Images     []struct {
		Name    string `yaml:"name"`
		NewName string `yaml:"newName"`
		NewTag  string `yaml:"newTag"`
		Digest  string `yaml:"digest"`
	} `yaml:"images"`
}

// pool is everything deploy/kubernetes defines, as kustomize would see it.
type pool struct {
	kust    kustomization
	objects []object
}

func loadPool(t *testing.T) pool {
	t.Helper()
	var p pool
	b, err := os.ReadFile(filepath.Join(k8sDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&p.kust); err != nil {
		t.Fatalf("kustomization.yaml (only the keys this test knows are used): %v", err)
	}
	if p.kust.Kind != "Kustomization" {
		t.Fatalf("kustomization.yaml: kind %q", p.kust.Kind)
	}
	for _, res := range p.kust.Resources {
		b, err := os.ReadFile(filepath.Join(k8sDir, res))
		if err != nil {
			t.Fatalf("kustomization resource: %v", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for i := 0; i < 100; i++ {
			var o object
			err := dec.Decode(&o)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: document %d: %v", res, i+1, err)
			}
			if o.Kind == "" {
				continue // an empty document between two "---"
			}
			o.File = res
			p.objects = append(p.objects, o)
		}
	}
	if len(p.objects) == 0 {
		t.Fatal("kustomization lists no objects")
	}
	return p
}

func (p pool) find(kind, name string) (object, bool) {
	for _, o := range p.objects {
		if o.Kind == kind && o.Metadata.Name == name {
			return o, true
		}
	}
	return object{}, false
}

func (p pool) workloads() []object {
	var out []object
	for _, o := range p.objects {
		if o.isWorkload() {
			out = append(out, o)
		}
	}
	return out
}

// container returns the workload container that runs command (its basename).
func (p pool) container(t *testing.T, command string) (object, container) {
	t.Helper()
	for _, o := range p.workloads() {
		for _, c := range o.Spec.Template.Spec.Containers {
			if len(c.Command) > 0 && filepath.Base(c.Command[0]) == command {
				return o, c
			}
		}
	}
	t.Fatalf("no workload runs %s", command)
	return object{}, container{}
}

// mountedFile says which Secret or ConfigMap key a container sees at path.
func mountedFile(o object, c container, path string) (kind, name, key string, ok bool) {
	best := ""
	for _, m := range c.VolumeMounts {
		mp := strings.TrimSuffix(m.MountPath, "/")
		if rel, found := strings.CutPrefix(path, mp+"/"); found && len(mp) > len(best) && m.SubPath == "" {
			for _, v := range o.Spec.Template.Spec.Volumes {
				if v.Name != m.Name {
					continue
				}
				resolve := func(items []keyPath) (string, bool) {
					if len(items) == 0 {
						return rel, !strings.Contains(rel, "/")
					}
					for _, it := range items {
						if it.Path == rel {
							return it.Key, true
						}
					}
					return "", false
				}
				switch {
				case v.Secret != nil:
					if k, found := resolve(v.Secret.Items); found {
						best, kind, name, key, ok = mp, "Secret", v.Secret.SecretName, k, true
					}
				case v.ConfigMap != nil:
					if k, found := resolve(v.ConfigMap.Items); found {
						best, kind, name, key, ok = mp, "ConfigMap", v.ConfigMap.Name, k, true
					}
				}
			}
		}
	}
	return kind, name, key, ok
}

// mountedContent returns what a container reads at path, or fails the test.
func (p pool) mountedContent(t *testing.T, o object, c container, path string) (string, object) {
	t.Helper()
	kind, name, key, ok := mountedFile(o, c, path)
	if !ok {
		t.Fatalf("%s container %s reads %s, which no Secret or ConfigMap volume mounts", o, c.Name, path)
	}
	src, ok := p.find(kind, name)
	if !ok {
		t.Fatalf("%s container %s mounts %s %q, which the kustomization does not define", o, c.Name, kind, name)
	}
	v, ok := src.Data[key]
	if !ok {
		v, ok = src.StringData[key]
	}
	if !ok {
		t.Fatalf("%s has no key %q (mounted at %s by %s)", src, key, path, o)
	}
	return v, src
}

// avedgeFlags is the flag set `avedge --help` documents: config.Options.FlagSet plus --config.
func avedgeFlags() *flag.FlagSet {
	fs := flag.NewFlagSet("avedge", flag.ContinueOnError)
	fs.String("config", "", "")
	var o config.Options
	o.FlagSet(fs)
	return fs
}

// helpFlags runs bin --help and returns the flag names it documents (Go's flag package
// format: "  -name type" at the start of a line).
func helpFlags(t *testing.T, bin string) map[string]bool {
	t.Helper()
	out, _ := exec.Command(bin, "--help").CombinedOutput() // --help may exit 0 or 2
	re := regexp.MustCompile(`(?m)^\s{1,4}--?([A-Za-z0-9][A-Za-z0-9._-]*)`)
	names := map[string]bool{}
	for _, m := range re.FindAllStringSubmatch(string(out), -1) {
		names[m[1]] = true
	}
	if len(names) == 0 {
		t.Fatalf("%s --help lists no flags:\n%s", bin, out)
	}
	return names
}

// relaySetup is the relay container's configuration as avedge loads it in the pod, with the
// node address $(POD_IP) replaced by 127.0.0.1 and the mounted files by temporary copies.
type relaySetup struct {
	obj      object
	c        container
	opts     config.Options
	settings *config.Settings
	yaml     string
}

func loadRelay(t *testing.T, p pool) relaySetup {
	t.Helper()
	o, c := p.container(t, "avedge")
	args := c.flagArgs(t, o)
	if len(args["config"]) != 1 {
		t.Fatalf("%s: want exactly one --config, got %q", o, args["config"])
	}
	text, _ := p.mountedContent(t, o, c, args["config"][0])
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "avedge.yaml")
	if err := os.WriteFile(cfgPath, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	secretPath := filepath.Join(dir, "static-auth-secrets")
	if err := os.WriteFile(secretPath, []byte("k1 0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var real []string
	for _, a := range c.Args {
		switch {
		case strings.HasPrefix(a, "--config="):
			a = "--config=" + cfgPath
		case strings.HasPrefix(a, "--static-auth-secret-file="):
			a = "--static-auth-secret-file=" + secretPath
		}
		// Under hostNetwork the pod IP is the node's (internal) IP: both become loopback here.
		a = strings.ReplaceAll(a, "$(POD_IP)", "127.0.0.1")
		real = append(real, strings.ReplaceAll(a, "$(HOST_IP)", "127.0.0.1"))
	}
	real = append(real, "--static-auth-secret-file="+secretPath)
	opts, err := config.Parse(real, io.Discard)
	if err != nil {
		t.Fatalf("avedge %s: %v", strings.Join(real, " "), err)
	}
	st, err := opts.Build()
	if err != nil {
		t.Fatalf("avedge with %s: %v", o, err)
	}
	return relaySetup{obj: o, c: c, opts: opts, settings: st, yaml: text}
}

// --- Kubernetes. ---------------------------------------------------------------------------

func TestKustomization(t *testing.T) {
	p := loadPool(t)
	t.Run("lists every manifest", func(t *testing.T) {
		files, err := filepath.Glob(filepath.Join(k8sDir, "*.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			base := filepath.Base(f)
			if base != "kustomization.yaml" && !slices.Contains(p.kust.Resources, base) {
				t.Errorf("%s is not listed in kustomization.yaml resources", base)
			}
		}
	})
	t.Run("namespace-agnostic", func(t *testing.T) {
		if p.kust.Namespace != "" {
			t.Errorf("kustomization.yaml pins namespace %q", p.kust.Namespace)
		}
		for _, o := range p.objects {
			if o.Metadata.Namespace != "" || o.Kind == "Namespace" {
				t.Errorf("%s pins a namespace", o)
			}
		}
	})
	t.Run("unique names", func(t *testing.T) {
		seen := map[string]string{}
		for _, o := range p.objects {
			k := o.Kind + "/" + o.Metadata.Name
			if prev, dup := seen[k]; dup {
				t.Errorf("%s defined in %s and %s", k, prev, o.File)
			}
			seen[k] = o.File
		}
	})
	t.Run("kubectl kustomize", func(t *testing.T) {
		kubectl, err := exec.LookPath("kubectl")
		if err != nil {
			t.Skip("kubectl not installed: kustomize rendering not checked")
		}
		out, err := exec.Command(kubectl, "kustomize", k8sDir).Output()
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				t.Fatalf("kubectl kustomize %s: %v\n%s", k8sDir, err, ee.Stderr)
			}
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(out))
		var got []string
		for i := 0; i < 100; i++ {
			var o object
			if err := dec.Decode(&o); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("rendered document %d: %v", i+1, err)
			}
			got = append(got, o.Kind+"/"+o.Metadata.Name)
			if o.isWorkload() {
				for _, c := range o.Spec.Template.Spec.Containers {
					if err := pinnedImage(c.Image); err != nil {
						t.Errorf("rendered %s container %s: %v", o.Kind, c.Name, err)
					}
				}
			}
		}
		var want []string
		for _, o := range p.objects {
			want = append(want, o.Kind+"/"+o.Metadata.Name)
		}
		sort.Strings(got)
		sort.Strings(want)
		if !slices.Equal(got, want) {
			t.Errorf("kustomize renders %v, want %v", got, want)
		}
	})
}

func TestImages(t *testing.T) {
	p := loadPool(t)
	dockerfile, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range p.workloads() {
		pod := o.Spec.Template.Spec
		for _, c := range append(append([]container(nil), pod.InitContainers...), pod.Containers...) {
			t.Run(o.Metadata.Name+"/"+c.Name, func(t *testing.T) {
				if err := pinnedImage(c.Image); err != nil {
					t.Error(err)
				}
				if len(c.Command) == 0 {
					t.Fatal("no command: name the binary of the image it runs")
				}
				if !bytes.Contains(dockerfile, []byte(" "+c.Command[0]+"\n")) {
					t.Errorf("command %s is not a binary the Dockerfile installs", c.Command[0])
				}
				if !bytes.Contains(dockerfile, []byte("./cmd/"+filepath.Base(c.Command[0])+"\n")) &&
					!bytes.Contains(dockerfile, []byte("./cmd/"+filepath.Base(c.Command[0])+" ")) {
					t.Errorf("the Dockerfile does not build ./cmd/%s", filepath.Base(c.Command[0]))
				}
			})
		}
	}
	t.Run("kustomize images", func(t *testing.T) {
		if len(p.kust.Images) != 1 || p.kust.Images[0].Name != imageRepo {
			t.Fatalf("kustomization images %+v, want one entry named %s", p.kust.Images, imageRepo)
		}
		im := p.kust.Images[0]
		if im.NewTag != "" || im.NewName != "" {
			t.Errorf("kustomization image %+v: pin by digest only (no newTag, no newName)", im)
		}
		if err := pinnedImage(imageRepo + "@" + im.Digest); err != nil {
			t.Errorf("kustomization image digest: %v", err)
		}
	})
	// The shipped digest is the documented placeholder, the same everywhere, so that one
	// `kustomize edit set image` (or one search and replace) pins every workload.
	t.Run("placeholder documented", func(t *testing.T) {
		for _, o := range p.workloads() {
			for _, c := range o.Spec.Template.Spec.Containers {
				if c.Image != imageRepo+"@"+placeholderDigest {
					t.Errorf("%s container %s: image %q, want the documented placeholder %s@%s", o, c.Name, c.Image, imageRepo, placeholderDigest)
				}
			}
		}
		guide, err := os.ReadFile(filepath.Join("..", "docs", "operator-guide.md"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(guide, []byte("kustomize edit set image "+imageRepo+"@sha256:")) {
			t.Error("the operator guide does not say how to pin the image (kustomize edit set image …@sha256:<digest>)")
		}
	})
}

func TestRelayDaemonSet(t *testing.T) {
	p := loadPool(t)
	rs := loadRelay(t, p)
	o, c, pod := rs.obj, rs.c, rs.obj.Spec.Template.Spec

	t.Run("one relay per node on the host network", func(t *testing.T) {
		if o.Kind != "DaemonSet" {
			t.Errorf("the relay runs as a %s, want a DaemonSet", o.Kind)
		}
		if !pod.HostNetwork {
			t.Error("hostNetwork is not true: the relay range must be reachable on the node's address")
		}
		if pod.DNSPolicy != "ClusterFirstWithHostNet" {
			t.Errorf("dnsPolicy %q, want ClusterFirstWithHostNet", pod.DNSPolicy)
		}
		// kubectl drain does not evict DaemonSet pods; unlabelling the node does.
		if len(pod.NodeSelector) == 0 {
			t.Error("no nodeSelector: relays would run on every node, and a node's relay could not be drained by removing its label")
		}
	})

	t.Run("args are avedge flags", func(t *testing.T) {
		fs := avedgeFlags()
		env := map[string]bool{}
		for _, e := range c.Env {
			env[e.Name] = true
		}
		for name, vals := range c.flagArgs(t, o) {
			if fs.Lookup(name) == nil {
				t.Errorf("--%s is not a flag of avedge --help", name)
			}
			for _, v := range vals {
				for _, m := range regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`).FindAllStringSubmatch(v, -1) {
					if !env[m[1]] {
						t.Errorf("--%s=%s refers to $(%s), which the container's env does not define", name, v, m[1])
					}
				}
			}
		}
	})

	t.Run("relay-ip is the node address", func(t *testing.T) {
		if got := rs.settings.Relay.RelayIPs; len(got) != 1 || got[0] != netip.MustParseAddr("127.0.0.1") {
			t.Errorf("relay IPs %v, want the $(POD_IP) substitute 127.0.0.1", got)
		}
		found := false
		for _, e := range c.Env {
			if e.Name == "POD_IP" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "status.podIP" {
				found = true
			}
		}
		if !found {
			t.Error("POD_IP does not come from the downward API status.podIP")
		}
	})

	t.Run("container ports match the listeners", func(t *testing.T) {
		want := map[string]bool{}
		low := false
		for _, l := range rs.settings.Relay.Listeners {
			proto := "TCP"
			if l.Network == relay.UDP {
				proto = "UDP"
			}
			want[fmt.Sprintf("%d/%s", l.Addr.Port(), proto)] = true
			low = low || l.Addr.Port() < 1024
		}
		mp := metricsPort(t, rs.opts)
		want[fmt.Sprintf("%d/TCP", mp)] = true
		got := map[string]bool{}
		for _, cp := range c.Ports {
			proto := cp.Protocol
			if proto == "" {
				proto = "TCP"
			}
			got[fmt.Sprintf("%d/%s", cp.ContainerPort, proto)] = true
			if cp.HostPort != 0 && cp.HostPort != cp.ContainerPort {
				t.Errorf("port %s: hostPort %d differs from containerPort %d under hostNetwork", cp.Name, cp.HostPort, cp.ContainerPort)
			}
		}
		if !mapsEqual(got, want) {
			t.Errorf("container ports %v, want the listeners and metrics-listen of avedge.yaml: %v", keysOf(got), keysOf(want))
		}
		sc := c.SecurityContext
		if low && !slices.Equal(sc.Capabilities.Add, []string{"NET_BIND_SERVICE"}) || !low && len(sc.Capabilities.Add) != 0 {
			t.Errorf("capabilities added %v: want exactly NET_BIND_SERVICE when a listener port is below 1024 (low port: %v), else none", sc.Capabilities.Add, low)
		}
		if !slices.Equal(sc.Capabilities.Drop, []string{"ALL"}) {
			t.Errorf("capabilities dropped %v: drop ALL", sc.Capabilities.Drop)
		}
	})

	// The relay runs unprivileged. A capability added for a non-root user reaches the
	// effective set only through a file capability on the binary (Kubernetes sets no ambient
	// capabilities), so the image must carry one. TestDaemonSetBindsLowPortUnprivileged runs
	// avedge that way.
	t.Run("unprivileged", func(t *testing.T) {
		sc := c.SecurityContext
		if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
			t.Error("runAsNonRoot is not true")
		}
		if sc.RunAsUser == nil || *sc.RunAsUser == 0 {
			t.Errorf("runAsUser %v: want a non-zero uid (the image's 65532)", sc.RunAsUser)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Error("allowPrivilegeEscalation is not false")
		}
		if slices.Contains(sc.Capabilities.Add, "NET_BIND_SERVICE") {
			dockerfile, err := os.ReadFile("Dockerfile")
			if err != nil {
				t.Fatal(err)
			}
			if !regexp.MustCompile(`(?m)setcap cap_net_bind_service=\+ep /out/` + regexp.QuoteMeta(filepath.Base(c.Command[0])) + `\b`).Match(dockerfile) {
				t.Errorf("NET_BIND_SERVICE is added for a non-root user, but the Dockerfile puts no file capability cap_net_bind_service=+ep on %s: the bind would fail", c.Command[0])
			}
		}
	})

	t.Run("metrics on the node's internal address", func(t *testing.T) {
		args := c.flagArgs(t, o)
		want := fmt.Sprintf("$(HOST_IP):%d", metricsPort(t, rs.opts))
		if !slices.Equal(args["metrics-listen"], []string{want}) {
			t.Errorf("--metrics-listen %q, want %q: metrics on the node's internal address, not on every address", args["metrics-listen"], want)
		}
		found := false
		for _, e := range c.Env {
			if e.Name == "HOST_IP" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "status.hostIP" {
				found = true
			}
		}
		if !found {
			t.Error("HOST_IP does not come from the downward API status.hostIP")
		}
		if ap, _ := netip.ParseAddrPort(rs.opts.MetricsListen); !ap.Addr().IsLoopback() {
			t.Errorf("metrics-listen as loaded (HOST_IP as 127.0.0.1) is %s: the ConfigMap or a later flag overrides it", rs.opts.MetricsListen)
		}
	})

	t.Run("probes on the metrics port", func(t *testing.T) {
		mp := metricsPort(t, rs.opts)
		for _, tc := range []struct {
			name string
			p    *probe
			path string
		}{
			{"readiness", c.ReadinessProbe, "/readyz"},
			{"liveness", c.LivenessProbe, "/healthz"},
		} {
			if tc.p == nil || tc.p.HTTPGet == nil {
				t.Errorf("%s probe: want httpGet %s", tc.name, tc.path)
				continue
			}
			if tc.p.HTTPGet.Path != tc.path {
				t.Errorf("%s probe path %q, want %q", tc.name, tc.p.HTTPGet.Path, tc.path)
			}
			if port, ok := c.port(tc.p.HTTPGet.Port); !ok || port != mp {
				t.Errorf("%s probe port %+v resolves to %d, want metrics-listen's %d", tc.name, tc.p.HTTPGet.Port, port, mp)
			}
		}
	})

	t.Run("prometheus annotations", func(t *testing.T) {
		a := o.Spec.Template.Metadata.Annotations
		if a["prometheus.io/scrape"] != "true" || a["prometheus.io/path"] != "/metrics" ||
			a["prometheus.io/port"] != strconv.Itoa(metricsPort(t, rs.opts)) {
			t.Errorf("pod annotations %v: want prometheus.io/scrape true, path /metrics, port %d", a, metricsPort(t, rs.opts))
		}
	})

	t.Run("grace period covers the drain", func(t *testing.T) {
		g := pod.TerminationGracePeriodSeconds
		need := rs.opts.DrainTimeout + 10*time.Second
		if g == nil {
			t.Errorf("terminationGracePeriodSeconds unset (30s), want at least drain-timeout (%v) + 10s", rs.opts.DrainTimeout)
		} else if time.Duration(*g)*time.Second < need {
			t.Errorf("terminationGracePeriodSeconds %d, want at least drain-timeout (%v) + 10s", *g, rs.opts.DrainTimeout)
		}
		if rs.opts.DrainTimeout <= 0 {
			t.Errorf("drain-timeout %v: live allocations would be cut at once", rs.opts.DrainTimeout)
		}
	})

	t.Run("secrets file mounted from the Secret", func(t *testing.T) {
		var y struct {
			SecretFile string `yaml:"static-auth-secret-file"`
		}
		if err := yaml.Unmarshal([]byte(rs.yaml), &y); err != nil {
			t.Fatal(err)
		}
		if y.SecretFile == "" {
			t.Fatal("avedge.yaml sets no static-auth-secret-file: the pool would run on generated, unshared secrets")
		}
		if _, src := p.mountedContent(t, o, c, y.SecretFile); src.Kind != "Secret" {
			t.Errorf("%s comes from %s, want a Secret", y.SecretFile, src)
		}
	})

	t.Run("placeholder secret refused", func(t *testing.T) {
		var y struct {
			SecretFile string `yaml:"static-auth-secret-file"`
		}
		_ = yaml.Unmarshal([]byte(rs.yaml), &y)
		text, _ := p.mountedContent(t, o, c, y.SecretFile)
		f := filepath.Join(t.TempDir(), "secrets")
		if err := os.WriteFile(f, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if s, err := auth.LoadSecretsFile(f); err == nil {
			t.Errorf("the shipped Secret holds %d usable keys: a placeholder must not validate", len(s))
		}
	})
}

func metricsPort(t *testing.T, o config.Options) int {
	t.Helper()
	ap, err := netip.ParseAddrPort(o.MetricsListen)
	if err != nil {
		t.Fatalf("metrics-listen %q: %v", o.MetricsListen, err)
	}
	return int(ap.Port())
}

func TestPinnedImage(t *testing.T) {
	for _, tc := range []struct {
		ref string
		ok  bool
	}{
		{imageRepo + "@" + placeholderDigest, true},
		{imageRepo + "@sha256:3f1c2a0b9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b", true},
		{imageRepo + ":latest", false},
		{imageRepo + ":1.2.3", false},
		{imageRepo, false},
		{imageRepo + ":1.2.3@" + placeholderDigest, false},
		{imageRepo + "@sha256:abc", false},
		{imageRepo + "@sha256:3F1C2A0B9E8D7C6B5A4F3E2D1C0B9A8F7E6D5C4B3A2F1E0D9C8B7A6F5E4D3C2B", false},
		{imageRepo + "@sha512:" + strings.Repeat("0", 128), false},
		{"docker.io/library/busybox@" + placeholderDigest, false},
	} {
		t.Run(tc.ref, func(t *testing.T) {
			if err := pinnedImage(tc.ref); (err == nil) != tc.ok {
				t.Errorf("pinnedImage(%q) = %v, want ok=%v", tc.ref, err, tc.ok)
			}
		})
	}
}

// TestPods checks what every pod of the kustomization must do whatever it runs.
func TestPods(t *testing.T) {
	p := loadPool(t)
	for _, o := range p.workloads() {
		t.Run(o.Metadata.Name, func(t *testing.T) {
			pod := o.Spec.Template.Spec
			// Neither the relay nor the credential service calls the Kubernetes API.
			if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
				t.Error("automountServiceAccountToken is not false: the pod would carry an API token it never uses")
			}
			for _, c := range append(append([]container(nil), pod.InitContainers...), pod.Containers...) {
				sc := c.SecurityContext
				if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 {
					t.Errorf("container %s: want runAsNonRoot true and a non-zero runAsUser", c.Name)
				}
				if !slices.Contains(sc.Capabilities.Drop, "ALL") {
					t.Errorf("container %s: capabilities not dropped (drop ALL)", c.Name)
				}
			}
			// A non-root user reads the Secret's files through fsGroup: group-readable mode.
			for _, v := range pod.Volumes {
				if v.Secret == nil {
					continue
				}
				mode := 0o644
				if v.Secret.DefaultMode != nil {
					mode = *v.Secret.DefaultMode
				}
				if pod.SecurityContext.FSGroup == nil || mode&0o040 == 0 || mode&0o007 != 0 {
					t.Errorf("volume %s: defaultMode %#o with fsGroup %v: want fsGroup set, group-readable and nothing for others", v.Name, mode, pod.SecurityContext.FSGroup)
				}
			}
		})
	}
}

func TestNetworkPolicy(t *testing.T) {
	p := loadPool(t)
	o, c := p.container(t, "avedge-auth")
	var pols []object
	for _, np := range p.objects {
		if np.Kind == "NetworkPolicy" && matches(np.Spec.PodSelector.MatchLabels, o.Spec.Template.Metadata.Labels) {
			pols = append(pols, np)
		}
	}
	if len(pols) != 1 {
		t.Fatalf("%d NetworkPolicies select the credential service's pods, want 1", len(pols))
	}
	np := pols[0]
	if np.APIVersion != "networking.k8s.io/v1" {
		t.Errorf("%s: apiVersion %q", np, np.APIVersion)
	}
	if !slices.Contains(np.Spec.PolicyTypes, "Ingress") {
		t.Errorf("%s: policyTypes %v lacks Ingress: the policy would not restrict callers", np, np.Spec.PolicyTypes)
	}
	checkPoolEgress(t, p, np)
	if len(np.Spec.Ingress) != 1 {
		t.Fatalf("%s: %d ingress rules, want 1 (the callers)", np, len(np.Spec.Ingress))
	}
	in := np.Spec.Ingress[0]
	const callerLabel = "avedge.io/credentials-client"
	for _, f := range in.From {
		// Every peer must be a pod carrying the caller label: no ipBlock, no namespace-wide
		// peer without a pod selector, no empty pod selector.
		if f.IPBlock != nil || f.PodSelector == nil || f.PodSelector.MatchLabels[callerLabel] != "true" || len(f.PodSelector.MatchExpressions) != 0 {
			t.Errorf("%s: ingress peer %+v: want only pods labelled %s: \"true\"", np, f, callerLabel)
		}
	}
	if len(in.From) == 0 {
		t.Errorf("%s: ingress without from admits everyone", np)
	}
	if len(in.Ports) != 1 {
		t.Fatalf("%s: ports %+v, want the credential service's one port", np, in.Ports)
	}
	if n, ok := c.port(in.Ports[0].Port); !ok || len(c.Ports) != 1 || n != c.Ports[0].ContainerPort || in.Ports[0].Protocol != "TCP" {
		t.Errorf("%s: port %+v is not the container port %+v", np, in.Ports[0], c.Ports)
	}
	guide, err := os.ReadFile(filepath.Join("..", "docs", "operator-guide.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(guide, []byte(callerLabel+`: "true"`)) {
		t.Errorf("the operator guide does not document the label %s: \"true\" callers need", callerLabel)
	}
}

func TestReferences(t *testing.T) {
	p := loadPool(t)
	defined := func(kind, name string) bool { _, ok := p.find(kind, name); return ok }
	hasKey := func(kind, name, key string) bool {
		o, ok := p.find(kind, name)
		return ok && o.keys()[key]
	}
	for _, o := range p.workloads() {
		t.Run(o.Metadata.Name, func(t *testing.T) {
			pod := o.Spec.Template.Spec
			for _, v := range pod.Volumes {
				switch {
				case v.Secret != nil:
					if !defined("Secret", v.Secret.SecretName) {
						t.Errorf("volume %s: secretName %q is not a Secret of the kustomization", v.Name, v.Secret.SecretName)
					}
					for _, it := range v.Secret.Items {
						if !hasKey("Secret", v.Secret.SecretName, it.Key) {
							t.Errorf("volume %s: Secret %s has no key %q", v.Name, v.Secret.SecretName, it.Key)
						}
					}
				case v.ConfigMap != nil:
					if !defined("ConfigMap", v.ConfigMap.Name) {
						t.Errorf("volume %s: ConfigMap %q is not in the kustomization", v.Name, v.ConfigMap.Name)
					}
					for _, it := range v.ConfigMap.Items {
						if !hasKey("ConfigMap", v.ConfigMap.Name, it.Key) {
							t.Errorf("volume %s: ConfigMap %s has no key %q", v.Name, v.ConfigMap.Name, it.Key)
						}
					}
				}
			}
			for _, c := range append(append([]container(nil), pod.InitContainers...), pod.Containers...) {
				for _, e := range c.Env {
					if e.ValueFrom == nil {
						continue
					}
					if r := e.ValueFrom.SecretKeyRef; r != nil && !hasKey("Secret", r.Name, r.Key) {
						t.Errorf("container %s env %s: secretKeyRef %s/%s is not defined", c.Name, e.Name, r.Name, r.Key)
					}
					if r := e.ValueFrom.ConfigMapKeyRef; r != nil && !hasKey("ConfigMap", r.Name, r.Key) {
						t.Errorf("container %s env %s: configMapKeyRef %s/%s is not defined", c.Name, e.Name, r.Name, r.Key)
					}
				}
				for _, e := range c.EnvFrom {
					if e.SecretRef != nil && !defined("Secret", e.SecretRef.Name) {
						t.Errorf("container %s envFrom: Secret %q is not defined", c.Name, e.SecretRef.Name)
					}
					if e.ConfigMapRef != nil && !defined("ConfigMap", e.ConfigMapRef.Name) {
						t.Errorf("container %s envFrom: ConfigMap %q is not defined", c.Name, e.ConfigMapRef.Name)
					}
				}
				vols := map[string]bool{}
				for _, v := range pod.Volumes {
					vols[v.Name] = true
				}
				for _, m := range c.VolumeMounts {
					if !vols[m.Name] {
						t.Errorf("container %s mounts volume %q, which the pod does not define", c.Name, m.Name)
					}
				}
			}
		})
	}
}

func TestServices(t *testing.T) {
	p := loadPool(t)
	for _, s := range p.objects {
		if s.Kind != "Service" {
			continue
		}
		t.Run(s.Metadata.Name, func(t *testing.T) {
			sel := s.selector(t)
			if len(sel) == 0 {
				t.Fatal("no selector")
			}
			var pods []object
			for _, w := range p.workloads() {
				if matches(sel, w.Spec.Template.Metadata.Labels) {
					pods = append(pods, w)
				}
				if !matches(w.selector(t), w.Spec.Template.Metadata.Labels) {
					t.Errorf("%s: selector does not match its own pod template", w)
				}
			}
			if len(pods) != 1 {
				t.Fatalf("selector %v matches %d workloads, want 1", sel, len(pods))
			}
			for _, sp := range s.Spec.Ports {
				tp := sp.TargetPort
				if tp.Int == 0 && tp.Str == "" {
					tp.Int = sp.Port
				}
				found := false
				for _, c := range pods[0].Spec.Template.Spec.Containers {
					if n, ok := c.port(tp); ok {
						for _, cp := range c.Ports {
							found = found || cp.ContainerPort == n
						}
					}
				}
				if !found {
					t.Errorf("port %s: targetPort %+v is no container port of %s", sp.Name, tp, pods[0])
				}
			}
		})
	}
	for _, sm := range p.objects {
		if sm.Kind != "ServiceMonitor" {
			continue
		}
		t.Run("ServiceMonitor "+sm.Metadata.Name, func(t *testing.T) {
			if sm.APIVersion != "monitoring.coreos.com/v1" {
				t.Errorf("apiVersion %q", sm.APIVersion)
			}
			var svcs []object
			for _, s := range p.objects {
				if s.Kind == "Service" && matches(sm.selector(t), s.Metadata.Labels) {
					svcs = append(svcs, s)
				}
			}
			if len(svcs) != 1 {
				t.Fatalf("selects %d Services, want 1", len(svcs))
			}
			relay, _ := p.container(t, "avedge")
			if !matches(svcs[0].selector(t), relay.Spec.Template.Metadata.Labels) {
				t.Errorf("%s does not select the relays", svcs[0])
			}
			for _, ep := range sm.Spec.Endpoints {
				ok := false
				for _, sp := range svcs[0].Spec.Ports {
					ok = ok || sp.Name == ep.Port
				}
				if !ok || ep.Path != "/metrics" {
					t.Errorf("endpoint port %q path %q: want a port of %s and /metrics", ep.Port, ep.Path, svcs[0])
				}
			}
		})
	}
}

func TestCredentialService(t *testing.T) {
	p := loadPool(t)
	rs := loadRelay(t, p)
	o, c := p.container(t, "avedge-auth")
	args := c.flagArgs(t, o)

	t.Run("args are avedge-auth flags", func(t *testing.T) {
		if authBinary == "" {
			t.Skipf("avedge-auth --help not available: %v", authBuildErr)
		}
		known := helpFlags(t, authBinary)
		for name := range args {
			if !known[name] {
				t.Errorf("--%s is not a flag of avedge-auth --help (it has %v)", name, keysOf(known))
			}
		}
	})

	t.Run("relay list names the pool", func(t *testing.T) {
		if len(args["relay"]) == 0 {
			t.Fatal("no --relay: the credential service would list no relay")
		}
		udp, tcp := map[int]bool{}, map[int]bool{}
		for _, l := range rs.settings.Relay.Listeners {
			if l.Network == relay.UDP {
				udp[int(l.Addr.Port())] = true
			} else {
				tcp[int(l.Addr.Port())] = true
			}
		}
		for _, r := range args["relay"] {
			ri, err := auth.ParseRelay(r)
			if err != nil {
				t.Errorf("--relay=%s: %v", r, err)
				continue
			}
			if ri.UDPPort != 0 && !udp[ri.UDPPort] || ri.TCPPort != 0 && !tcp[ri.TCPPort] {
				t.Errorf("--relay=%s: the relays listen on UDP %v and TCP %v", r, keysOf(udp), keysOf(tcp))
			}
		}
	})

	t.Run("listen port is the container port", func(t *testing.T) {
		if len(args["listen"]) != 1 {
			t.Fatalf("want one --listen, got %q", args["listen"])
		}
		ap, err := netip.ParseAddrPort(args["listen"][0])
		if err != nil {
			t.Fatalf("--listen=%s: %v", args["listen"][0], err)
		}
		if len(c.Ports) != 1 || c.Ports[0].ContainerPort != int(ap.Port()) {
			t.Errorf("container ports %+v, want exactly --listen's %d", c.Ports, ap.Port())
		}
		if c.ReadinessProbe == nil {
			t.Error("no readiness probe")
		}
	})

	t.Run("TLS from a TLS Secret", func(t *testing.T) {
		pem := map[string][]byte{}
		for _, name := range []string{"tls-cert", "tls-key"} {
			if len(args[name]) != 1 {
				t.Errorf("want one --%s, got %q: the credential service must serve TLS", name, args[name])
				continue
			}
			text, src := p.mountedContent(t, o, c, args[name][0])
			if src.Kind != "Secret" || src.Type != "kubernetes.io/tls" {
				t.Errorf("--%s=%s comes from %s (type %q), want a Secret of type kubernetes.io/tls", name, args[name][0], src, src.Type)
			}
			pem[name] = []byte(text)
		}
		// As shipped the pair is a placeholder that does not load: the service must not
		// start on it (nor on a key published in this repository).
		if _, err := tls.X509KeyPair(pem["tls-cert"], pem["tls-key"]); err == nil {
			t.Error("the shipped TLS Secret holds a usable pair; ship a placeholder")
		}
		for _, name := range []string{"allow-anonymous", "insecure-anonymous"} {
			if len(args[name]) != 0 {
				t.Errorf("--%s set: the credential service in the cluster takes API keys", name)
			}
		}
	})

	t.Run("files come from the Secret", func(t *testing.T) {
		for _, name := range []string{"secret-file", "api-key-file"} {
			if len(args[name]) != 1 {
				t.Errorf("want one --%s, got %q", name, args[name])
				continue
			}
			if _, src := p.mountedContent(t, o, c, args[name][0]); src.Kind != "Secret" {
				t.Errorf("--%s=%s comes from %s, want a Secret", name, args[name][0], src)
			}
		}
		// Same keys as the relays: the same Secret key behind both files.
		_, rn, rk, _ := mountedFile(rs.obj, rs.c, yamlKey(t, rs.yaml, "static-auth-secret-file"))
		_, an, ak, _ := mountedFile(o, c, args["secret-file"][0])
		if rn != an || rk != ak {
			t.Errorf("the relays read Secret %s key %s, the credential service %s key %s", rn, rk, an, ak)
		}
	})
}

func yamlKey(t *testing.T, doc, key string) string {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
		t.Fatal(err)
	}
	s, _ := m[key].(string)
	return s
}

func matches(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func mapsEqual(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

func keysOf[K comparable](m map[K]bool) []string {
	var out []string
	for k := range m {
		out = append(out, fmt.Sprint(k))
	}
	sort.Strings(out)
	return out
}

// --- systemd. ------------------------------------------------------------------------------

// unit is a parsed systemd unit: section → key → values in order.
type unit map[string]map[string][]string

func parseUnit(t *testing.T, path string) unit {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unit{}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[' && line[len(line)-1] == ']':
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: %q is not key=value in a section", path, n, line)
			}
			u[section][strings.TrimSpace(k)] = append(u[section][strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

func (u unit) one(t *testing.T, section, key string) string {
	t.Helper()
	v := u[section][key]
	if len(v) == 0 {
		t.Errorf("[%s] %s= is not set", section, key)
		return ""
	}
	return v[len(v)-1]
}

// systemdSeconds parses the time spans this unit uses: "45s", "2min", "1min 30s", "90".
func systemdSeconds(s string) (time.Duration, error) {
	if n, err := strconv.Atoi(s); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	var total time.Duration
	for _, f := range strings.Fields(strings.ReplaceAll(s, "min", "m")) {
		d, err := time.ParseDuration(f)
		if err != nil {
			return 0, fmt.Errorf("time span %q: %w", s, err)
		}
		total += d
	}
	return total, nil
}

func TestSystemdUnit(t *testing.T) {
	path := filepath.Join(systemdDir, "avedge.service")
	u := parseUnit(t, path)
	svc := "Service"

	t.Run("directives", func(t *testing.T) {
		for _, tc := range []struct{ key, want string }{
			{"DynamicUser", "yes"},
			{"AmbientCapabilities", "CAP_NET_BIND_SERVICE"},
			{"CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"},
			{"LimitNOFILE", "1048576"},
			{"Restart", "on-failure"},
			{"KillSignal", "SIGTERM"},
			{"NoNewPrivileges", "yes"},
			{"ProtectSystem", "strict"},
			{"ProtectHome", "yes"},
			{"PrivateTmp", "yes"},
			{"ConfigurationDirectory", "avedge"},
		} {
			if got := u.one(t, svc, tc.key); got != tc.want {
				t.Errorf("%s=%s, want %s", tc.key, got, tc.want)
			}
		}
		if !slices.Contains(u[svc]["ExecReload"], "/bin/kill -HUP $MAINPID") {
			t.Errorf("ExecReload=%q: want /bin/kill -HUP $MAINPID among them", u[svc]["ExecReload"])
		}
	})

	// IPAddressDeny is a kernel backstop to the peer policy: the relay's sockets can neither
	// send to nor hear from link-local and metadata addresses, whatever allowed-peer-ip says.
	// It must not cut loopback (a dev setup's clients), the relay's own addresses, or the
	// addresses clients and peers use.
	t.Run("IPAddressDeny backstop", func(t *testing.T) {
		var denied []netip.Prefix
		for _, v := range u[svc]["IPAddressDeny"] {
			for _, f := range strings.Fields(v) {
				p, err := netip.ParsePrefix(f)
				if err != nil {
					a, err2 := netip.ParseAddr(f)
					if err2 != nil {
						t.Fatalf("IPAddressDeny entry %q: not an address or prefix (keywords like any or link-local are not used here)", f)
					}
					p = netip.PrefixFrom(a, a.BitLen())
				}
				denied = append(denied, p)
			}
		}
		if len(u[svc]["IPAddressAllow"]) != 0 {
			t.Errorf("IPAddressAllow=%q: systemd lets an allowed address through even when denied", u[svc]["IPAddressAllow"])
		}
		covered := func(a netip.Addr) bool {
			for _, p := range denied {
				if p.Contains(a) {
					return true
				}
			}
			return false
		}
		for _, a := range []string{"169.254.169.254", "169.254.0.1", "fe80::1", "168.63.129.16", "fd00:ec2::254"} {
			if !covered(netip.MustParseAddr(a)) {
				t.Errorf("IPAddressDeny does not cover %s", a)
			}
		}
		must := []string{"127.0.0.1", "127.0.0.53", "::1", "10.0.0.1", "172.16.0.1", "192.168.1.1", "100.64.0.1",
			"203.0.113.5", "198.51.100.7", "2001:db8::1", "8.8.8.8", "2606:4700::1111"}
		o := loadSystemdConfig(t)
		must = append(append(must, o.RelayIPs...), o.ListeningIPs...)
		for _, e := range o.ExternalIPs {
			pub, priv, _ := strings.Cut(e, "/")
			must = append(must, pub)
			if priv != "" {
				must = append(must, priv)
			}
		}
		for _, s := range must {
			a, err := netip.ParseAddr(s)
			if err != nil {
				t.Fatalf("address %q of the shipped config: %v", s, err)
			}
			if !a.IsUnspecified() && covered(a) {
				t.Errorf("IPAddressDeny covers %s, which clients, peers or the relay itself use", a)
			}
		}
	})

	var cfgPath string
	t.Run("ExecStart flags", func(t *testing.T) {
		f := strings.Fields(u.one(t, svc, "ExecStart"))
		if len(f) == 0 || f[0] != "/usr/local/bin/avedge" {
			t.Fatalf("ExecStart=%v: want /usr/local/bin/avedge …", f)
		}
		fs := avedgeFlags()
		for _, a := range f[1:] {
			name, val, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
			if !strings.HasPrefix(a, "--") || fs.Lookup(name) == nil {
				t.Errorf("ExecStart argument %q is not a flag of avedge --help", a)
			}
			if name == "config" {
				cfgPath = val
			}
		}
		if cfgPath != "/etc/avedge/avedge.yaml" {
			t.Errorf("--config=%q, want /etc/avedge/avedge.yaml (the ConfigurationDirectory)", cfgPath)
		}
	})

	t.Run("example config loads", func(t *testing.T) {
		o := loadSystemdConfig(t)
		stop, err := systemdSeconds(u.one(t, svc, "TimeoutStopSec"))
		if err != nil {
			t.Fatal(err)
		}
		if stop <= o.DrainTimeout {
			t.Errorf("TimeoutStopSec %v does not exceed drain-timeout %v: systemd would SIGKILL a drain in progress", stop, o.DrainTimeout)
		}
		// The secrets file the config names is the one the privileged steps copy in, at start
		// and on every reload.
		for _, key := range []string{"ExecStartPre", "ExecReload"} {
			ok := false
			for _, v := range u[svc][key] {
				ok = ok || strings.HasPrefix(v, "+") && strings.HasSuffix(strings.TrimSuffix(v, "'"), " "+o.SecretFile)
			}
			if !ok {
				t.Errorf("no privileged %s= installs %s", key, o.SecretFile)
			}
		}
		if dir := u.one(t, svc, "RuntimeDirectory"); filepath.Dir(o.SecretFile) != "/run/"+dir {
			t.Errorf("static-auth-secret-file %s is not in RuntimeDirectory /run/%s", o.SecretFile, dir)
		}
	})

	t.Run("systemd-analyze verify", func(t *testing.T) {
		sa, err := exec.LookPath("systemd-analyze")
		if err != nil {
			t.Skip("systemd-analyze not installed: unit not verified")
		}
		// verify insists that ExecStart's binary exists: point it at a real executable.
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		b = bytes.ReplaceAll(b, []byte("ExecStart=/usr/local/bin/avedge "), []byte("ExecStart="+self+" "))
		tmp := filepath.Join(t.TempDir(), "avedge.service")
		if err := os.WriteFile(tmp, b, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(sa, "verify", tmp).CombinedOutput()
		if err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
		// The sandbox as systemd scores it (0 best … 10 worst, threshold in tenths).
		out, err = exec.Command(sa, "security", "--offline=yes", "--threshold=25", tmp).CombinedOutput()
		if bytes.Contains(out, []byte("unrecognized option")) {
			t.Skipf("systemd-analyze security --offline not supported: %s", out)
		}
		if err != nil {
			t.Errorf("systemd-analyze security: exposure above 2.5: %v\n%s", err, lastLines(out, 3))
		}
	})
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// loadSystemdConfig loads deploy/systemd/avedge.yaml with avedge's loader, the secrets file
// replaced by a temporary one.
func loadSystemdConfig(t *testing.T) config.Options {
	t.Helper()
	o := config.Defaults()
	f, err := os.Open(filepath.Join(systemdDir, "avedge.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := o.Load(f, "avedge.yaml"); err != nil {
		t.Fatal(err)
	}
	b := o
	b.SecretFile = filepath.Join(t.TempDir(), "static-auth-secrets")
	if err := os.WriteFile(b.SecretFile, []byte("k1 0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := b.Build()
	if err != nil {
		t.Fatalf("deploy/systemd/avedge.yaml: %v", err)
	}
	if st.GeneratedSecret {
		t.Error("the example config would run on a generated secret")
	}
	return o
}

// --- The operator guide. -------------------------------------------------------------------

func TestOperatorGuideFirewall(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "docs", "operator-guide.md"))
	if err != nil {
		t.Fatal(err)
	}
	guide := string(b)
	p := loadPool(t)
	rs := loadRelay(t, p)
	row := func(port, proto string) string { return "| " + port + " | " + proto + " |" }
	want := map[string]string{
		"relay range": row(fmt.Sprintf("%d–%d", rs.opts.MinPort, rs.opts.MaxPort), "UDP"),
		"metrics":     row(strconv.Itoa(metricsPort(t, rs.opts)), "TCP"),
	}
	for _, l := range rs.settings.Relay.Listeners {
		proto := "TCP"
		if l.Network == relay.UDP {
			proto = "UDP"
		}
		want[fmt.Sprintf("listener %s/%s", l.Network, l.Addr)] = row(strconv.Itoa(int(l.Addr.Port())), proto)
	}
	_, ac := p.container(t, "avedge-auth")
	for _, cp := range ac.Ports {
		want["credential service"] = row(strconv.Itoa(cp.ContainerPort), "TCP")
	}
	for what, r := range want {
		if !strings.Contains(guide, r) {
			t.Errorf("the firewall table has no row %q (%s)", r, what)
		}
	}
	if !strings.Contains(guide, "see the benchmark table in README") {
		t.Error("the sizing section lost its pointer to the benchmark table")
	}
}

// TestDockerfileCopiesReplacedModules: the build stage downloads modules (go mod download)
// before it copies the tree, so every module go.mod replaces with a directory of the tree
// (third_party/pion-turn) must have its go.mod copied before that step, or the image does not
// build ("reading third_party/pion-turn/go.mod: no such file or directory").
func TestDockerfileCopiesReplacedModules(t *testing.T) {
	gomod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	dockerfile, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	download := bytes.Index(dockerfile, []byte("RUN go mod download"))
	if download < 0 {
		t.Fatal("the Dockerfile has no go mod download step; this test reads the COPY lines before it")
	}
	before := string(dockerfile[:download])
	dirs := 0
	for _, line := range strings.Split(string(gomod), "\n") {
		_, target, ok := strings.Cut(line, "=> ")
		if !ok || !strings.HasPrefix(strings.TrimSpace(target), "./") {
			continue
		}
		dir := strings.TrimPrefix(strings.Fields(target)[0], "./")
		dirs++
		if !strings.Contains(before, "COPY "+dir+"/go.mod") {
			t.Errorf("go.mod replaces a module with ./%s, but the Dockerfile copies %s/go.mod only after go mod download (or not at all)", dir, dir)
		}
	}
	if dirs == 0 {
		t.Log("go.mod replaces no module with a directory of the tree")
	}
}
