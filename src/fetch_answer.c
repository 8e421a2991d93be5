/*-------------------------------------------------------------------------
 *
 * fetch_answer.c
 *	  What the fetch engine does when a request ends: its answer is read
 *	  (response.c) and acted on by the retry rules (outcome.c), the token's
 *	  (auth.c) and the sharing rules (cache.c): handed to the scan, retried
 *	  after a back-off, resent with a new token, kept for others, or the
 *	  end of the scan.  A request may also end without a send of its own,
 *	  answered by the cache or by another session's send.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "auth.h"
#include "cache.h"
#include "fetch.h"
#include "fetch_internal.h"
#include "limiter.h"
#include "outcome.h"
#include "response.h"
#include "shmem.h"
#include "text.h"
#include "transport.h"

#define KIS_RATE_PENALTY_MS		500 /* after EGW00201, for the whole key */

StaticAssertDecl(KIS_FETCH_ID_LEN == KIS_SHA256_LEN, "an answer id is a SHA-256");

/*
 * Keep an error that ends this fetcher's scan, to be raised by the scan's
 * own kis_fetch_next: the request may have been completed while another
 * scan (another cursor, say) was waiting.  The first error wins.  The
 * error is built by a real ereport (constant, translatable texts), here or
 * in auth.c ("raise", a statement that throws), and caught at once;
 * nothing between here and the throw holds a resource.
 */
#define FAIL_FETCHER(f, raise) \
	do { \
		if ((f)->fatal == NULL) \
		{ \
			MemoryContext fail_cxt = CurrentMemoryContext; \
			PG_TRY(); \
			{ \
				raise; \
			} \
			PG_CATCH(); \
			{ \
				keep_fatal(f, fail_cxt); \
			} \
			PG_END_TRY(); \
		} \
	} while (0)

static void
keep_fatal(KisFetcher *f, MemoryContext back_to)
{
	MemoryContextSwitchTo(f->cxt);
	f->fatal = CopyErrorData();
	FlushErrorState();
	MemoryContextSwitchTo(back_to);
}

/* Raise the error kept for this fetcher's scan, if any */
void
kis_fetch_raise_fatal(KisFetcher *f)
{
	if (f->fatal != NULL)
		ReThrowError(f->fatal);
}

/* The body buffer is only needed until the answer is parsed */
static void
forget_body(KisRequest *req)
{
	if (req->kind == KIS_REQ_TOKEN)
		req->fetcher->token_req = NULL;
	kis_transfer_forget_body(&req->xfer);
}

/*
 * Hand a finished data request to the scan (the completion, returned).  The
 * completion and its parsed answer live in their own small context, freed
 * by kis_fetch_forget.
 */
static KisCompletion *
complete_request(KisFetcher *f, KisRequest *req, KisResponse *resp,
				 MemoryContext rcxt)
{
	KisCompletion *c = MemoryContextAllocZero(rcxt, sizeof(KisCompletion));

	if (req->post_body != NULL) /* sent for good: wipe the secret */
		explicit_bzero(req->post_body, strlen(req->post_body));
	kis_transfer_done(&req->xfer);
	c->cxt = rcxt;
	c->arg = req->arg;
	memcpy(c->tr_cont, req->xfer.kept, sizeof(c->tr_cont));
	c->resp = *resp;
	c->attempts = req->attempts;
	if (req->has_view && req->view_serial != 0)
	{
		c->place.serial = req->view_serial;
		memcpy(c->place.answer_id, req->answer_id, KIS_FETCH_ID_LEN);
		memcpy(c->place.view_id, req->view_id, KIS_FETCH_ID_LEN);
	}
	/* the row's fetched_at: when KIS answered, a shared answer too */
	c->completed_at = req->answered_at != 0 ? req->answered_at : GetCurrentTimestamp();
	kis_fetch_share_done(req);
	if (resp->outcome != KIS_OUTCOME_OK && resp->outcome != KIS_OUTCOME_FAILED)
	{
		/* retries exhausted: report it as this key's failure */
		MemoryContext old = MemoryContextSwitchTo(rcxt);

		kis_outcome_give_up(&c->resp, req->attempts);
		MemoryContextSwitchTo(old);
	}
	if (c->resp.outcome != KIS_OUTCOME_OK)
	{
		f->stats->failures++;
		kis_slot_count(f->slot, KIS_CTR_ERR_KEY, 1);
	}
	f->npending--;
	dlist_push_tail(&f->done, &c->node);
	return c;
}

