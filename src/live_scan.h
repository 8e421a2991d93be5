/*-------------------------------------------------------------------------
 *
 * live_scan.h
 *	  A live table's run: the keys' latest ticks from shared memory, and a
 *	  REST request for each key without one (live_scan.c).
 *
 * src/live_scan.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef KIS_LIVE_SCAN_H
#define KIS_LIVE_SCAN_H

#include "nodes/pg_list.h"

#include "fetch.h"
#include "keys.h"
#include "live.h"

struct KisConfig;

extern void kis_live_scan_approval(KisFetcher *fetcher, const struct KisConfig *config,
								   KisLiveChannel *ch);
extern int	kis_live_scan_start(KisFetcher *fetcher, const struct KisConfig *config,
								List *keys, const KisRange *range, List *fields);

#endif							/* KIS_LIVE_SCAN_H */
