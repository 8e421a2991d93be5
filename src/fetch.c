/*-------------------------------------------------------------------------
 *
 * fetch.c
 *	  The fetch engine: the requests of one scan run concurrently over the
 *	  backend's transport (transport.c), at most max_concurrency at a time,
 *	  each send (retries included) passing the rate gate once (limiter.c),
 *	  and come back in completion order.  What happens to an answer (a
 *	  retry, a new token, a shared answer) is fetch_answer.c's.
 *
 * A fetcher lives for one scan run, in a memory context whose reset
 * callback gives back every transfer, claim and reservation it still
 * holds, whether the scan ended, was rescanned, failed or was cancelled.
 * Several fetchers can be open at once (a join of two foreign tables, the
 * children of an Append): a completion is routed to the fetcher that owns
 * it, whichever fetcher's wait read it.
 *
 * Timeouts (timeout_ms, connect_timeout_ms) are ours, not libcurl's, and a
 * request's clock runs only while its scan waits for answers; a tokenP
 * request's never stops.  docs/async.md, "The engine's clock", says why.
 * An asynchronous scan waits on kis_fetch_wait_fd (async_wait.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "async_wait.h"
#include "auth.h"
#include "cache.h"
#include "fetch.h"
#include "fetch_internal.h"
#include "limiter.h"
#include "options.h"
#include "shmem.h"
#include "transport.h"
#include "util.h"

/* The headers and body of one request, then the transport sends it */
static void
start_request(KisFetcher *f, KisRequest *req)
{
	const KisConfig *config = f->config;
	KisHeader	headers[KIS_AUTH_MAX_HEADERS];
	int			nheaders = 0;

	/* on the inflight list first: the cleanup callback then finds it */
	dlist_push_tail(&f->inflight, &req->node);
	req->attempts++;
	req->started_at = kis_clock_now();
	req->away_at_start = f->away_us;
	if (req->share == KIS_SHARE_OWNER)
		kis_cache_sending(req->answer_id, req->share_serial, true);

	kis_transfer_begin(&req->xfer, req->url, config->ca_file);
	if (req->kind == KIS_REQ_TOKEN)
		nheaders = kis_token_headers(headers);
	else if (req->kind == KIS_REQ_DATA)
		nheaders = kis_auth_headers(config, f->tok.token, req->tr_id, headers);
	for (int i = 0; i < nheaders; i++)
	{
		if (headers[i].value == NULL)
			kis_transfer_add_header(&req->xfer, headers[i].name);
		else
			kis_transfer_add_header_value(&req->xfer, headers[i].name, headers[i].value);
	}

	if (req->kind == KIS_REQ_TOKEN)
		kis_transfer_post(&req->xfer, f->tok.request_body);
	else if (req->post_body != NULL)
	{
		kis_transfer_add_header(&req->xfer, "Content-Type: application/json");
		kis_transfer_post(&req->xfer, req->post_body);
		f->ndata_inflight++;
		f->stats->requests++;
	}
	else
	{
		if (req->header != NULL)
			kis_transfer_add_header(&req->xfer, req->header);
		f->ndata_inflight++;
		f->stats->requests++;
		if (req->kind == KIS_REQ_DATA)
			kis_slot_count(f->slot, KIS_CTR_REQUESTS, 1);
	}
	kis_transfer_submit(&req->xfer);
}

static KisRequest *
new_request(KisFetcher *f, KisRequestKind kind, const char *url, const char *tr_id,
			int flags, void *arg)
{
	KisRequest *req = MemoryContextAllocZero(f->cxt, sizeof(KisRequest));

	req->fetcher = f;
	req->kind = kind;
	req->flags = flags;
	req->url = url ? MemoryContextStrdup(f->cxt, url) : NULL;
	req->tr_id = tr_id;
	req->arg = arg;
	req->xfer.owner = req;
	req->xfer.cxt = f->cxt;
	req->xfer.secret = kind == KIS_REQ_TOKEN;	/* the secret, then a token */
	req->xfer.keep_header = KIS_FETCH_KEPT_HEADER;
	return req;
}

/* Take the transport's finished transfers and act on them (fetch_answer.c) */
static void
drain_completions(void)
{
	KisTransfer *x;
	CURLcode	rc;
	long		status;

	while (kis_transport_next_done(&x, &rc, &status))
	{
		KisRequest *req = (KisRequest *) x->owner;

		dlist_delete(&req->node);
		kis_transfer_release(x);
		kis_fetch_finish_request(req, rc, status, kis_clock_now());
	}
}

/*
 * How long req's scan has waited for it: the time since it was sent, less
 * the time the scan was away (docs/async.md, "The engine's clock").
 */
