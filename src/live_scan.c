/*-------------------------------------------------------------------------
 *
 * live_scan.c
 *	  A live table's run: subscribe the keys not yet subscribed, wait up to
 *	  live_wait_ms for their first ticks, hand each key's latest tick to
 *	  the run as its answer, and ask the REST table the live table falls
 *	  back to for each key that has none (market closed, halted, no room
 *	  at the key's limit).  Those rows say source 'rest'.
 *
 * The WebSocket approval key is asked for here, once per credential, and
 * handed to the worker through shared memory (live.c).
 *
 * XXX The wait for first ticks blocks the backend, also as an async
 * Append child; it happens once per new subscription (docs/live.md).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <jansson.h>

#include "utils/memutils.h"

#include "auth.h"
#include "endpoints.h"
#include "fetch.h"
#include "keys.h"
#include "live.h"
#include "live_scan.h"
#include "options.h"
#include "requests.h"
#include "response.h"
#include "util.h"

/* Ask KIS for the credential's approval key and hand it to the worker */
static bool
obtain_approval(KisFetcher *f, const KisConfig *config, KisLiveChannel *ch, uint64 generation)
{
	bool		ours;
	char	   *body = kis_approval_request_body(config);
	char	   *url = kis_approval_url(config);
	KisCompletion *c;
	json_t	   *root;
	const char *key = NULL;

	kis_fetch_add_post(f, url, body, NULL);
	explicit_bzero(body, strlen(body));
	pfree(body);
	c = kis_fetch_next(f);
	Assert(c != NULL);
	if (c->resp.outcome == KIS_OUTCOME_OK && c->resp.body != NULL)
	{
		/* owned by the answer's context: freed on any ERROR below */
		MemoryContext old = MemoryContextSwitchTo(c->cxt);

		root = kis_json_parse(c->resp.body, c->resp.body_len);
		MemoryContextSwitchTo(old);
		key = json_string_value(json_object_get(root, "approval_key"));
	}
	if (key == NULL || key[0] == '\0')
	{
		char	   *problem = c->resp.problem ? pstrdup(c->resp.problem) : pstrdup("no approval_key");

		if (c->resp.body != NULL)
			explicit_bzero((char *) c->resp.body, c->resp.body_len);
		kis_fetch_forget(c);
		ereport(ERROR,
				(errcode(ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
				 errmsg("KIS did not issue a WebSocket approval key"),
				 errdetail("POST %s answered: %s.", url, problem),
				 errhint("Check the user mapping's app_key and app_secret; live tables need the same credentials as the REST tables.")));
	}
	explicit_bzero((char *) c->resp.body, c->resp.body_len);
	ours = kis_live_set_approval(ch, generation, key);
	kis_fetch_forget(c);		/* jansson's copy of the key is freed unwiped: XXX */
	return ours;
}

/*
 * The channel of config's credential, with the KisLiveKeys of keys wanted
 * on it (pin: kept until unsubscribed), an approval key obtained first if
 * it has none (with fetcher f, or one of its own if f is NULL).
 */
KisLiveChannel *
kis_live_scan_subscribe(KisFetcher *f, const KisConfig *config, List *keys, bool pin)
{
	for (int attempt = 1;; attempt++)
	{
		uint64		generation;
		KisLiveChannel *ch = kis_live_channel(config, &generation);
		bool		ours = true;

		if (kis_live_needs_approval(ch))
		{
			KisFetchStats stats;
			MemoryContext cxt = NULL;
			KisFetcher *own = f;

			if (own == NULL)
			{
				memset(&stats, 0, sizeof(stats));
				cxt = AllocSetContextCreate(CurrentMemoryContext, "kis_fdw approval",
											ALLOCSET_SMALL_SIZES);
				own = kis_fetch_begin(cxt, config, &stats);
			}
			ours = obtain_approval(own, config, ch, generation);
			if (cxt != NULL)
			{
				kis_fetch_end(own);
				MemoryContextDelete(cxt);
			}
		}
		if (ours && kis_live_want(ch, generation, keys, pin))
			return ch;
		/* an idle channel went to another credential meanwhile */
		if (attempt == 3)
			ereport(ERROR,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("kis_fdw's live channels are taken as fast as they free"),
					 errdetail("Three times, the channel found for this app key was given to another before it could subscribe."),
					 errhint("Try again, or raise kis_fdw.max_app_keys and restart PostgreSQL.")));
	}
}

/*
 * The tick ring's new ticks (seq > range->after, else all it holds) of the
 * table's channel, as one answer.  A WARNING says how many a capture that
 * fell behind missed.
 */
