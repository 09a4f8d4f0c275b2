package postgres

import "github.com/cairn-chat/cairn-caddy/internal/store"

// PoolStats reports the connection pool, for metrics. EmptyAcquireCount is
// pgxpool's count of acquisitions that found no idle connection and waited.
func (s *Store) PoolStats() []store.PoolStats {
	st := s.pool.Stat()
	return []store.PoolStats{{
		Pool:         "main",
		Max:          int(st.MaxConns()),
		InUse:        int(st.AcquiredConns()),
		Idle:         int(st.IdleConns()),
		WaitCount:    st.EmptyAcquireCount(),
		WaitDuration: st.EmptyAcquireWaitTime(),
	}}
}

var _ store.PoolStatser = (*Store)(nil)
