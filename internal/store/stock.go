package store

import "context"

// KeyPackageStock counts devices by how many key packages they hold, across
// the whole store. It carries counts only, never an owner or a device: it
// feeds a metric.
type KeyPackageStock struct {
	// Devices counts the devices known to the store: registered devices,
	// and the (owner, device) pairs named by key packages not yet purged.
	Devices int
	// Empty counts the devices with no available normal package: the next
	// claim hands out their last-resort package, or nothing.
	Empty int
	// Low counts the devices with at least one but fewer than the
	// threshold's available normal packages.
	Low int
}

// StockReader reports the service-wide key-package stock, for metrics.
type StockReader interface {
	// KeyPackageStock counts devices by their available normal packages
	// (unconsumed, unexpired, not last-resort): none, fewer than low, or
	// more. One aggregate query; nothing identifies a device.
	KeyPackageStock(ctx context.Context, low int) (KeyPackageStock, error)
}
