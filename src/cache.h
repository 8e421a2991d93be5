/*-------------------------------------------------------------------------
 *
 * cache.h
 *	  Shared answers: a request in flight shared by every session asking the
 *	  same, and the answer cache (cache.c).
 *
 * src/cache.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef KIS_CACHE_H
#define KIS_CACHE_H

#include "datatype/timestamp.h"
#include "utils/palloc.h"

struct KisConfig;

typedef enum KisCacheResult
{
	KIS_CACHE_SEND,				/* nothing to share: send it */
	KIS_CACHE_OWNER,			/* send it; others may wait for it (also a
								 * waiter taking over from an away sender) */
	KIS_CACHE_HIT,				/* the answer is here */
	KIS_CACHE_WAIT				/* another send of it is in flight */
} KisCacheResult;

/* An answer copied out of the store, or the reader's view of it */
typedef struct KisCachedAnswer
{
	char	   *body;
	size_t		len;
	bool		view;			/* body is the view asked for, not the answer */
	uint64		serial;			/* of the answer read (kis_cache_keep_view) */
	long		http_status;
	char		tr_cont[4];
	TimestampTz answered_at;	/* when KIS answered (wall clock) */
} KisCachedAnswer;

extern void kis_cache_define_gucs(void);
extern void kis_cache_shmem_request(void);
extern void kis_cache_shmem_startup(void);
extern void kis_cache_answer_id(const struct KisConfig *config, const uint8 *creds,
								bool private_answer, bool unchecked, const char *url,
								const char *tr_id, const char *header, uint8 *id);
extern int	kis_cache_ttl_ms(int cache_ttl_ms, bool download);
extern bool kis_cache_may_keep(bool private_answer, bool may_continue,
							   int cache_ttl_ms, const char *tr_cont);
extern int64 kis_cache_patience_us(int timeout_ms);
extern TimestampTz kis_cache_next_look(TimestampTz now, TimestampTz until);
extern KisCacheResult kis_cache_lookup(const uint8 *id, const uint8 *view_id, int ttl_ms,
									   TimestampTz now, uint64 *serial,
									   KisCachedAnswer *answer, MemoryContext cxt);
extern bool kis_cache_read(const uint8 *id, const uint8 *view_id, int ttl_ms,
						   TimestampTz now, KisCachedAnswer *answer, MemoryContext cxt);
extern void kis_cache_sending(const uint8 *id, uint64 serial, bool sending);
extern KisCacheResult kis_cache_poll(const uint8 *id, const uint8 *view_id, uint64 *serial,
									 KisCachedAnswer *answer, MemoryContext cxt);
extern void kis_cache_store(const uint8 *id, uint64 serial, const char *body, size_t len,
							const char *tr_cont, long http_status, TimestampTz answered_at,
							bool secret);
extern void kis_cache_keep_view(const uint8 *id, uint64 serial, const uint8 *view_id,
								const char *bytes, size_t len);
extern void kis_cache_abandon(const uint8 *id, uint64 serial);
extern void kis_cache_away(bool away);
extern int64 kis_cache_bytes(void);
extern int64 kis_cache_reset(void);

#endif							/* KIS_CACHE_H */
