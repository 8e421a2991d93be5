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

extern KisLiveChannel *kis_live_scan_subscribe(KisFetcher *fetcher,
											   const struct KisConfig *config,
											   List *keys, bool pin);
extern int	kis_live_scan_start(KisFetcher *fetcher, const struct KisConfig *config,
								List *keys, const KisRange *range, List *fields);

#endif							/* KIS_LIVE_SCAN_H */
