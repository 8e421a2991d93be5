/*-------------------------------------------------------------------------
 *
 * fake_fetch.c
 *	  The fetch engine as the fuzz harness replaces it: kis_fetch_add and
 *	  kis_fetch_add_file check each request (its URL, tr_id, header and
 *	  sharing flags) and queue it for fuzz_kis.c to answer, with the keys it
 *	  asked for, worked out from its URL (request_keys) rather than from
 *	  requests.c's private layout.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <stdio.h>

#include "lib/stringinfo.h"
#include "utils/memutils.h"

#include "endpoints.h"
#include "fetch.h"
#include "harness.h"
#include "master.h"
#include "requests.h"

/* The decoded value of parameter name in query ("?a=1&b=2"), or NULL */
static char *
query_value(const char *query, const char *name)
{
	size_t		len = strlen(name);

	for (const char *p = query; p != NULL && *p; p = strchr(p, '&'))
	{
		StringInfoData buf;

		p++;					/* past '?' or '&' */
		if (strncmp(p, name, len) != 0 || p[len] != '=')
			continue;
		initStringInfo(&buf);
		for (p += len + 1; *p && *p != '&'; p++)
		{
			unsigned int byte;

			if (*p == '%' && sscanf(p + 1, "%2x", &byte) == 1)
			{
				appendStringInfoChar(&buf, (char) byte);
				p += 2;
			}
			else
				appendStringInfoChar(&buf, *p);
		}
		return buf.data;
	}
	return NULL;
}

/* The scan's keys of this symbol (and venue, unless NULL) */
static List *
keys_named(KisFetcher *f, const char *symbol, const char *venue)
{
	List	   *found = NIL;
	ListCell   *lc;

	foreach(lc, f->scan_keys)
	{
		KisKey	   *key = lfirst(lc);

		if (symbol != NULL && strcmp(key->symbol, symbol) == 0 &&
			(venue == NULL || strcmp(key->venue, venue) == 0))
			found = lappend(found, key);
	}
	if (found == NIL)
		harness_abort("a request asks for a key the scan was not given");
	return found;
}

/*
 * The keys a request asked for, by the endpoint's parameters in its URL:
 * one symbol and venue, or a batch of them (name1=, name2=...).  Keys of
 * one symbol on two venues both count when the venue is not a parameter.
 */
static List *
request_keys(KisFetcher *f, const char *query, int *nkeys)
{
	const KisParamDef *symbol = NULL;
	const KisParamDef *venue = NULL;
	bool		batched = false;
	List	   *keys = NIL;

	*nkeys = 0;
	for (const KisParamDef *p = f->ep->params; p->name; p++)
	{
		if (p->source == KIS_PARAM_SYMBOL || p->source == KIS_PARAM_BATCH_SYMBOL)
			symbol = p;
		else if (p->source == KIS_PARAM_MARKET || p->source == KIS_PARAM_EXCHANGE ||
				 p->source == KIS_PARAM_BATCH_MARKET)
			venue = p;
		batched |= p->source == KIS_PARAM_BATCH_SYMBOL;
	}
	if (symbol == NULL || f->ep->symbol_kind == KIS_SYMBOL_NONE)
		return NIL;
	if (!batched)
	{
		*nkeys = 1;
		return keys_named(f, query_value(query, symbol->name),
						  venue ? query_value(query, venue->name) : NULL);
	}
	for (int n = 1;; n++)
	{
		char	   *s = query_value(query, psprintf("%s%d", symbol->name, n));
		ListCell   *lc;

		if (s == NULL)
			break;
		foreach(lc, keys_named(f, s, venue ?
							   query_value(query, psprintf("%s%d", venue->name, n)) : NULL))
			keys = lappend(keys, lfirst(lc));
		(*nkeys)++;
	}
	return keys;
}

/* Queue a request the harness will answer (fetch.c's ready queue) */
static void
queue_request(KisFetcher *f, void *arg, List *keys, int nkeys)
{
	if (f->tail >= MAX_REQUESTS)
		harness_abort("a scan queued more than MAX_REQUESTS requests");
	f->queue[f->tail].arg = arg;
	f->queue[f->tail].keys = keys;
	f->queue[f->tail].nkeys = nkeys;
	f->queue[f->tail].attempts = 0;
	f->queue[f->tail].token_rejections = 0;
	f->tail++;
	f->added++;
}

