/*-------------------------------------------------------------------------
 *
 * limiter.c
 *	  The rate gate: every request to KIS, retries included, passes it once.
 *
 * The gate is GCRA (the "virtual scheduling" form of a token bucket with no
 * burst): one number per app key, the theoretical arrival time (TAT) of
 * the next request, kept in the key's slot (shared memory when preloaded,
 * so all sessions on a key share it).  A caller reserves a send time:
 * t = max(TAT, now), and TAT becomes t + 1/rate, in one compare-and-swap.
 * Callers are thus served in the order they asked, each waits until its
 * own time without asking again (nobody spins), and two sends on one key
 * are never closer than 1/rate: a one-second window (KIS counts fixed
 * windows, kis-api.md §8) holds at most "rate" of them, which leaves a
 * request of margin for network jitter when rate_limit is one below the
 * documented limit.
 *
 * A fetcher holds at most one reservation at a time, so a session that is
 * cancelled or terminated while waiting wastes at most one interval of
 * the others' time and never blocks them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "kis_fdw.h"

/*
 * Reserve the next send slot of this key: returns the time at which the
 * caller may send (<= now: at once).  rate <= 0 means no gate.
 */
TimestampTz
kis_limiter_reserve(KisKeySlot *slot, double rate, TimestampTz now)
{
	uint64		interval;
	uint64		old;
	uint64		start;

	if (rate <= 0)
		return now;

	interval = (uint64) ceil((double) USECS_PER_SEC / rate);
	old = pg_atomic_read_u64(&slot->tat);
	do
	{
		start = Max(old, (uint64) now);
	} while (!pg_atomic_compare_exchange_u64(&slot->tat, &old, start + interval));
	return (TimestampTz) start;
}

/* KIS said we are too fast: no new reservation on this key before "until" */
void
kis_limiter_back_off(KisKeySlot *slot, TimestampTz until)
{
	uint64		old = pg_atomic_read_u64(&slot->tat);

	while (old < (uint64) until &&
		   !pg_atomic_compare_exchange_u64(&slot->tat, &old, (uint64) until))
		;
}
