/*-------------------------------------------------------------------------
 *
 * limiter.h
 *	  The rate gate of one app key (limiter.c).
 *
 * src/limiter.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef KIS_LIMITER_H
#define KIS_LIMITER_H

#include "datatype/timestamp.h"

#include "shmem.h"

#define KIS_MIN_RATE 0.01		/* requests per second; rate_limit 0 = no gate */

extern TimestampTz kis_limiter_reserve(KisAppSlot *slot, double rate, TimestampTz now);
extern bool kis_limiter_holds(KisAppSlot *slot, double rate, TimestampTz reserved_at,
							  TimestampTz now);
extern void kis_limiter_release(KisAppSlot *slot);
extern void kis_limiter_back_off(KisAppSlot *slot, TimestampTz until);
extern void kis_limiter_reset(KisAppSlot *slot);
extern TimestampTz kis_limiter_schedule_end(KisAppSlot *slot);

#endif							/* KIS_LIMITER_H */
