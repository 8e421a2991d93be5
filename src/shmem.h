/*-------------------------------------------------------------------------
 *
 * shmem.h
 *	  The app-key slots, one per app key, shared by all sessions when
 *	  kis_fdw is preloaded (shmem.c).  A slot is opaque here: its layout is
 *	  in shmem_internal.h, for the files that own what it holds.
 *
 * src/shmem.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef KIS_SHMEM_H
#define KIS_SHMEM_H

#include "util.h"

/* Counters of one app key (kis_fdw_stats) */
typedef enum KisCounter
{
	KIS_CTR_REQUESTS,			/* HTTP requests for data, retries included */
	KIS_CTR_RETRIES,
	KIS_CTR_RATE_LIMITED,		/* EGW00201 answers */
	KIS_CTR_ERR_TRANSIENT,		/* network, 5xx, EGW00001... */
	KIS_CTR_ERR_TOKEN,			/* EGW00121/EGW00123 */
	KIS_CTR_ERR_FATAL,			/* credentials refused */
	KIS_CTR_ERR_KEY,			/* a symbol's own failure */
	KIS_CTR_TOKENS_ISSUED,
	KIS_CTR_WAIT_US,			/* total time requests waited for the gate */
	KIS_CTR_BYTES,				/* response bytes received */
	KIS_CTR_SCANS,
	KIS_CTR_CACHE_HITS,			/* answers served by the answer cache */
	KIS_CTR_SHARED_WAITS,		/* requests that waited for another's send */
	KIS_NUM_COUNTERS
} KisCounter;

typedef struct KisAppSlot KisAppSlot;

/* What kis_fdw_stats shows of one slot */
typedef struct KisSlotStats
{
	uint8		app_key_hash[KIS_SHA256_LEN];	/* SHA-256 of the app key */
	uint64		counters[KIS_NUM_COUNTERS];
	uint64		wait_max_us;
} KisSlotStats;

extern void kis_shmem_init(void);
extern bool kis_shmem_is_shared(void);
extern KisAppSlot *kis_app_slot_attach(const uint8 *slot_id,
									   const uint8 *app_key_hash);
extern void kis_app_slot_detach(KisAppSlot *slot);
extern KisAppSlot *kis_app_slot_find(const uint8 *slot_id);
extern KisAppSlot *kis_app_slot_at(int i);
extern bool kis_app_slot_stats(KisAppSlot *slot, KisSlotStats *stats);
extern void kis_slot_count(KisAppSlot *slot, KisCounter counter, uint64 n);
extern void kis_slot_note_wait(KisAppSlot *slot, uint64 wait_us);

#endif							/* KIS_SHMEM_H */
