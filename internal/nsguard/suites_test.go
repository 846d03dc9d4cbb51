package nsguard

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// kfast is the package that attaches programs, and checks the guard first.
const kfast = "github.com/avedge/avedge/relay/internal/kfast"

// TestSuitesArm: every package whose test binary links kfast (it can start a relay, or attach
// directly) arms the guard in its TestMain, so a test added there later is guarded too.
func TestSuitesArm(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go not installed")
	}
	cmd := exec.Command(goBin, "list", "-test", "-f", "{{.ImportPath}}\t{{.Dir}}\t{{join .Deps \" \"}}", "./...")
	cmd.Dir = filepath.Join("..", "..")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dirs := map[string]string{}
	var suites []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.SplitN(line, "\t", 3)
		if len(f) < 3 {
			continue
		}
		path := f[0]
		if !strings.Contains(path, " ") && !strings.HasSuffix(path, ".test") {
			dirs[path] = f[1]
		}
		if !strings.HasSuffix(path, ".test") {
			continue
		}
		for _, d := range strings.Fields(f[2]) {
			if d == kfast || d == kfast+".test" {
				suites = append(suites, strings.TrimSuffix(path, ".test"))
				break
			}
		}
	}
	if len(suites) < 2 {
		t.Fatalf("go list found %d test binaries linking kfast (%v): the listing is not what this test expects", len(suites), suites)
	}
	for _, p := range suites {
		files, _ := filepath.Glob(filepath.Join(dirs[p], "*_test.go"))
		armed := false
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			armed = armed || strings.Contains(string(b), "nsguard.Arm()")
		}
		if !armed {
			t.Errorf("%s: its tests link kfast but no TestMain there calls nsguard.Arm()", p)
		}
	}
	t.Logf("%d suites link kfast, each arms the guard: %v", len(suites), suites)
}
