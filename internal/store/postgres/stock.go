package postgres

import (
	"context"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

// KeyPackageStock implements store.StockReader.
func (s *Store) KeyPackageStock(ctx context.Context, low int) (store.KeyPackageStock, error) {
	var st store.KeyPackageStock
	err := s.pool.QueryRow(ctx, `SELECT COUNT(*), COUNT(*) FILTER (WHERE n = 0), COUNT(*) FILTER (WHERE n > 0 AND n < $2)
		FROM (SELECT owner_did, device_id, COUNT(*) FILTER (WHERE available) AS n FROM (
			SELECT owner_did, device_id, (consumed_at IS NULL AND NOT last_resort AND expires_at > $1) AS available FROM key_packages
			UNION ALL SELECT owner_did, device_id, false FROM devices
		) d GROUP BY owner_did, device_id) per_device`, s.now(), low).Scan(&st.Devices, &st.Empty, &st.Low)
	if err != nil {
		return store.KeyPackageStock{}, errorf("key package stock: %w", err)
	}
	return st, nil
}
