/*-------------------------------------------------------------------------
 *
 * limiter.c
 *	  The rate gate: every request to KIS, retries included, passes it once.
 *
 * The gate is GCRA (the "virtual scheduling" form of a token bucket with no
 * burst): one number per app key, the theoretical arrival time (TAT) of
 * the next request, kept in the app key's slot (shared memory when preloaded,
 * so all sessions on a key share it).  A caller reserves a send time:
 * t = max(TAT, now), and TAT becomes t + 1/rate, in one compare-and-swap.
 * Callers are thus served in the order they asked, each waits until its
 * own time without asking again (nobody spins), and two sends on one key
 * are never closer than 1/rate: a one-second window (KIS counts fixed
 * windows, docs/tokens-and-rate.md) holds at most "rate" of them, which
 * leaves a request of margin for network jitter when rate_limit is one
 * below the documented limit.
 *
 * A fetcher holds at most one reservation at a time, and the slot counts
 * the reservations held.  So the schedule never needs to reach further
 * ahead than one interval per reservation held, plus one: a reservation
 * is clamped to that, at the rate of whoever asks now.  A TAT pushed far
 * out by an earlier, slower rate_limit (or by a session that is gone)
 * thus costs the next caller at most one interval of the current rate,
 * instead of freezing the key until a restart.
 *
 * All times are on kis_clock_now()'s clock, CLOCK_MONOTONIC: system-wide
 * on Linux, so comparable between the backends sharing a slot, and never
 * stepped back or forth by NTP or an administrator.  A wall-clock step
 * can therefore neither freeze a key nor let a burst through.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "limiter.h"
#include "shmem.h"
#include "shmem_internal.h"
#include "util.h"

/*
 * The spacing of sends at this rate.  The option validator keeps a gated
 * rate_limit at or above KIS_MIN_RATE (an interval of 100 s at most); a
 * smaller value stored before it did is held there, so that no cast below
 * can overflow.
 */
static uint64
interval_us(double rate)
{
	if (!(rate >= KIS_MIN_RATE))
		rate = KIS_MIN_RATE;
	return (uint64) ceil((double) USECS_PER_SEC / rate);
}

/* How far ahead of now the schedule may reach with "held" reservations held */
static uint64
horizon_us(double rate, uint32 held)
{
	return interval_us(rate) * ((uint64) held + 1);
}

/*
 * Reserve the next send slot of this key: returns the time at which the
 * caller may send (<= now: at once).  rate <= 0 means no gate.  Every
 * reservation, gated or not, is given back with kis_limiter_release.
 */
TimestampTz
kis_limiter_reserve(KisAppSlot *slot, double rate, TimestampTz now)
{
	uint32		others;
	uint64		interval;
	uint64		limit;
	uint64		penalty;
	uint64		old;
	uint64		start;

	others = pg_atomic_fetch_add_u32(&slot->reservations, 1);
	if (rate <= 0)
		return now;

	interval = interval_us(rate);
	limit = (uint64) now + horizon_us(rate, others);
	penalty = pg_atomic_read_u64(&slot->penalty_until);
	old = pg_atomic_read_u64(&slot->tat);
	do
	{
		start = Max(old, (uint64) now);
		start = Min(start, limit);
		start = Max(start, penalty);
	} while (!pg_atomic_compare_exchange_u64(&slot->tat, &old, start + interval));
	return (TimestampTz) start;
}

/*
 * Is a reservation made earlier still good to wait for?  Not when it was
 * left unused for longer than one interval (a cursor that paused: sending
 * on it now could come too close to another session's send), nor when it
 * lies further ahead than the current reservations justify (the schedule
 * was cleared, or the others gave theirs back).  Then the caller releases
 * it and reserves again.
 */
bool
kis_limiter_holds(KisAppSlot *slot, double rate, TimestampTz reserved_at,
				  TimestampTz now)
{
	uint32		held = pg_atomic_read_u32(&slot->reservations);

	if (rate <= 0)
		return true;
	if (now - reserved_at > (int64) interval_us(rate))
		return false;
	return reserved_at - now <= (int64) horizon_us(rate, held) ||
		(uint64) reserved_at <= pg_atomic_read_u64(&slot->penalty_until);
}

/* Give back one reservation (used, dropped or abandoned) */
void
kis_limiter_release(KisAppSlot *slot)
{
	uint32		old = pg_atomic_read_u32(&slot->reservations);

	/* a reset may have zeroed the count under us: never wrap below zero */
	while (old > 0 &&
		   !pg_atomic_compare_exchange_u32(&slot->reservations, &old, old - 1))
		;
}

/* KIS said we are too fast: no new reservation on this key before "until" */
void
kis_limiter_back_off(KisAppSlot *slot, TimestampTz until)
{
	uint64		old = pg_atomic_read_u64(&slot->penalty_until);

	while (old < (uint64) until &&
		   !pg_atomic_compare_exchange_u64(&slot->penalty_until, &old, (uint64) until))
		;
}

/*
 * When the key's schedule is over: before then, a send on a fresh gate
 * (the app key's slot forgotten and taken again, shmem.c) could come too close
 * to its last one or break a back-off.
 */
TimestampTz
kis_limiter_schedule_end(KisAppSlot *slot)
{
	return (TimestampTz) Max(pg_atomic_read_u64(&slot->tat),
							 pg_atomic_read_u64(&slot->penalty_until));
}

/* Forget the key's schedule (kis_fdw_reset_key): the next send goes at once */
void
kis_limiter_reset(KisAppSlot *slot)
{
	pg_atomic_write_u64(&slot->tat, 0);
	pg_atomic_write_u64(&slot->penalty_until, 0);
	pg_atomic_write_u32(&slot->reservations, 0);
}