static int
ring_start(KisFetcher *f, const KisConfig *config, const KisRange *range, const bool *copy)
{
	uint64		generation;
	KisLiveChannel *ch = kis_live_channel_find(config, &generation);
	KisLiveRingRead rr;
	char	   *record = palloc(KIS_LIVE_RING_RECORD_MAX);
	uint64		seq;
	TimestampTz at;
	json_t	   *ticks = kis_json_new_array();

	/* a key that never streamed has nothing in the ring: no channel is taken */
	if (ch == NULL)
	{
		kis_requests_add_answer(f, config, NULL, kis_live_answer(ticks));
		pfree(record);
		return 1;
	}

	/*
	 * Pinned symbols KIS refused (its approval key, say) are asked for again,
	 * with a new key if due: a capture job reads no symbol, and nothing else
	 * might ever ask
	 */
	if (kis_live_refused_pins(ch))
		ch = kis_live_scan_subscribe(f, config, NIL, false);
	kis_live_ring_begin(&rr, ch, range->has_after,
						range->has_after && range->after > 0 ? (uint64) range->after : 0);
	while (kis_live_ring_next(&rr, &seq, record, &at))
		(void) json_array_append(ticks, kis_live_record_object(config->endpoint->stream,
																record, at, seq, copy));
	if (kis_live_ring_missed(&rr) > 0)
		ereport(WARNING,
				(errcode(ERRCODE_WARNING),
				 errmsg("%s missed " UINT64_FORMAT " ticks after seq " INT64_FORMAT,
						config->endpoint->name, kis_live_ring_missed(&rr), range->after),
				 errdetail("The tick ring holds the last %d ticks of every app key; these were overwritten before this read.",
						   kis_live_ring_size()),
				 errhint("Capture more often, or raise kis_fdw.live_ring_size and restart PostgreSQL.")));
	kis_requests_add_answer(f, config, NULL, kis_live_answer(ticks));
	pfree(record);
	return 1;
}

/*
 * Queue the run of a live table over keys (KisKey *s): ticks in hand
 * become answers at once (with the fields named in fields, NIL: all), the
 * rest REST requests.  Returns how many
 * answers and requests were queued.
 */
int
kis_live_scan_start(KisFetcher *f, const KisConfig *config, List *keys,
					const KisRange *range, List *fields)
{
	const KisEndpoint *ep = config->endpoint;
	KisLiveKind kind = ep->stream;
	KisLiveChannel *ch;
	List	   *live_keys = NIL;
	List	   *missing = NIL;
	ListCell   *lc;
	ListCell   *lk;
	int			n = 0;

	bool	   *copy = kis_live_field_mask(kind, fields);

	if (kis_endpoint_ringed(ep))
		return ring_start(f, config, range, copy);
	if (keys == NIL)
		return 0;

	foreach(lc, keys)
	{
		KisKey	   *key = lfirst(lc);
		KisLiveKey *lkey = palloc0(sizeof(KisLiveKey));

		lkey->kind = kind;
		lkey->tr_key = kis_live_tr_key(kind, key->symbol, key->venue);
		live_keys = lappend(live_keys, lkey);
	}
	ch = kis_live_scan_subscribe(f, config, live_keys, false);
	kis_live_collect(ch, live_keys, config->live_wait_ms);

	forboth(lc, keys, lk, live_keys)
	{
		KisKey	   *key = lfirst(lc);
		KisLiveKey *lkey = lfirst(lk);

		if (lkey->has_tick)
		{
			kis_requests_add_answer(f, config, key,
									kis_live_answer(kis_live_record_object(kind, lkey->record,
																		   lkey->received_at, 0,
																		   copy)));
			n++;
		}
		else
			missing = lappend(missing, key);
	}
	if (missing != NIL)
	{
		KisConfig  *rest = palloc(sizeof(KisConfig));

		*rest = *config;
		rest->endpoint = kis_endpoint_fallback(ep);
		foreach(lc, missing)
		{
			/* a copy: the run's keys may be its caller's (kis_runner_borrow_keys) */
			KisKey	   *key = palloc(sizeof(KisKey));

			*key = *(KisKey *) lfirst(lc);
			if (!kis_endpoint_has_key(ep, kis_endpoint_venue_key(ep)))
				key->venue = pstrdup(kis_endpoint_default_venue(rest->endpoint, rest));
			lfirst(lc) = key;
		}
		n += kis_requests_start(f, rest, missing, range, NULL);
	}
	return n;
}
