package backup

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrRunning means a backup is already running on this node.
var ErrRunning = errors.New("a backup is already running")

// State is what a Runner is doing or last did, for the operator API and
// status.
type State struct {
	Running   bool      `json:"running"`
	StartedAt time.Time `json:"started_at,omitzero"`
	// Progress of the running backup, or the last one's totals.
	Progress Progress `json:"progress"`
	// Last is the last backup this node finished, if any.
	Last *Finished `json:"last,omitempty"`
}

// Finished is one backup's outcome.
type Finished struct {
	Archive    string    `json:"archive,omitempty"`
	Bytes      int64     `json:"bytes"`
	Rows       int64     `json:"rows"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
	// Pruned are the archives deleted to keep the newest Keep.
	Pruned []string `json:"pruned,omitempty"`
	Error  string   `json:"error,omitempty"`
}

// Auditor records that a backup was written or restored: event is
// "backup.create" or "backup.restore"; actor is the operator who asked
// ("" for the schedule); metadata holds counts and names only, never an
// identity. The cairn app adapts its audit log to it.
type Auditor func(ctx context.Context, event, actor string, metadata map[string]any) error

// The audit event types of backups (audit.TypeBackupCreate and
// audit.TypeBackupRestore; this package does not import internal/audit).
const (
	EventCreate  = "backup.create"
	EventRestore = "backup.restore"
)

// Runner runs one backup at a time on this node, into one target, and
// keeps its state.
type Runner struct {
	// Target receives the archives.
	Target Target
	// Options says what to back up; Progress is set by the runner.
	Options Options
	// Keep, if positive, prunes the target to the newest Keep archives
	// after each backup.
	Keep int
	// Audit, if set, records each finished backup.
	Audit Auditor
	// OnFinish, if set, is told of each backup's outcome (for logs and
	// metrics).
	OnFinish func(Finished)

	mu    sync.Mutex
	state State
}

// State returns the runner's state.
func (r *Runner) State() State {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.state
	if s.Last != nil {
		last := *s.Last
		s.Last = &last
	}
	return s
}

// Start begins a backup in the background and returns at once; ErrRunning
// if one is running. actor names who asked, for the audit log ("" for the
// schedule).
func (r *Runner) Start(ctx context.Context, actor string) error {
	if err := r.begin(); err != nil {
		return err
	}
	go r.run(context.WithoutCancel(ctx), actor)
	return nil
}

// RunNow runs a backup and waits for it.
func (r *Runner) RunNow(ctx context.Context, actor string) (Finished, error) {
	if err := r.begin(); err != nil {
		return Finished{}, err
	}
	f := r.run(ctx, actor)
	if f.Error != "" {
		return f, errors.New(f.Error)
	}
	return f, nil
}

func (r *Runner) begin() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state.Running {
		return ErrRunning
	}
	r.state.Running, r.state.StartedAt, r.state.Progress = true, time.Now().UTC(), Progress{}
	return nil
}

func (r *Runner) run(ctx context.Context, actor string) Finished {
	opts := r.Options
	opts.Progress = func(p Progress) {
		r.mu.Lock()
		r.state.Progress = p
		r.mu.Unlock()
	}
	f := Finished{StartedAt: r.State().StartedAt}
	a, m, err := Run(ctx, r.Target, opts)
	if err == nil {
		f.Archive, f.Bytes, f.Rows = a.Name, a.Size, m.Rows()
		if r.Keep > 0 {
			f.Pruned, err = Prune(ctx, r.Target, r.Keep)
		}
	}
	if err == nil && r.Audit != nil {
		err = r.Audit(ctx, EventCreate, actor, map[string]any{"archive": f.Archive, "bytes": f.Bytes, "rows": f.Rows,
			"tables": len(m.TableStats), "target": r.Target.String(), "pruned": len(f.Pruned), "scheduled": actor == ""})
		if err != nil {
			err = fmt.Errorf("auditing the backup: %w", err)
		}
	}
	if err != nil {
		f.Error = err.Error()
	}
	f.FinishedAt = time.Now().UTC()
	r.mu.Lock()
	r.state.Running, r.state.Last = false, &f
	r.mu.Unlock()
	if r.OnFinish != nil {
		r.OnFinish(f)
	}
	return f
}

// Locker takes a lock held across every node sharing the store
// (store.TryLock), so that one node of a cluster runs the schedule.
type Locker interface {
	TryLock(ctx context.Context, name string) (unlock func(), ok bool, err error)
}

// LockName is the store lock the scheduled backup holds while it runs.
const LockName = "backup"

// Schedule runs a Runner every Interval, on one node of a cluster at a
// time: each due run takes Locker's lock, then looks at the target again,
// and backs up only if its newest archive is still older than Interval.
// It is a worker.Worker.
type Schedule struct {
	Runner   *Runner
	Locker   Locker
	Interval time.Duration
	// Check is how often a node that did not run looks again; 0 means
	// min(Interval, 1h).
	Check time.Duration
	// OnError, if set, is told of lock and listing errors.
	OnError func(error)
	// OnNewest, if set, is told of the target's newest archive each time
	// the schedule lists the target (ok false when it holds none), so that
	// every node reports the last backup, whichever node took it.
	OnNewest func(newest Archive, ok bool)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Name is the worker's name.
func (s *Schedule) Name() string { return "backup" }

// Run backs up whenever one is due, until ctx ends.
func (s *Schedule) Run(ctx context.Context) {
	check := s.Check
	if check <= 0 {
		check = min(s.Interval, time.Hour)
	}
	for {
		wait, err := s.RunOnce(ctx)
		if err != nil && s.OnError != nil {
			s.OnError(err)
		}
		if wait <= 0 || wait > check {
			wait = check
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// RunOnce backs up if one is due and this node holds the lock. It
// returns how long until the next one is due.
func (s *Schedule) RunOnce(ctx context.Context) (time.Duration, error) {
	due, err := s.due(ctx)
	if err != nil || due > 0 {
		return due, err
	}
	unlock, ok, err := s.Locker.TryLock(ctx, LockName)
	if err != nil {
		return 0, fmt.Errorf("backup schedule: taking the lock: %w", err)
	}
	if !ok {
		return 0, nil
	}
	defer unlock()
	// Another node may have finished one while this one waited.
	if due, err = s.due(ctx); err != nil || due > 0 {
		return due, err
	}
	if _, err := s.Runner.RunNow(ctx, ""); err != nil && !errors.Is(err, ErrRunning) {
		return 0, err
	}
	return s.Interval, nil
}

// due returns how long until the next backup: Interval after the newest
// archive's time, or 0 when it is due now.
func (s *Schedule) due(ctx context.Context) (time.Duration, error) {
	as, err := s.Runner.Target.List(ctx)
	if err != nil {
		return 0, fmt.Errorf("backup schedule: listing %s: %w", s.Runner.Target, err)
	}
	if s.OnNewest != nil {
		if len(as) == 0 {
			s.OnNewest(Archive{}, false)
		} else {
			s.OnNewest(as[0], true)
		}
	}
	if len(as) == 0 {
		return 0, nil
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	return max(0, as[0].Created.Add(s.Interval).Sub(now())), nil
}

// Last returns the newest archive of t, for status ("last backup and its
// age"); ok is false when t holds none.
func Last(ctx context.Context, t Target) (a Archive, ok bool, err error) {
	as, err := t.List(ctx)
	if err != nil || len(as) == 0 {
		return Archive{}, false, err
	}
	return as[0], true, nil
}
