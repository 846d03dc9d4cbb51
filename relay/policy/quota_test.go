package policy

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

func TestQuota(t *testing.T) {
	type op struct {
		release   bool
		user      string
		wantOK    bool
		wantTotal bool
	}
	acq := func(u string, ok, total bool) op { return op{user: u, wantOK: ok, wantTotal: total} }
	rel := func(u string) op { return op{release: true, user: u} }
	tests := []struct {
		name           string
		perUser, total int
		ops            []op
		wantLive       int
		wantUsers      int
	}{
		{"per-user cap", 2, 0, []op{
			acq("a", true, false), acq("a", true, false), acq("a", false, false), acq("b", true, false),
		}, 3, 2},
		{"total cap", 0, 2, []op{
			acq("a", true, false), acq("b", true, false), acq("c", false, true),
		}, 2, 2},
		{"total checked before per-user", 1, 1, []op{
			acq("a", true, false), acq("a", false, true),
		}, 1, 1},
		{"unlimited", 0, 0, []op{
			acq("a", true, false), acq("a", true, false), acq("a", true, false),
		}, 3, 1},
		{"release frees a slot", 1, 0, []op{
			acq("a", true, false), acq("a", false, false), rel("a"), acq("a", true, false),
		}, 1, 1},
		{"release forgets user at zero", 0, 0, []op{
			acq("a", true, false), acq("b", true, false), rel("a"),
		}, 1, 1},
		{"double release is a no-op", 0, 3, []op{
			acq("a", true, false), acq("b", true, false), rel("a"), rel("a"), rel("zz"),
			acq("c", true, false), acq("d", true, false), acq("e", false, true),
		}, 3, 3},
		{"negative limits are unlimited", -1, -1, []op{
			acq("a", true, false), acq("a", true, false),
		}, 2, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := NewQuota(tt.perUser, tt.total)
			for i, o := range tt.ops {
				if o.release {
					q.Release(o.user)
					continue
				}
				ok, total := q.Acquire(o.user)
				if ok != o.wantOK || total != o.wantTotal {
					t.Fatalf("op %d Acquire(%q) = %v, %v; want %v, %v", i, o.user, ok, total, o.wantOK, o.wantTotal)
				}
			}
			if got := q.Total(); got != tt.wantLive {
				t.Errorf("Total() = %d, want %d", got, tt.wantLive)
			}
			if got := q.Users(); got != tt.wantUsers {
				t.Errorf("Users() = %d, want %d", got, tt.wantUsers)
			}
		})
	}
}

func TestQuotaSetLimits(t *testing.T) {
	q := NewQuota(3, 0)
	for range 3 {
		q.Acquire("a")
	}
	q.SetLimits(1, 0)
	if got := q.Live("a"); got != 3 {
		t.Fatalf("lowering the cap dropped live allocations: Live = %d", got)
	}
	if ok, _ := q.Acquire("a"); ok {
		t.Fatal("Acquire above lowered per-user cap succeeded")
	}
	q.SetLimits(0, 3)
	if ok, total := q.Acquire("b"); ok || !total {
		t.Fatalf("Acquire above lowered total cap = %v, %v; want false, true", ok, total)
	}
	q.SetLimits(0, 0)
	if ok, _ := q.Acquire("b"); !ok {
		t.Fatal("Acquire refused after limits lifted")
	}
}

func TestQuotaConcurrent(t *testing.T) {
	const perUser, total, users = 5, 60, 20
	q := NewQuota(perUser, total)
	var held [users]atomic.Int64
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 200 {
				u := (g + i) % users
				name := fmt.Sprintf("user%d", u)
				if ok, _ := q.Acquire(name); ok {
					if n := held[u].Add(1); n > perUser {
						t.Errorf("%s holds %d > %d", name, n, perUser)
					}
					if i%3 == 0 {
						held[u].Add(-1)
						q.Release(name)
					}
				}
			}
		})
	}
	wg.Wait()
	var sum int64
	for u := range users {
		n := held[u].Load()
		if got := q.Live(fmt.Sprintf("user%d", u)); int64(got) != n {
			t.Errorf("user%d: Live = %d, want %d", u, got, n)
		}
		sum += n
	}
	if got := q.Total(); int64(got) != sum || got > total {
		t.Errorf("Total() = %d, want %d (<= %d)", got, sum, total)
	}
	for u := range users {
		for range held[u].Load() {
			q.Release(fmt.Sprintf("user%d", u))
		}
	}
	if q.Total() != 0 || q.Users() != 0 {
		t.Errorf("after releasing all: Total %d, Users %d; want 0, 0", q.Total(), q.Users())
	}
}