/* Send it again after a back-off (KIS_ACTION_RETRY) */
static void
retry_later(KisFetcher *f, KisRequest *req, MemoryContext rcxt, TimestampTz now)
{
	MemoryContextDelete(rcxt);
	if (req->share == KIS_SHARE_OWNER)	/* unsent again while it backs off */
		kis_cache_sending(req->answer_id, req->share_serial, false);
	f->stats->retries++;
	kis_slot_count(f->slot, KIS_CTR_RETRIES, 1);
	req->not_before = now + kis_backoff_us(req->attempts);
	dlist_push_tail(&f->delayed, &req->node);
}

/* ----------------------------------------------------------------
 * Shared answers (cache.c).  A request is looked up before it goes to the
 * rate gate, so neither a cached answer nor waiting for another session's
 * send of the same request costs a slot.  docs/cache.md has the rules.
 * ----------------------------------------------------------------
 */

/* The owner is done with a request: waiters stop waiting; never throws */
void
kis_fetch_share_done(KisRequest *req)
{
	if (req->share == KIS_SHARE_OWNER)
	{
		kis_cache_abandon(req->answer_id, req->share_serial);
		dlist_delete(&req->owned_node);
		req->share = KIS_SHARE_ALONE;
	}
}

/* A successful answer arrived: keep it for those waiting and the cache */
static void
share_answer(KisFetcher *f, KisRequest *req, long http_status)
{
	req->answered_at = GetCurrentTimestamp();
	if (req->share == KIS_SHARE_OWNER &&
		kis_cache_may_keep((req->flags & KIS_FETCH_PRIVATE) != 0,
						   (req->flags & KIS_FETCH_MAY_CONTINUE) != 0,
						   f->config->cache_ttl_ms, req->xfer.kept))
	{
		kis_cache_store(req->answer_id, req->share_serial,
						req->xfer.body ? req->xfer.body : "", req->xfer.body_len,
						req->xfer.kept, http_status, req->answered_at,
						(req->flags & KIS_FETCH_PRIVATE) != 0);
		req->view_serial = req->share_serial;
	}
}

/*
 * The context a shared answer is copied into, to become its completion's:
 * made ahead and kept until an answer comes (most lookups find none).
 */
static MemoryContext
answer_cxt(KisFetcher *f)
{
	if (f->spare_cxt == NULL)
		f->spare_cxt = AllocSetContextCreate(f->cxt, "kis_fdw response",
											 ALLOCSET_SMALL_SIZES);
	return f->spare_cxt;
}

/*
 * Complete a request with a shared answer (from the cache, or another's
 * send), copied into answer_cxt
 */
static void
complete_shared(KisFetcher *f, KisRequest *req, KisCachedAnswer *answer, bool hit)
{
	MemoryContext rcxt = answer_cxt(f);
	MemoryContext old = MemoryContextSwitchTo(rcxt);
	KisResponse resp;
	KisCompletion *c;

	f->spare_cxt = NULL;		/* the completion's now */
	memset(&resp, 0, sizeof(resp));
	if (answer->view || req->kind == KIS_REQ_FILE)
	{
		/* the caller's own view of it, or a download's body as received */
		resp.outcome = KIS_OUTCOME_OK;
		resp.http_status = answer->http_status;
		if (!answer->view)
		{
			resp.body = answer->body;
			resp.body_len = answer->len;
		}
	}
	else
	{
		kis_response_read(&resp, answer->http_status, answer->body, answer->len, f->pick);
		pfree(answer->body);
	}
	MemoryContextSwitchTo(old);
	memcpy(req->xfer.kept, answer->tr_cont, sizeof(req->xfer.kept));
	req->answered_at = answer->answered_at;
	req->view_serial = answer->serial;
	if (answer->view)
		f->stats->cache_views++;
	if (hit)
	{
		f->stats->cache_hits++;
		kis_slot_count(f->slot, KIS_CTR_CACHE_HITS, 1);
	}
	else
	{
		f->stats->shared_waits++;
		kis_slot_count(f->slot, KIS_CTR_SHARED_WAITS, 1);
	}
	c = complete_request(f, req, &resp, rcxt);
	if (answer->view)
	{
		c->view = answer->body;
		c->view_len = answer->len;
		c->place.serial = 0;	/* a view is kept already */
	}
}