static int64
waited_us(const KisFetcher *f, const KisRequest *req, TimestampTz now)
{
	int64		away = f->away_us - req->away_at_start;

	/*
	 * Except a tokenP request's: it holds the key's issuing claim, which
	 * other sessions take over after a wall-clock time (auth.c), so its own
	 * clock must not stop either.
	 */
	if (req->kind == KIS_REQ_TOKEN)
		return now - req->started_at;

	if (f->away_since != 0)
		away += now - f->away_since;
	return now - req->started_at - away;
}

/*
 * Give up on f's requests waited for longer than timeout_ms, or than
 * connect_timeout_ms while still connecting (curl has not got as far as
 * sending); they end as a network error, retried like any other.  Called
 * after the sockets were read, so an answer that is there wins.  Returns
 * when the next one would expire, or -1.
 */
static TimestampTz
expire_requests(KisFetcher *f, TimestampTz now)
{
	TimestampTz next = -1;
	dlist_mutable_iter iter;

	dlist_foreach_modify(iter, &f->inflight)
	{
		KisRequest *req = dlist_container(KisRequest, node, iter.cur);
		int64		waited = waited_us(f, req, now);
		int64		limit = (int64) f->config->timeout_ms * 1000;
		bool		connecting;
		size_t		received = req->xfer.body_len;

		if (req->xfer.easy == NULL)
			continue;
		connecting = kis_transfer_connecting(&req->xfer);
		if (connecting)
			limit = Min(limit, (int64) f->config->connect_timeout_ms * 1000);
		if (waited < limit)
		{
			next = kis_earliest(next, now + (limit - waited));
			continue;
		}

		dlist_delete(&req->node);
		kis_transfer_release(&req->xfer);
		if (connecting)
			kis_transfer_set_error(&req->xfer,
								   "not connected within connect_timeout_ms (%d ms)",
								   f->config->connect_timeout_ms);
		else
			kis_transfer_set_error(&req->xfer,
								   "no answer within timeout_ms (%d ms), %zu bytes received",
								   f->config->timeout_ms, received);
		kis_fetch_finish_request(req, CURLE_OPERATION_TIMEDOUT, 0, now);
	}
	return next;
}

/*
 * The scan is back (or, for an asynchronous scan, the executor is about to
 * wait for it): stop counting time away.  True if it had been away while
 * requests were in flight.
 */
static bool
end_away(KisFetcher *f)
{
	kis_cache_away(false);
	if (f->away_since == 0)
		return false;
	f->away_us += kis_clock_now() - f->away_since;
	f->away_since = 0;
	return !dlist_is_empty(&f->inflight);
}

/* The scan goes away with what it was given (see end_away) */
static void
begin_away(KisFetcher *f)
{
	f->away_since = kis_clock_now();
	kis_cache_away(true);
}

/* ----------------------------------------------------------------
 * The loop
 * ----------------------------------------------------------------
 */
/*
 * Start whatever may start now.  Returns when something of ours next
 * becomes possible (a backoff ends, our reserved send time comes, a token
 * may be issued or another session's issuance may have finished), or -1
 * if only the transport's events can move us on.
 */
