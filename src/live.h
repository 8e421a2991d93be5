/*-------------------------------------------------------------------------
 *
 * live.h
 *	  The live tables' shared state, as backends see it (live.c): a
 *	  channel per app key whose background worker (worker.c) holds KIS's
 *	  WebSocket, the latest record of each subscribed symbol, and the tick
 *	  ring.  docs/live.md tells how it works.
 *
 * src/live.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef KIS_LIVE_H
#define KIS_LIVE_H

#include "datatype/timestamp.h"
#include "nodes/pg_list.h"

/* The streams a live table reads */
typedef enum KisLiveKind
{
	KIS_LIVE_TRADE,				/* H0STCNT0, domestic trades */
	KIS_LIVE_BOOK,				/* H0STASP0, domestic order book */
	KIS_LIVE_OVERSEAS,			/* HDFSCNT0, overseas trades */
	KIS_LIVE_NUM_KINDS
} KisLiveKind;

typedef struct KisLiveChannel KisLiveChannel;
typedef struct json_t json_t;
struct KisConfig;

/* What a scan learned of one key after waiting (kis_live_collect) */
typedef struct KisLiveKey
{
	KisLiveKind kind;
	char	   *tr_key;
	int			entry;			/* where kis_live_want found it (a hint) */
	bool		has_tick;		/* record holds the latest one */
	char	   *record;			/* its fields joined by ^ */
	TimestampTz received_at;
	char	   *refusal;		/* why KIS would not stream it, or NULL */
} KisLiveKey;

extern int	kis_live_idle_s;

extern void kis_live_define_gucs(void);
extern void kis_live_shmem_request(int nchannels);
extern void kis_live_shmem_startup(void);

extern bool kis_live_url_split(const char *url, char **host, char **port, char **path);
extern const char *kis_live_tr_id(KisLiveKind kind);
extern bool kis_live_kind_by_name(const char *name, KisLiveKind *kind);
extern char *kis_live_tr_key(KisLiveKind kind, const char *symbol, const char *exchange);
extern KisLiveChannel *kis_live_channel(const struct KisConfig *config, uint64 *generation);
extern KisLiveChannel *kis_live_channel_find(const struct KisConfig *config,
											 uint64 *generation);
extern bool kis_live_needs_approval(KisLiveChannel *ch);
extern bool kis_live_refused_pins(KisLiveChannel *ch);
extern bool kis_live_set_approval(KisLiveChannel *ch, uint64 generation,
								  const char *approval_key);
extern bool kis_live_want(KisLiveChannel *ch, uint64 generation, List *keys, bool pin);
extern void kis_live_unwant(KisLiveChannel *ch, uint64 generation, List *keys);
extern void kis_live_collect(KisLiveChannel *ch, List *keys, int wait_ms);
extern bool *kis_live_field_mask(KisLiveKind kind, List *fields);
extern json_t *kis_live_record_object(KisLiveKind kind, const char *record,
									  TimestampTz received_at, uint64 seq,
									  const bool *copy);
extern json_t *kis_live_answer(json_t *output);

/* The tick ring (domestic_ticks) */
#define KIS_LIVE_RING_RECORD_MAX 512	/* a trade record in the ring */

typedef struct KisLiveRingRead
{
	uint64		pos;			/* the next ring position to look at */
	int			index;			/* the channel's */
	uint64		generation;
	uint64		base;			/* its first seq, less one */
	uint64		last;			/* its last seq when the read began */
	bool		has_after;
	uint64		after;			/* the seq the caller has */
	uint64		seen;			/* the highest seq accounted for */
	uint64		missed;			/* gaps in the seqs returned so far */
} KisLiveRingRead;

extern void kis_live_ring_begin(KisLiveRingRead *rr, KisLiveChannel *ch, bool has_after,
								uint64 after);
extern bool kis_live_ring_next(KisLiveRingRead *rr, uint64 *seq, char *record,
							   TimestampTz *received_at);
extern uint64 kis_live_ring_missed(const KisLiveRingRead *rr);
extern int	kis_live_ring_size(void);

#endif							/* KIS_LIVE_H */
