package policy

import "sync"

// Quota counts live allocations per user and in total. Acquire fails when
// either cap is reached (0 = unlimited); Release gives one back. Memory is
// bounded by the live allocations: a user whose count drops to 0 is
// forgotten. Safe for concurrent use.
type Quota struct {
	mu sync.Mutex
	// Guarded by mu.
	perUser int
	total   int
	live    int
	users   map[string]int
}

// NewQuota returns a Quota allowing perUser live allocations per user and
// total in all; 0 (or less) means unlimited.
func NewQuota(perUser, total int) *Quota {
	return &Quota{perUser: max(perUser, 0), total: max(total, 0), users: make(map[string]int)}
}

// Acquire takes one allocation for user. ok reports success; when it fails,
// total reports whether the relay-wide cap refused it (answer 508
// Insufficient Capacity) rather than the per-user cap (486 Allocation Quota
// Reached). The total cap is checked first.
func (q *Quota) Acquire(user string) (ok bool, total bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.total > 0 && q.live >= q.total {
		return false, true
	}
	n := q.users[user]
	if q.perUser > 0 && n >= q.perUser {
		return false, false
	}
	q.users[user] = n + 1
	q.live++
	return true, false
}

// Release gives back one allocation of user. Releasing a user with no live
// allocation is a no-op, so a double release cannot push counts negative.
func (q *Quota) Release(user string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	n, ok := q.users[user]
	if !ok {
		return
	}
	if n <= 1 {
		delete(q.users, user)
	} else {
		q.users[user] = n - 1
	}
	q.live--
}

// SetLimits changes both caps (0 = unlimited). Live allocations above a
// lowered cap are kept; only later Acquires are refused.
func (q *Quota) SetLimits(perUser, total int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.perUser, q.total = max(perUser, 0), max(total, 0)
}

// Live returns the live allocations of user.
func (q *Quota) Live(user string) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.users[user]
}

// Total returns the live allocations of all users.
func (q *Quota) Total() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.live
}

// Users returns how many users hold at least one live allocation.
func (q *Quota) Users() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.users)
}
