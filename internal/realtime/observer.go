package realtime

// Observer receives counts for metrics. It never sees an identity or a
// conversation id, only bounded labels (the transport). Implementations
// must be safe for concurrent use and must not block.
type Observer interface {
	// ConnOpened and ConnClosed bracket one stream on a transport
	// ("sse" or "websocket").
	ConnOpened(transport string)
	ConnClosed(transport string)
	// EventsDelivered counts events written to clients.
	EventsDelivered(transport string, n int)
	// SlowConsumerDropped counts streams closed because their client fell
	// behind.
	SlowConsumerDropped(transport string)
	// Replayed reports how many events a resuming stream replayed from the
	// store before going live.
	Replayed(transport string, n int)
	// Refused counts streams refused by a connection cap.
	Refused(transport string)
}

// nopObserver discards everything.
type nopObserver struct{}

func (nopObserver) ConnOpened(string)           {}
func (nopObserver) ConnClosed(string)           {}
func (nopObserver) EventsDelivered(string, int) {}
func (nopObserver) SlowConsumerDropped(string)  {}
func (nopObserver) Replayed(string, int)        {}
func (nopObserver) Refused(string)              {}