static TimestampTz
pump(KisFetcher *f, TimestampTz now)
{
	TimestampTz wake = -1;
	TimestampTz token_wake = -1;
	dlist_mutable_iter iter;

	dlist_foreach_modify(iter, &f->delayed)
	{
		KisRequest *req = dlist_container(KisRequest, node, iter.cur);

		if (req->not_before <= now)
		{
			dlist_delete(&req->node);
			kis_fetch_ready(f, req, false);
		}
		else
			wake = kis_earliest(wake, req->not_before);
	}
	wake = kis_earliest(wake, kis_fetch_share_poll(f, now));

	/*
	 * Downloads need neither a token nor the API's gate; those that must
	 * wait for max_concurrency wait here, not at the token below.
	 */
	dlist_foreach_modify(iter, &f->ready_files)
	{
		KisRequest *req = dlist_container(KisRequest, node, iter.cur);

		if (f->fatal != NULL || f->ndata_inflight >= f->config->max_concurrency)
			continue;
		if (kis_fetch_share_lookup(f, req, now))
			continue;			/* from the store, or another's download */
		dlist_delete(&req->node);
		start_request(f, req);
	}

	if (f->fatal != NULL || f->tok.claim != 0 || dlist_is_empty(&f->ready))
		return wake;

	switch (kis_token_for_scan(&f->tok, f->slot, f->creds, f->config->timeout_ms,
							   now, &token_wake))
	{
		case KIS_TOKEN_READY:
			break;
		case KIS_TOKEN_ISSUE:
			f->token_req = new_request(f, KIS_REQ_TOKEN, kis_token_url(f->config),
									   NULL, 0, NULL);
			start_request(f, f->token_req);
			return wake;
		case KIS_TOKEN_WAIT:
		case KIS_TOKEN_WAIT_CLAIM:
		case KIS_TOKEN_WAIT_INTERVAL:
			return kis_earliest(wake, token_wake);
	}

	while (!dlist_is_empty(&f->ready) &&
		   f->ndata_inflight < f->config->max_concurrency)
	{
		KisRequest *req;

		req = dlist_container(KisRequest, node, dlist_head_node(&f->ready));
		if (kis_fetch_share_lookup(f, req, now))
			continue;

		/*
		 * One reservation at a time: a cancelled scan wastes one slot at
		 * most.  One that went stale (a cursor paused) or lies further
		 * ahead than the gate now justifies is renewed.
		 */
		if (f->has_reservation &&
			!kis_limiter_holds(f->slot, f->config->rate_limit, f->reserved_at, now))
		{
			kis_limiter_release(f->slot);
			f->has_reservation = false;
		}
		if (!f->has_reservation)
		{
			f->reserved_at = kis_limiter_reserve(f->slot, f->config->rate_limit, now);
			f->has_reservation = true;
			if (f->reserved_at > now)
			{
				f->stats->rate_wait_ms += (double) (f->reserved_at - now) / 1000.0;
				kis_slot_note_wait(f->slot, (uint64) (f->reserved_at - now));
			}
		}
		if (f->reserved_at > now)
		{
			wake = kis_earliest(wake, f->reserved_at);
			break;
		}
		kis_limiter_release(f->slot);
		f->has_reservation = false;
		req = dlist_container(KisRequest, node, dlist_pop_head_node(&f->ready));
		req->token_generation = f->tok.generation;
		start_request(f, req);
	}
	return wake;
}

/* Wait for the transport or "wake", then act on what finished */
static void
wait_and_work(TimestampTz wake)
{
	kis_transport_wait(wake);
	drain_completions();
}

/* ----------------------------------------------------------------
 * The fetcher's life
 * ----------------------------------------------------------------
 */

/*
 * Memory-context reset callback: give back everything the transport,
 * the cache, the app key's slot and the async wait hold for this fetcher.
 * Runs on normal end, rescan, ERROR and cancel alike; must not throw or
 * wait.
 */
static void
fetcher_cleanup(void *arg)
{
	KisFetcher *f = (KisFetcher *) arg;
	dlist_mutable_iter iter;

	if (f->released)
		return;
	f->released = true;

	dlist_foreach_modify(iter, &f->inflight)
	{
		KisRequest *req = dlist_container(KisRequest, node, iter.cur);

		dlist_delete(&req->node);
		kis_transfer_release(&req->xfer);
	}
	dlist_foreach_modify(iter, &f->owned)
		kis_fetch_share_done(dlist_container(KisRequest, owned_node, iter.cur));
	if (f->token_req != NULL)
		kis_transfer_wipe_body(&f->token_req->xfer);	/* goes with the context */
	kis_token_scan_end(&f->tok, f->slot);
	if (f->has_reservation)
		kis_limiter_release(f->slot);
	kis_async_wait_release(&f->async);
	if (f->slot != NULL)
		kis_app_slot_detach(f->slot);
	kis_transport_detach(f->config->max_concurrency, f->orderly);
}

/* At load (_PG_init) */
void
kis_fetch_global_init(void)
{
	kis_transport_global_init();
	kis_sha256_init();			/* answer ids are digests */
}

KisFetcher *
kis_fetch_begin(MemoryContext run_cxt, const KisConfig *config, KisFetchStats *stats)
{
	KisFetcher *f = MemoryContextAllocZero(run_cxt, sizeof(KisFetcher));
	uint8		app_key_hash[KIS_SHA256_LEN];

	f->cxt = run_cxt;
	f->config = config;
	f->stats = stats;
	dlist_init(&f->ready);
	dlist_init(&f->ready_files);
	dlist_init(&f->delayed);
	dlist_init(&f->inflight);
	dlist_init(&f->done);
	dlist_init(&f->sharing);
	dlist_init(&f->owned);

	if (config->app_key != NULL)
	{
		kis_hash_app_key(config->app_key, app_key_hash);
		kis_hash_credentials(config, f->creds);
		f->slot = kis_app_slot_attach(f->creds, app_key_hash);
		kis_slot_count(f->slot, KIS_CTR_SCANS, 1);
	}

	/* from here on, the callback owns what the fetcher opens (and the slot) */
	kis_transport_attach(config->max_concurrency);
	f->cleanup.func = fetcher_cleanup;
	f->cleanup.arg = f;
	MemoryContextRegisterResetCallback(run_cxt, &f->cleanup);

	if (config->app_key != NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(run_cxt);

		kis_token_scan_begin(&f->tok, config);
		MemoryContextSwitchTo(old);
	}
	kis_transport_size_pool();
	return f;
}

