package sqlite

import (
	"context"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

// KeyPackageStock implements store.StockReader.
func (s *Store) KeyPackageStock(ctx context.Context, low int) (store.KeyPackageStock, error) {
	var st store.KeyPackageStock
	err := s.r.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(n = 0), 0), COALESCE(SUM(n > 0 AND n < ?2), 0)
		FROM (SELECT owner_did, device_id, SUM(available) AS n FROM (
			SELECT owner_did, device_id, (consumed_at IS NULL AND last_resort = 0 AND expires_at > ?1) AS available FROM key_packages
			UNION ALL SELECT owner_did, device_id, 0 FROM devices
		) GROUP BY owner_did, device_id)`, ms(s.now()), low).Scan(&st.Devices, &st.Empty, &st.Low)
	if err != nil {
		return store.KeyPackageStock{}, errorf("key package stock: %w", err)
	}
	return st, nil
}
