/*-------------------------------------------------------------------------
 *
 * fetch_internal.h
 *	  The fetch engine's requests and fetchers.  PRIVATE to fetch.c (the
 *	  queues and the loop) and fetch_answer.c (what an answer leads to);
 *	  everyone else sees fetch.h.
 *
 * src/fetch_internal.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef KIS_FETCH_INTERNAL_H
#define KIS_FETCH_INTERNAL_H

#include "lib/ilist.h"
#include "utils/elog.h"

#include "async_wait.h"
#include "auth.h"
#include "fetch.h"
#include "options.h"
#include "shmem.h"
#include "transport.h"
#include "util.h"

typedef enum KisRequestKind
{
	KIS_REQ_DATA,
	KIS_REQ_TOKEN,
	KIS_REQ_FILE				/* a download outside the API: no token, no
								 * gate, the body handed over as received */
} KisRequestKind;

/* Where a request stands with shared answers (cache.c) */
typedef enum KisShare
{
	KIS_SHARE_UNASKED,			/* not looked up yet */
	KIS_SHARE_OWNER,			/* ours to send; others may wait for it */
	KIS_SHARE_WAITING,			/* waiting for another's send */
	KIS_SHARE_ALONE				/* sent unshared */
} KisShare;

/* One HTTP exchange, possibly sent several times */
typedef struct KisRequest
{
	dlist_node	node;			/* in one of the fetcher's lists */
	struct KisFetcher *fetcher;
	KisRequestKind kind;
	int			flags;			/* KIS_FETCH_* */
	void	   *arg;
	char	   *url;
	const char *tr_id;
	const char *header;			/* an extra request header line, or NULL */
	KisBodyCheck whole;			/* a download's, or NULL */
	char	   *post_body;		/* a download sent as this secret POST */
	int			attempts;		/* sends so far */
	int			token_rejections;
	uint64		token_generation;	/* of the token it was sent with */
	TimestampTz not_before;		/* while delayed */
	TimestampTz started_at;
	int64		away_at_start;	/* the fetcher's away_us when it started */
	TimestampTz answered_at;	/* wall clock: the rows' fetched_at */

	/* shared answers: see kis_fetch_share_lookup */
	KisShare	share;
	bool		has_ids;		/* answer_id and view_id are made */
	uint8		answer_id[KIS_SHA256_LEN];
	uint64		share_serial;
	bool		has_view;		/* view_id is the caller's view of it */
	uint8		view_id[KIS_SHA256_LEN];
	uint64		view_serial;	/* the answer its view may be kept for */
	TimestampTz share_until;	/* a waiter gives up and sends then */
	dlist_node	owned_node;		/* in the fetcher's owned list */

	/*
	 * On the wire: the transfer, whose kept header (xfer.kept) is the
	 * answer's KIS_FETCH_KEPT_HEADER, a shared answer's too
	 */
	KisTransfer xfer;
} KisRequest;

struct KisFetcher
{
	MemoryContext cxt;
	const KisConfig *config;
	KisFetchStats *stats;
	KisAppSlot *slot;			/* the app key's gate, token and counters;
								 * NULL without an app key (public
								 * downloads only) */
	uint8		creds[KIS_SHA256_LEN];	/* whose token we need */
	KisAnswerCheck check;		/* is an answer the one asked for, or NULL */
	KisViewOf	view_of;		/* a request's view, or NULL: none */
	const KisJsonPick *pick;	/* the row fields answers keep, or NULL: all */
	MemoryContext spare_cxt;	/* the next shared answer's, or NULL */
	bool		vouched;		/* its credentials held a good token */
	KisTokenScan tok;			/* our token, claim and tokenP body */
	bool		has_reservation;	/* a send time reserved at the gate */
	TimestampTz reserved_at;

	dlist_head	ready;			/* API requests that may go when a slot and
								 * the gate allow */
	dlist_head	ready_files;	/* downloads that may go when a slot allows */
	dlist_head	delayed;		/* backing off until not_before */
	dlist_head	inflight;		/* on the wire */
	dlist_head	done;			/* completions not yet taken */
	dlist_head	sharing;		/* waiting for another's send */
	dlist_head	owned;			/* requests others may be waiting for */
	int			ndata_inflight;
	int			npending;		/* data requests not yet completed */
	KisRequest *token_req;		/* our tokenP request until its answer is
								 * wiped, so that an error wipes it too */
	ErrorData  *fatal;			/* an error for this scan, raised by its own
								 * kis_fetch_next (another scan's wait loop
								 * may have completed our request) */
	TimestampTz away_since;		/* kis_fetch_next returned then; 0: inside */
	int64		away_us;		/* time spent away before that */

	bool		orderly;		/* kis_fetch_end ran */
	bool		released;
	TimestampTz wake;			/* pump's next time, for an async wait */
	KisAsyncWait *async;		/* the async wait's descriptors, or NULL */
	MemoryContextCallback cleanup;
};

/* fetch_answer.c */
extern void kis_fetch_finish_request(KisRequest *req, CURLcode rc, long status,
									 TimestampTz now);
extern bool kis_fetch_share_read(KisFetcher *f, KisRequest *req, TimestampTz now);
extern bool kis_fetch_share_lookup(KisFetcher *f, KisRequest *req, TimestampTz now);
extern TimestampTz kis_fetch_share_poll(KisFetcher *f, TimestampTz now);
extern void kis_fetch_share_done(KisRequest *req);
extern void kis_fetch_raise_fatal(KisFetcher *f);

/*
 * Queue req as ready to go (at the head: before the others, as a retry or
 * a take-over is).  Downloads wait in a list of their own, so that the
 * engine's loop never walks the API requests to find them.
 */
static inline void
kis_fetch_ready(KisFetcher *f, KisRequest *req, bool at_head)
{
	dlist_head *list = req->kind == KIS_REQ_FILE ? &f->ready_files : &f->ready;

	if (at_head)
		dlist_push_head(list, &req->node);
	else
		dlist_push_tail(list, &req->node);
}

#endif							/* KIS_FETCH_INTERNAL_H */