/*
 * Queue one data request: path_and_query is appended to base_url; header
 * (a string constant, or NULL) is sent as an extra request header; flags
 * (KIS_FETCH_*) say what may be done with its answer.
 */
void
kis_fetch_add(KisFetcher *f, const char *path_and_query, const char *tr_id,
			  const char *header, int flags, void *arg)
{
	MemoryContext old;
	char	   *url;
	KisRequest *req;

	/* only a public endpoint's scan has no key, and it makes no API request */
	if (f->slot == NULL)
		elog(ERROR, "kis_fdw: an API request for a scan without an app key");
	old = MemoryContextSwitchTo(f->cxt);
	url = psprintf("%s%s", f->config->base_url, path_and_query);
	MemoryContextSwitchTo(old);
	req = new_request(f, KIS_REQ_DATA, NULL, tr_id, flags, arg);
	req->url = url;
	req->header = header;		/* a string constant */
	f->npending++;
	if (kis_fetch_share_read(f, req, kis_clock_now()))
	{
		/* answered from the store: its memory goes back for the next */
		pfree(url);
		pfree(req);
		return;
	}
	kis_fetch_ready(f, req, false);
}

/* Check each OK answer with check before it is shared or handed back */
void
kis_fetch_set_check(KisFetcher *f, KisAnswerCheck check)
{
	f->check = check;
}

/*
 * How the caller describes its view of a request's answer: a shared answer
 * read by a request with a view comes with the view kept for it, if any
 * (KisCompletion.view), and the caller may keep one (kis_fetch_keep_view).
 */
void
kis_fetch_set_view(KisFetcher *f, KisViewOf view_of)
{
	f->view_of = view_of;
}

/*
 * Keep, of the rows of the answers to come, only pick's fields (NULL: all;
 * json_pick.c).  pick must live as long as the fetcher.
 */
void
kis_fetch_set_pick(KisFetcher *f, const KisJsonPick *pick)
{
	f->pick = pick;
}

/*
 * Queue one download of url (outside the API: no token, no rate gate),
 * shared with others when whole (NULL: always) says its body is whole.
 */
void
kis_fetch_add_file(KisFetcher *f, const char *url, KisBodyCheck whole, void *arg)
{
	KisRequest *req = new_request(f, KIS_REQ_FILE, url, NULL, KIS_FETCH_SHARED, arg);

	req->whole = whole;
	kis_fetch_ready(f, req, false);
	f->npending++;
}

/*
 * Queue one POST of body to url outside the API's gate and token (the
 * WebSocket approval key): never shared, its body and answer held as
 * secrets, the answer handed over as received.
 */
void
kis_fetch_add_post(KisFetcher *f, const char *url, const char *body, void *arg)
{
	KisRequest *req = new_request(f, KIS_REQ_FILE, url, NULL, 0, arg);

	req->post_body = MemoryContextStrdup(f->cxt, body);
	req->xfer.secret = true;
	kis_fetch_ready(f, req, false);
	f->npending++;
}

/*
 * Hand back an answer the caller already has (a live table's tick) as if
 * KIS had just sent it: the next kis_fetch_next or kis_fetch_poll returns
 * it, before any request's.  The completion takes a reference to root.
 */
