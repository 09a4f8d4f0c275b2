package ratelimit

import "time"

// gcra decides one request at time now for a key whose theoretical arrival
// time is tat (both Unix nanoseconds; tat zero for an unknown key). It
// returns the new tat to store, which is unchanged on refusal.
//
// It is redis_rate v10's allowN script with cost 1, in integers, and the
// same arithmetic as RedisStore's script: with the interval a whole number
// of microseconds, both backends compute exactly the same values. l must be
// valid.
func gcra(tat, now int64, l Limit) (int64, Result) {
	interval := int64(l.Interval())
	burst := int64(l.EffectiveBurst())
	res := Result{Limit: l}
	res.Limit.Burst = int(burst)

	tat = max(tat, now)
	newTAT := tat + interval
	allowAt := newTAT - interval*burst
	diff := now - allowAt
	if diff < 0 {
		res.RetryAfter = time.Duration(-diff)
		res.ResetAfter = time.Duration(tat - now)
		return tat, res
	}
	res.Allowed = true
	res.Remaining = int(diff / interval)
	res.ResetAfter = time.Duration(newTAT - now)
	return newTAT, res
}