/*
 * The caller's view of a shared answer (KisViewOf) is a request's too: its
 * id is the answer id and the caller's description, hashed.
 */
static void
view_id_of(KisFetcher *f, KisRequest *req)
{
	StringInfoData desc;

	req->has_view = false;
	if (f->view_of == NULL)
		return;
	initStringInfo(&desc);
	appendBinaryStringInfo(&desc, "view", 5);
	appendBinaryStringInfo(&desc, (const char *) req->answer_id, KIS_SHA256_LEN);
	if (f->view_of(req->arg, &desc))
	{
		kis_sha256(desc.data, desc.len, req->view_id);
		req->has_view = true;
	}
	pfree(desc.data);
}

/*
 * Keep the caller's view of a completed shared answer beside it, at the
 * place its completion gave (KisCompletion.place; none for a view itself)
 */
void
kis_fetch_keep_view(const KisViewPlace *place, const char *bytes, size_t len)
{
	if (place->serial != 0)
		kis_cache_keep_view(place->answer_id, place->serial, place->view_id, bytes, len);
}

/* A shared request's answer id and, for an API request, its view's */
static void
ids_of(KisFetcher *f, KisRequest *req)
{
	kis_cache_answer_id(f->config, f->creds, (req->flags & KIS_FETCH_PRIVATE) != 0,
						(req->flags & KIS_FETCH_UNCHECKED) != 0, req->url, req->tr_id,
						req->header, req->answer_id);
	if (req->kind == KIS_REQ_DATA)
		view_id_of(f, req);
	req->has_ids = true;
}

/*
 * A shared API request just made, answered from the store if its answer is
 * there and the scan's credentials hold a good token (true): a cached
 * join's requests leave nothing behind, not even their URLs.  Else it is
 * looked up again at the head of the queue, after the token, where it may
 * also wait for another's send or become the one others wait for.
 */
bool
kis_fetch_share_read(KisFetcher *f, KisRequest *req, TimestampTz now)
{
	KisCachedAnswer answer;
	int			ttl_ms = kis_cache_ttl_ms(f->config->cache_ttl_ms, false);

	if ((req->flags & KIS_FETCH_SHARED) == 0 || ttl_ms <= 0)
		return false;
	/* only for credentials KIS vouched for; else at the gate, after the token */
	if (!f->vouched)
	{
		if (!kis_token_vouches(f->slot, f->creds, now))
			return false;
		f->vouched = true;
	}
	ids_of(f, req);
	if (!kis_cache_read(req->answer_id, req->has_view ? req->view_id : NULL, ttl_ms, now,
						&answer, answer_cxt(f)))
		return false;
	req->share = KIS_SHARE_ALONE;
	complete_shared(f, req, &answer, true);
	return true;
}

/*
 * The request at the head of the ready queue, before the gate: answered
 * from the cache, or set waiting for another's send (true: it left the
 * queue), or to be sent, perhaps as the send others wait for.
 */