void
kis_fetch_add(KisFetcher *f, const char *path_and_query, const char *tr_id,
			  const char *header, int flags, void *arg)
{
	const char *query;
	List	   *keys;
	int			nkeys;
	MemoryContext old;

	if (path_and_query == NULL || tr_id == NULL || arg == NULL)
		harness_abort("kis_fetch_add given NULL");
	if (strncmp(path_and_query, f->ep->path, strlen(f->ep->path)) != 0)
		harness_abort("request path is not the endpoint's");
	query = path_and_query + strlen(f->ep->path);
	if (*query != '\0' && *query != '?')
		harness_abort("request path continues past the endpoint's path");
	for (const char *p = query; *p; p++)
	{
		/* a URL: percent-encoded, no spaces or controls */
		if ((unsigned char) *p <= ' ' || (unsigned char) *p >= 0x7f)
			harness_abort("request URL holds a byte that is not URL-safe");
	}
	if (strcmp(tr_id, f->ep->tr_id_real) != 0 &&
		(f->ep->tr_id_virtual == NULL || strcmp(tr_id, f->ep->tr_id_virtual) != 0))
		harness_abort("tr_id is not the endpoint's");
	if (header != NULL && strcmp(header, "tr_cont: N") != 0)
		harness_abort("unexpected extra header");
	/* what the engine may do with it: the endpoint's, never a next page shared */
	if (((flags & KIS_FETCH_PRIVATE) != 0) != kis_endpoint_private_answers(f->ep) ||
		((flags & KIS_FETCH_MAY_CONTINUE) != 0) !=
		(kis_endpoint_paging(f->ep) == KIS_PAGING_CURSOR) ||
		((flags & KIS_FETCH_SHARED) != 0) == (header != NULL))
		harness_abort("a request's sharing flags are not its endpoint's");
	old = MemoryContextSwitchTo(f->cxt);
	keys = request_keys(f, query, &nkeys);
	MemoryContextSwitchTo(old);
	if (harness_verbose)
		fprintf(stderr, "  request %s [%s]%s%s\n", path_and_query, tr_id,
				header ? " " : "", header ? header : "");
	queue_request(f, arg, keys, nkeys);
}

void
kis_fetch_set_check(KisFetcher *f, KisAnswerCheck check)
{
	f->check = check;
}

/* No shared answers here: a view is never asked for */
void
kis_fetch_set_view(KisFetcher *f, KisViewOf view_of)
{
}

/* A download (domestic_symbols): a master file under the server's master_url */
void
kis_fetch_add_file(KisFetcher *f, const char *url, KisBodyCheck whole, void *arg)
{
	static const char prefix[] = "https://127.0.0.1:1/common/master/";
	List	   *keys = NIL;
	ListCell   *lc;
	MemoryContext old;

	if (url == NULL || arg == NULL || whole == NULL)
		harness_abort("kis_fetch_add_file given NULL");
	if (f->ep->source != KIS_SOURCE_MASTER_FILE)
		harness_abort("a download for an API endpoint");
	if (strncmp(url, prefix, strlen(prefix)) != 0 ||
		(strcmp(url + strlen(prefix), "kospi_code.mst.zip") != 0 &&
		 strcmp(url + strlen(prefix), "kosdaq_code.mst.zip") != 0 &&
		 strcmp(url + strlen(prefix), "konex_code.mst.zip") != 0))
		harness_abort("a download that is not a master file");
	old = MemoryContextSwitchTo(f->cxt);
	foreach(lc, f->scan_keys)
	{
		KisKey	   *key = lfirst(lc);

		if (strcmp(url + strlen(prefix), kis_master_file(key->venue)) == 0)
			keys = lappend(keys, key);
	}
	MemoryContextSwitchTo(old);
	if (keys == NIL)
		harness_abort("a download of a market the scan was not given");
	if (harness_verbose)
		fprintf(stderr, "  download %s\n", url);
	queue_request(f, arg, keys, 1);
}


/*
 * An answer in hand: only a live table's scan gives one (live_scan.c),
 * and the harness runs no live table, so a call is a harness bug.
 */
void
kis_fetch_add_answer(KisFetcher *f, json_t *root, void *arg)
{
	harness_abort("kis_fetch_add_answer: the harness fuzzes no live table");
}