void
kis_fetch_add_answer(KisFetcher *f, json_t *root, void *arg)
{
	MemoryContext rcxt = AllocSetContextCreate(f->cxt, "kis_fdw response",
											   ALLOCSET_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(rcxt);
	KisCompletion *c = palloc0(sizeof(KisCompletion));

	c->cxt = rcxt;
	c->arg = arg;
	kis_response_of(&c->resp, root);
	c->completed_at = GetCurrentTimestamp();
	MemoryContextSwitchTo(old);
	dlist_push_tail(&f->done, &c->node);
}

/*
 * The next finished request, in completion order, waiting as needed; NULL
 * when every request has finished and been taken.
 */
KisCompletion *
kis_fetch_next(KisFetcher *f)
{
	KisCompletion *c = NULL;
	TimestampTz expiry = -1;

	/* back from the executor: first read what arrived meanwhile */
	if (end_away(f))
	{
		wait_and_work(kis_clock_now());
		expiry = expire_requests(f, kis_clock_now());
	}

	for (;;)
	{
		TimestampTz wake;

		kis_fetch_raise_fatal(f);
		if (!dlist_is_empty(&f->done))
		{
			/*
			 * Before the scan goes off with a row (to a client that may pause
			 * between FETCHes), start what may start and let curl send what
			 * it can without waiting: nothing moves while we are away.
			 */
			if (f->npending > 0)
			{
				TimestampTz now = kis_clock_now();

				(void) pump(f, now);
				wait_and_work(now);
			}
			c = dlist_container(KisCompletion, node, dlist_pop_head_node(&f->done));
			break;
		}
		if (f->npending == 0)
			break;
		wake = pump(f, kis_clock_now());
		if (!dlist_is_empty(&f->done))
			continue;			/* answered from the cache */
		wait_and_work(kis_earliest(wake, expiry));
		expiry = expire_requests(f, kis_clock_now());
	}
	begin_away(f);
	return c;
}

/* The scan has used a completion; free it and its parsed answer */
void
kis_fetch_forget(KisCompletion *completion)
{
	MemoryContextDelete(completion->cxt);
}

/*
 * The scan is done with this fetcher in an orderly way (end or rescan):
 * the pooled connections stay for the next query.  The memory-context
 * callback frees the rest when the caller deletes the context.
 */
void
kis_fetch_end(KisFetcher *f)
{
	f->orderly = true;
}

/* ----------------------------------------------------------------
 * Asynchronous use (the children of an Append): never waits here
 * ----------------------------------------------------------------
 */

/*
 * One step that never waits: start what may start, let curl work on what
 * is ready, give up on what waited too long, start what the finished
 * transfers made room for, then hand back the next finished request if
 * there is one.  KIS_POLL_END when every request has finished and been
 * taken; KIS_POLL_WAIT when the scan must wait on kis_fetch_wait_fd.
 */
KisPoll
kis_fetch_poll(KisFetcher *f, KisCompletion **completion)
{
	KisPoll		result;

	*completion = NULL;
	(void) end_away(f);
	kis_fetch_raise_fatal(f);
	if (f->npending > 0)
	{
		TimestampTz now = kis_clock_now();
		TimestampTz expiry;

		(void) pump(f, now);
		wait_and_work(now);		/* a timeout of 0: nothing waits */
		expiry = expire_requests(f, kis_clock_now());
		kis_fetch_raise_fatal(f);
		f->wake = kis_earliest(pump(f, kis_clock_now()), expiry);
	}
	if (!dlist_is_empty(&f->done))
	{
		*completion = dlist_container(KisCompletion, node, dlist_pop_head_node(&f->done));
		result = KIS_POLL_ROW;
	}
	else
		result = f->npending == 0 ? KIS_POLL_END : KIS_POLL_WAIT;
	begin_away(f);
	return result;
}

/*
 * Wait until one of several fetchers may move on, after kis_fetch_poll
 * said KIS_POLL_WAIT for each (the partitions of a batched join, each with
 * its own gate).  curl's sockets are shared, so one wait serves them all;
 * it ends at the earliest of their deadlines, and their requests' clocks
 * run meanwhile.  The next kis_fetch_poll of each does the work.
 */
void
kis_fetch_wait_any(KisFetcher **fetchers, int nfetchers)
{
	TimestampTz wake = -1;
	bool		ready = false;

	for (int i = 0; i < nfetchers; i++)
	{
		KisFetcher *f = fetchers[i];

		(void) end_away(f);
		if (!dlist_is_empty(&f->done) || f->fatal != NULL)
			ready = true;
		wake = kis_earliest(wake, f->wake);
	}
	if (!ready)
		wait_and_work(wake);
}

/*
 * The descriptor an async scan waits on after kis_fetch_poll said
 * KIS_POLL_WAIT: it becomes readable when curl has something to do or the
 * fetcher's next deadline comes.  Valid until the next call.
 */
int
kis_fetch_wait_fd(KisFetcher *f)
{
	TimestampTz now;
	TimestampTz deadline;

	if (f->async == NULL)
		kis_async_wait_create(f->cxt, &f->async);
	now = kis_clock_now();
	deadline = kis_earliest(f->wake, kis_transport_timer());

	(void) end_away(f);			/* the executor waits for us from here */

	/* another scan's step may have finished our requests meanwhile */
	if (!dlist_is_empty(&f->done) || f->fatal != NULL)
		deadline = now;
	return kis_async_wait_arm(f->async, deadline, now);
}