bool
kis_fetch_share_lookup(KisFetcher *f, KisRequest *req, TimestampTz now)
{
	const KisConfig *config = f->config;
	KisCachedAnswer answer;

	if (req->share != KIS_SHARE_UNASKED)
		return false;
	req->share = KIS_SHARE_ALONE;
	if ((req->flags & KIS_FETCH_SHARED) == 0)
		return false;			/* a paged listing's next page, say */

	if (!req->has_ids)
		ids_of(f, req);
	switch (kis_cache_lookup(req->answer_id, req->has_view ? req->view_id : NULL,
							 kis_cache_ttl_ms(config->cache_ttl_ms, req->kind == KIS_REQ_FILE),
							 now, &req->share_serial, &answer, answer_cxt(f)))
	{
		case KIS_CACHE_SEND:
			break;
		case KIS_CACHE_OWNER:
			req->share = KIS_SHARE_OWNER;
			dlist_push_tail(&f->owned, &req->owned_node);
			break;
		case KIS_CACHE_HIT:
			dlist_delete(&req->node);
			complete_shared(f, req, &answer, true);
			return true;
		case KIS_CACHE_WAIT:
			dlist_delete(&req->node);
			req->share = KIS_SHARE_WAITING;
			req->share_until = now + kis_cache_patience_us(config->timeout_ms);
			dlist_push_tail(&f->sharing, &req->node);
			return true;
	}
	return false;
}

/*
 * Look at the requests waiting for others' sends: take the answers that
 * came, send those whose sender gave up (or that waited long enough).
 * Returns when to look again.
 */
TimestampTz
kis_fetch_share_poll(KisFetcher *f, TimestampTz now)
{
	TimestampTz wake = -1;
	dlist_mutable_iter iter;

	dlist_foreach_modify(iter, &f->sharing)
	{
		KisRequest *req = dlist_container(KisRequest, node, iter.cur);
		KisCachedAnswer answer;
		KisCacheResult r;

		r = kis_cache_poll(req->answer_id, req->has_view ? req->view_id : NULL,
						   &req->share_serial, &answer, answer_cxt(f));
		if (r == KIS_CACHE_WAIT && now < req->share_until)
		{
			wake = kis_earliest(wake, kis_cache_next_look(now, req->share_until));
			continue;
		}
		dlist_delete(&req->node);
		if (r == KIS_CACHE_HIT)
			complete_shared(f, req, &answer, false);
		else if (r == KIS_CACHE_OWNER)
		{
			/* taken over from a sender that is away: others may wait for us */
			req->share = KIS_SHARE_OWNER;
			dlist_push_tail(&f->owned, &req->owned_node);
			kis_fetch_ready(f, req, true);
		}
		else
		{
			req->share = KIS_SHARE_ALONE;
			kis_fetch_ready(f, req, true);
		}
	}
	return wake;
}

/* ----------------------------------------------------------------
 * A transfer ended
 * ----------------------------------------------------------------
 */
static void
finish_token_request(KisFetcher *f, KisRequest *req, CURLcode rc, long status,
					 TimestampTz now)
{
	KisTokenNext next;

	if (rc != CURLE_OK)
	{
		forget_body(req);		/* a part of an answer may hold a token */
		if (kis_token_no_answer(&f->tok, f->slot, kis_transfer_untrusted(rc),
								f->config->max_retries, now) == KIS_TOKEN_NEXT_FAIL)
			FAIL_FETCHER(f, kis_token_raise_unreached(kis_transfer_error(&req->xfer, rc),
													  f->config->base_url,
													  kis_transfer_untrusted(rc)));
		return;
	}

	next = kis_token_answer(&f->tok, f->slot, f->creds, status,
							req->xfer.body ? req->xfer.body : "", req->xfer.body_len,
							f->config->max_retries, now);
	forget_body(req);
	if (f->tok.result == KIS_TOKEN_OK)
		f->stats->tokens_issued++;
	/* KIS_TOKEN_NEXT_AGAIN: pump asks again once the schedule allows */
	if (next == KIS_TOKEN_NEXT_FAIL)
		FAIL_FETCHER(f, kis_token_raise(&f->tok));
}

