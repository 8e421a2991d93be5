/*-------------------------------------------------------------------------
 *
 * limiter.c
 *	  The rate gate: every request to KIS, retries included, passes it once.
 *
 * The gate is GCRA (the "virtual scheduling" form of a token bucket with no
 * burst): one number per app key, the theoretical arrival time (TAT) of
 * the next request.  A request may go at "now" if now >= TAT; granting it
 * moves TAT to now + 1/rate.  Two grants are therefore never closer than
 * 1/rate, and a one-second window (KIS counts fixed windows, kis-api.md §8)
 * holds at most "rate" of them, leaving a request of margin for network
 * jitter when rate_limit is one below the documented limit.  Wake-up
 * latency costs a little throughput instead (about 1% at 19/s).
 *
 * Asking does not reserve: a caller told to wait comes back later and asks
 * again, so an abandoned caller (cancel, ERROR) leaves nothing behind.
 *
 * This version keeps the state per backend, keyed by the SHA-256 of the app
 * key, so all scans of one session share one gate per key.  The shared
 * memory version replaces the storage, not the interface.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "kis_fdw.h"

struct KisLimiter
{
	uint8		key_hash[KIS_KEY_HASH_LEN]; /* hash key: must be first */
	TimestampTz tat;			/* theoretical arrival time of the next request */
};

static HTAB *limiters = NULL;

KisLimiter *
kis_limiter_for_key(const uint8 *key_hash)
{
	KisLimiter *limiter;
	bool		found;

	if (limiters == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = KIS_KEY_HASH_LEN;
		ctl.entrysize = sizeof(KisLimiter);
		ctl.hcxt = TopMemoryContext;
		limiters = hash_create("kis_fdw rate gates", 8, &ctl,
							   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	limiter = hash_search(limiters, key_hash, HASH_ENTER, &found);
	if (!found)
		limiter->tat = 0;
	return limiter;
}

/*
 * Take one slot if one is free at "now": returns 0 when granted, otherwise
 * the microseconds until asking again can succeed.  rate <= 0 means no gate.
 */
int64
kis_limiter_try_acquire(KisLimiter *limiter, double rate, TimestampTz now)
{
	int64		interval;

	if (rate <= 0)
		return 0;
	if (now < limiter->tat)
		return limiter->tat - now;

	interval = (int64) ceil((double) USECS_PER_SEC / rate);
	limiter->tat = now + interval;
	return 0;
}

/* KIS said we are too fast: nobody sends on this key before "until" */
void
kis_limiter_back_off(KisLimiter *limiter, TimestampTz until)
{
	if (until > limiter->tat)
		limiter->tat = until;
}
