/*-------------------------------------------------------------------------
 *
 * fetch.h
 *	  The fetch engine: a scan's requests, concurrent and rate-gated over
 *	  the transport, handed back in completion order (fetch.c).  It knows
 *	  nothing of tuples, plans or the executor (test/headerscheck.sh checks
 *	  it), nor of endpoints: each request says what may be done with it.
 *
 * src/fetch.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef KIS_FETCH_H
#define KIS_FETCH_H

#include "datatype/timestamp.h"
#include "lib/ilist.h"
#include "lib/stringinfo.h"
#include "utils/palloc.h"

#include "response.h"

struct KisConfig;

typedef struct KisFetcher KisFetcher;

/* What a step that never waits found (async scans: fetch.c, run.c) */
typedef enum KisPoll
{
	KIS_POLL_ROW,				/* something is ready */
	KIS_POLL_END,				/* nothing more will come */
	KIS_POLL_WAIT				/* not yet: wait on the scan's descriptor */
} KisPoll;

/* What a caller says of a request it adds (kis_fetch_add's flags) */
#define KIS_FETCH_SHARED		0x01	/* may be answered by another's send or
										 * the cache, and its answer kept */
#define KIS_FETCH_PRIVATE		0x02	/* its answer is the user mapping's */
#define KIS_FETCH_MAY_CONTINUE	0x04	/* its answer may say more pages follow:
										 * kept only when none does */
#define KIS_FETCH_UNCHECKED		0x08	/* nothing checks that its answer is the
										 * one asked for: shared only with
										 * requests alike (docs/security.md) */

/* The reply header a completion keeps (the caller's paging reads it) */
#define KIS_FETCH_KEPT_HEADER "tr_cont"

#define KIS_FETCH_ID_LEN		32	/* an answer id (a SHA-256) */

/* Where kis_fetch_keep_view keeps the caller's view of an answer */
typedef struct KisViewPlace
{
	uint64		serial;			/* of the stored answer, or 0: nowhere */
	uint8		answer_id[KIS_FETCH_ID_LEN];
	uint8		view_id[KIS_FETCH_ID_LEN];
} KisViewPlace;

/* A finished request handed back to the scan, in completion order */
typedef struct KisCompletion
{
	dlist_node	node;
	MemoryContext cxt;			/* holds this and the parsed answer */
	void	   *arg;			/* what kis_fetch_add was given */
	KisResponse resp;
	const char *view;			/* the caller's view of a shared answer,
								 * served instead of resp (kis_fetch_set_view);
								 * else NULL */
	size_t		view_len;
	char		tr_cont[4];		/* its KIS_FETCH_KEPT_HEADER, or "" */
	int			attempts;
	TimestampTz completed_at;

	/* where a view of this answer may be kept (not for a view itself) */
	KisViewPlace place;
} KisCompletion;

/* Counters of one scan; EXPLAIN ANALYZE shows them */
typedef struct KisFetchStats
{
	int64		requests;		/* HTTP requests sent, token requests included */
	int64		retries;
	int64		failures;		/* keys that ended failed */
	int64		rate_limited;	/* EGW00201 answers */
	int64		tokens_issued;
	int64		cache_hits;		/* answers served by the answer cache */
	int64		cache_views;	/* of which as the caller's view */
	int64		shared_waits;	/* requests answered by another's send */
	double		rate_wait_ms;	/* time spent with work blocked by the gate */
	double		http_ms;		/* sum of request durations */
} KisFetchStats;

/*
 * Whether an OK answer is the one its request (arg) asked for: NULL, or
 * what is wrong; such an answer is the request's failure and is not shared.
 */
typedef char *(*KisAnswerCheck) (void *arg, const KisResponse *resp);

/*
 * A shared request's view, as its caller describes it (appended to desc):
 * what makes the caller's prepared form of an answer (kis_fetch_keep_view)
 * the one another request may be served.  false: none, use the answer.
 */
typedef bool (*KisViewOf) (void *arg, StringInfo desc);

/* Whether a download's body is whole (worth keeping for others) */
typedef bool (*KisBodyCheck) (const char *body, size_t len);

extern void kis_fetch_global_init(void);
extern KisFetcher *kis_fetch_begin(MemoryContext run_cxt, const struct KisConfig *config,
								   KisFetchStats *stats);
extern void kis_fetch_add(KisFetcher *fetcher, const char *path_and_query,
						  const char *tr_id, const char *header, int flags,
						  void *arg);
extern void kis_fetch_add_file(KisFetcher *fetcher, const char *url,
							   KisBodyCheck whole, void *arg);
extern void kis_fetch_add_post(KisFetcher *fetcher, const char *url,
							   const char *body, void *arg);
extern void kis_fetch_add_answer(KisFetcher *fetcher, json_t *root, void *arg);
extern void kis_fetch_set_check(KisFetcher *fetcher, KisAnswerCheck check);
extern void kis_fetch_set_view(KisFetcher *fetcher, KisViewOf view_of);
extern void kis_fetch_set_pick(KisFetcher *fetcher, const KisJsonPick *pick);
extern void kis_fetch_keep_view(const KisViewPlace *place, const char *bytes,
								size_t len);
extern KisCompletion *kis_fetch_next(KisFetcher *fetcher);
extern void kis_fetch_forget(KisCompletion *completion);
extern KisPoll kis_fetch_poll(KisFetcher *fetcher, KisCompletion **completion);
extern int	kis_fetch_wait_fd(KisFetcher *fetcher);
extern void kis_fetch_wait_any(KisFetcher **fetchers, int nfetchers);
extern void kis_fetch_end(KisFetcher *fetcher);

#endif							/* KIS_FETCH_H */