static void
finish_data_request(KisFetcher *f, KisRequest *req, CURLcode rc, long status,
					TimestampTz now)
{
	KisResponse resp;
	MemoryContext rcxt;
	MemoryContext old;

	f->ndata_inflight--;
	if (rc != CURLE_OK && kis_transfer_untrusted(rc))
	{
		FAIL_FETCHER(f, ereport(ERROR,
								(errcode(ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
								 errmsg("could not verify the TLS certificate of the KIS server"),
								 errdetail("%s", kis_transfer_error(&req->xfer, rc)),
								 errhint("Check the server's ca_file option, and that base_url names the host the certificate is for."))));
		return;
	}

	kis_slot_count(f->slot, KIS_CTR_BYTES, req->xfer.body_len);
	rcxt = AllocSetContextCreate(f->cxt, "kis_fdw response", ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(rcxt);
	if (rc == CURLE_OK)
		kis_response_read(&resp, status, req->xfer.body ? req->xfer.body : "",
						  req->xfer.body_len, f->pick);
	else
	{
		memset(&resp, 0, sizeof(resp));
		resp.http_status = status;
		if (req->xfer.body_too_large)
		{
			resp.outcome = KIS_OUTCOME_FAILED;
			resp.problem = psprintf("answer larger than %d bytes", KIS_MAX_RESPONSE_BYTES);
		}
		else
		{
			resp.outcome = KIS_OUTCOME_RETRY;
			resp.problem = psprintf("network error: %s", kis_transfer_error(&req->xfer, rc));
		}
	}
	if (rc == CURLE_OK && resp.outcome == KIS_OUTCOME_OK && f->check != NULL &&
		(resp.problem = f->check(req->arg, &resp)) != NULL)
	{
		/* another request's answer: this key's failure, in our words */
		resp.outcome = KIS_OUTCOME_FAILED;
		resp.msg_cd = NULL;
	}
	MemoryContextSwitchTo(old);
	if (rc == CURLE_OK && resp.outcome == KIS_OUTCOME_OK)
		share_answer(f, req, status);
	forget_body(req);

	if (resp.outcome == KIS_OUTCOME_RETRY_RATE)
	{
		f->stats->rate_limited++;
		kis_slot_count(f->slot, KIS_CTR_RATE_LIMITED, 1);
		kis_limiter_back_off(f->slot, now + KIS_RATE_PENALTY_MS * 1000);
	}
	else if (resp.outcome == KIS_OUTCOME_RETRY)
		kis_slot_count(f->slot, KIS_CTR_ERR_TRANSIENT, 1);
	else if (resp.outcome == KIS_OUTCOME_TOKEN)
		req->token_rejections++;

	switch (kis_outcome_action(resp.outcome, req->attempts, f->config->max_retries,
							   req->token_rejections))
	{
		case KIS_ACTION_DONE:
		case KIS_ACTION_GIVE_UP:
			complete_request(f, req, &resp, rcxt);
			break;
		case KIS_ACTION_RETRY:
			retry_later(f, req, rcxt, now);
			break;
		case KIS_ACTION_RENEW_TOKEN:
			/* replace the token once for everyone; resend without charge */
			MemoryContextDelete(rcxt);
			kis_slot_count(f->slot, KIS_CTR_ERR_TOKEN, 1);
			kis_token_invalidate(f->slot, req->token_generation);
			if (req->share == KIS_SHARE_OWNER)	/* unsent until a new token */
				kis_cache_sending(req->answer_id, req->share_serial, false);
			req->attempts--;
			kis_fetch_ready(f, req, true);
			break;
		case KIS_ACTION_TOKEN_FAILED:
			FAIL_FETCHER(f, kis_token_raise_rejected(f->slot, req->token_generation,
													 kis_response_summary(&resp)));
			break;
		case KIS_ACTION_FAIL:
			kis_slot_count(f->slot, KIS_CTR_ERR_FATAL, 1);
			FAIL_FETCHER(f, ereport(ERROR,
									(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
									 errmsg("KIS refused the request"),
									 errdetail("%s", kis_server_message(kis_response_summary(&resp))),
									 errhint("Check app_key and app_secret in the user mapping, and that the key is for the server's environment (real or virtual)."))));
			break;
	}
}

/*
 * A download: HTTP 200 hands the body over (resp.body); a network error or
 * a 5xx is retried, any other status is the key's failure.
 */
static void
finish_file_request(KisFetcher *f, KisRequest *req, CURLcode rc, long status,
					TimestampTz now)
{
	MemoryContext rcxt = AllocSetContextCreate(f->cxt, "kis_fdw response",
											   ALLOCSET_DEFAULT_SIZES);
	MemoryContext old;
	KisResponse resp;

	f->ndata_inflight--;
	memset(&resp, 0, sizeof(resp));
	resp.http_status = status;
	if (rc != CURLE_OK && kis_transfer_untrusted(rc))
	{
		MemoryContextDelete(rcxt);
		FAIL_FETCHER(f, ereport(ERROR,
								(errcode(ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
								 errmsg("could not verify the TLS certificate of the download server"),
								 errdetail("%s", kis_transfer_error(&req->xfer, rc)),
								 errhint("Check the server's ca_file and master_url options."))));
		return;
	}
	old = MemoryContextSwitchTo(rcxt);
	if (rc == CURLE_OK && status == 200)
	{
		size_t		len = req->xfer.body_len;
		char	   *body = MemoryContextAllocExtended(rcxt, len + 1, MCXT_ALLOC_NO_OOM);

		if (body != NULL)
		{
			memcpy(body, req->xfer.body ? req->xfer.body : "", len);
			body[len] = '\0';
			resp.outcome = KIS_OUTCOME_OK;
			resp.body = body;
			resp.body_len = len;
			/* kept for others unless plainly not whole (a cut transfer) */
			if (req->whole == NULL || req->whole(body, len))
				share_answer(f, req, status);
		}
		else
		{
			resp.outcome = KIS_OUTCOME_FAILED;
			resp.problem = pstrdup("out of memory");
		}
	}
	else if (rc == CURLE_OK)
	{
		resp.outcome = status >= 500 ? KIS_OUTCOME_RETRY : KIS_OUTCOME_FAILED;
		resp.problem = psprintf("HTTP %ld", status);
	}
	else
	{
		resp.outcome = req->xfer.body_too_large ? KIS_OUTCOME_FAILED : KIS_OUTCOME_RETRY;
		resp.problem = req->xfer.body_too_large ?
			psprintf("download larger than %d bytes", KIS_MAX_RESPONSE_BYTES) :
			psprintf("network error: %s", kis_transfer_error(&req->xfer, rc));
	}
	MemoryContextSwitchTo(old);
	forget_body(req);
	if (kis_outcome_action(resp.outcome, req->attempts, f->config->max_retries, 0) ==
		KIS_ACTION_RETRY)
		retry_later(f, req, rcxt, now);
	else
		complete_request(f, req, &resp, rcxt);
}

/* Act on a transfer that ended; the transport no longer holds it */
void
kis_fetch_finish_request(KisRequest *req, CURLcode rc, long status, TimestampTz now)
{
	KisFetcher *f = req->fetcher;

	f->stats->http_ms += (double) (now - req->started_at) / 1000.0;

	/*
	 * Its fetcher's next time may now be earlier (a retry's back-off, a
	 * free transfer, a token to ask for), and the step doing this work may
	 * be another fetcher's (kis_fetch_wait_any, kis_fetch_wait_fd): say
	 * "now", so that no wait trusts the time saved before; the fetcher's
	 * next poll works out the real one.
	 */
	f->wake = now;
	if (req->kind == KIS_REQ_TOKEN)
		finish_token_request(f, req, rc, status, now);
	else if (req->kind == KIS_REQ_FILE)
		finish_file_request(f, req, rc, status, now);
	else
		finish_data_request(f, req, rc, status, now);
}
