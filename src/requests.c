/*-------------------------------------------------------------------------
 *
 * requests.c
 *	  What a scan asks KIS for, and what each answer yields: the scan's keys
 *	  become calls (one per key, or batches of keys for multi-symbol
 *	  endpoints), each call becomes a request built from the endpoint's
 *	  parameter list, and each answer becomes rows — or failed keys — and,
 *	  for paged endpoints, the call's next request, which the endpoint's
 *	  paging kind returns (paging.c) and this file sends.
 *
 * Pages of one call are sequential (the next is asked when the previous
 * answer is in); different calls run concurrently in the fetch engine.
 * Everything here is driven by the endpoint entry (endpoints.c,
 * docs/adding-an-endpoint.md).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <jansson.h>

#include "lib/stringinfo.h"
#include "utils/timestamp.h"

#include "endpoints.h"
#include "fetch.h"
#include "master.h"
#include "options.h"
#include "paging.h"
#include "requests.h"
#include "response.h"

#define KIS_EARLIEST_DATE	"19000101"	/* DATE_1 when no lower bound is given */

/*
 * One logical request: its keys and where its paging stands.  ep, config
 * and keys stay first: fuzz/fuzz_kis.c reads them.
 */
typedef struct KisCall
{
	const KisEndpoint *ep;
	const KisConfig *config;
	List	   *keys;			/* KisKey *: 1, or up to keys_per_request */
	KisRange	range;			/* as the query asked */
	const KisPagingOps *paging; /* the endpoint's paging kind */
	KisPage		page;			/* the next page's request */
	const uint8 *view;			/* the reader's view (kis_requests_start), or
								 * NULL */
} KisCall;

/* Today in Korea (UTC+9, no daylight saving), as a julian day */
int
kis_today_kst(void)
{
	TimestampTz kst = GetCurrentTimestamp() + (int64) 9 * SECS_PER_HOUR * USECS_PER_SEC;

	return (int) (kst / USECS_PER_DAY) + POSTGRES_EPOCH_JDATE;
}

/* The bytes of a key's copy in one piece: kis_key_copy_to */
Size
kis_key_size(const KisKey *key)
{
	return sizeof(KisKey) + strlen(key->symbol) + 1 +
		(key->venue ? strlen(key->venue) + 1 : 0);
}

/* A copy of a key into mem, kis_key_size(key) bytes (a NULL venue stays NULL) */
KisKey *
kis_key_copy_to(void *mem, const KisKey *key)
{
	size_t		slen = strlen(key->symbol) + 1;
	KisKey	   *copy = mem;
	char	   *text = (char *) (copy + 1);

	copy->symbol = memcpy(text, key->symbol, slen);
	copy->venue = key->venue ? strcpy(text + slen, key->venue) : NULL;
	return copy;
}

/* A copy of a key in one allocation */
KisKey *
kis_key_copy(const KisKey *key)
{
	return kis_key_copy_to(palloc(kis_key_size(key)), key);
}

/* RFC 3986 percent-encoding of a query value */
static void
append_url_encoded(StringInfo buf, const char *value)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *p = (const unsigned char *) value;

	while (*p)
	{
		const unsigned char *run = p;

		/* unreserved characters go as they are, a run at a time */
		while (*p && (isalnum(*p) || *p == '-' || *p == '_' || *p == '.' || *p == '~'))
			p++;
		appendBinaryStringInfo(buf, (const char *) run, p - run);
		if (*p)
		{
			char		escaped[3] = {'%', hex[*p >> 4], hex[*p & 0x0F]};

			appendBinaryStringInfo(buf, escaped, 3);
			p++;
		}
	}
}

/* name=value, or nameN=value for a batch's Nth; after '?' the first time */
static void
append_param(StringInfo buf, bool *first, const char *name, int n, const char *value)
{
	appendStringInfoChar(buf, *first ? '?' : '&');
	*first = false;
	appendStringInfoString(buf, name);
	if (n > 0)
	{
		char		digits[12];
		int			len = 0;

		for (; n > 0; n /= 10)
			digits[len++] = (char) ('0' + n % 10);
		while (len > 0)
			appendStringInfoChar(buf, digits[--len]);
	}
	appendStringInfoChar(buf, '=');
	append_url_encoded(buf, value);
}

/* The value of one non-batch parameter for this call */
static const char *
param_value(const KisCall *call, const KisParamDef *p)
{
	const KisConfig *config = call->config;
	const KisKey *key = call->keys ? linitial(call->keys) : NULL;
	const char *paging = kis_page_param(&call->page, p->source);

	if (paging != NULL)
		return paging;
	switch (p->source)
	{
		case KIS_PARAM_LITERAL:
			return p->literal;
		case KIS_PARAM_SYMBOL:
			return key ? key->symbol : "";
		case KIS_PARAM_MARKET:
		case KIS_PARAM_EXCHANGE:
			return key ? key->venue : "";
		case KIS_PARAM_DATE_FROM:
			return call->range.has_from ? kis_date_text(call->range.from) : KIS_EARLIEST_DATE;
		case KIS_PARAM_DATE_START:
			return kis_date_text(call->range.has_from ? call->range.from : kis_today_kst());
		case KIS_PARAM_PERIOD:
			return config->period;
		case KIS_PARAM_PERIOD_NUMBER:
			return config->period[0] == 'W' ? "1" : config->period[0] == 'M' ? "2" : "0";
		case KIS_PARAM_ORIGINAL_PRICE:
			return config->adjusted ? "0" : "1";
		case KIS_PARAM_ADJUSTED_FLAG:
			return config->adjusted ? "1" : "0";
		case KIS_PARAM_CANO:
			return pnstrdup(config->account, 8);
		case KIS_PARAM_ACNT_PRDT_CD:
			return config->account + 9;
		case KIS_PARAM_DATE_TO:
		case KIS_PARAM_TIME_TO:
		case KIS_PARAM_CTX_FK:
		case KIS_PARAM_CTX_NK:
		case KIS_PARAM_BATCH_MARKET:
		case KIS_PARAM_BATCH_SYMBOL:
			break;
	}
	return "";
}

/* Queue the call's next request with the fetch engine */
static void
send_call(KisFetcher *f, KisCall *call)
{
	StringInfoData path;
	const char *header;
	bool		first = true;

	initStringInfo(&path);
	appendStringInfoString(&path, call->ep->path);
	for (const KisParamDef *p = call->ep->params; p->name; p++)
	{
		if (p->source == KIS_PARAM_BATCH_MARKET || p->source == KIS_PARAM_BATCH_SYMBOL)
		{
			int			n = 0;
			ListCell   *lc;

			foreach(lc, call->keys)
			{
				KisKey	   *key = lfirst(lc);

				append_param(&path, &first, p->name, ++n,
							 p->source == KIS_PARAM_BATCH_MARKET ? key->venue : key->symbol);
			}
		}
		else
			append_param(&path, &first, p->name, 0, param_value(call, p));
	}
	header = call->paging->header(&call->page);
	kis_fetch_add(f, path.data, kis_endpoint_tr_id(call->ep, call->config->environment),
				  header,
				  (header == NULL ? KIS_FETCH_SHARED : 0) |
				  (kis_endpoint_private_answers(call->ep) ? KIS_FETCH_PRIVATE : 0) |
				  (kis_endpoint_paging(call->ep) == KIS_PAGING_CURSOR ?
				   KIS_FETCH_MAY_CONTINUE : 0) |
				  (kis_endpoint_is_declared(call->ep) ? KIS_FETCH_UNCHECKED : 0),
				  call);
	pfree(path.data);
}

static KisCall *
new_call(const KisConfig *config, const KisRange *range, int today, const uint8 *view)
{
	KisCall    *call = palloc0(sizeof(KisCall));

	call->view = view;
	call->ep = config->endpoint;
	call->config = config;
	call->range = *range;
	call->range.ndates = 0;		/* the IN list stays a local filter */
	call->range.dates = NULL;
	call->paging = kis_paging_ops(kis_endpoint_paging(call->ep));
	call->page.cxt = CurrentMemoryContext;
	kis_page_begin(&call->page, range, today);
	return call;
}

static bool
call_has_symbol(const KisCall *call, const char *symbol)
{
	ListCell   *lc;

	foreach(lc, call->keys)
	{
		if (strcmp(((KisKey *) lfirst(lc))->symbol, symbol) == 0)
			return true;
	}
	return false;
}

static char *answer_mismatch(void *arg, const KisResponse *resp);

/*
 * A call's view of its answer (KisViewOf): the reader's, and what else its
 * rows are made of besides the answer: the endpoint and the keys asked for.
 * Only answers whose rows are nothing more (a batch, one object); a paged
 * answer's rows depend on where the paging stands.
 */
static bool
call_view(void *arg, StringInfo desc)
{
	KisCall    *call = (KisCall *) arg;
	const KisEndpoint *ep = call->ep;
	ListCell   *lc;

	if (call->view == NULL || kis_endpoint_from_master_file(ep) ||
		kis_endpoint_streamed(ep) ||
		(kis_endpoint_keys_per_request(ep) <= 1 &&
		 kis_endpoint_rows_shape(ep) != KIS_ROWS_OBJECT))
		return false;
	appendBinaryStringInfo(desc, (const char *) call->view, KIS_VIEW_LEN);
	appendBinaryStringInfo(desc, ep->name, strlen(ep->name) + 1);
	if (ep->row_source != NULL)
		appendBinaryStringInfo(desc, ep->row_source, strlen(ep->row_source));
	appendStringInfoChar(desc, '\0');
	foreach(lc, call->keys)
	{
		KisKey	   *key = lfirst(lc);

		/* each with its terminating NUL: no two lists read alike */
		appendBinaryStringInfo(desc, key->symbol, strlen(key->symbol) + 1);
		appendBinaryStringInfo(desc, key->venue ? key->venue : "", key->venue ? strlen(key->venue) + 1 : 1);
	}
	return true;
}

/*
 * Queue the requests of a scan: one call per (symbol, venue) key, or
 * batches of keys where the endpoint takes several, or one call for an
 * account endpoint; a paging kind may split a key's range into several
 * calls (paging.c).  keys is a list of KisKey *.  Returns the number of
 * calls queued (0 when the date range lies after today).
 */
int
kis_requests_start(KisFetcher *f, const KisConfig *config, List *keys,
				   const KisRange *range, const uint8 *view)
{
	const KisEndpoint *ep = config->endpoint;
	const KisPagingOps *paging = kis_paging_ops(kis_endpoint_paging(ep));
	int			per_request = kis_endpoint_keys_per_request(ep);
	int			today = kis_today_kst();
	int			ncalls = 0;
	KisCall    *call = NULL;
	const char *prev = NULL;
	bool		sorted = true;
	List	   *ranges;
	ListCell   *lc;
	ListCell   *lr;

	kis_fetch_set_check(f, answer_mismatch);
	kis_fetch_set_view(f, call_view);

	if (!paging->range_ok(ep, range, today))
		return 0;

	if (kis_endpoint_from_master_file(ep))
	{
		/* one download per market: the keys are markets */
		foreach(lc, keys)
		{
			KisKey	   *key = lfirst(lc);

			call = new_call(config, range, today, view);
			call->keys = list_make1(key);
			kis_fetch_add_file(f, psprintf("%s/%s", config->master_url,
										   kis_master_file(key->venue)),
							   kis_zip_is_whole, call);
			ncalls++;
		}
		return ncalls;
	}

	if (!kis_endpoint_per_symbol(ep))
	{
		send_call(f, new_call(config, range, today, view));
		return 1;
	}

	ranges = paging->ranges(ep, config->period, range, today);
	Assert(per_request == 1 || list_length(ranges) == 1);
	foreach(lc, keys)
	{
		KisKey	   *key = lfirst(lc);

		/* keys come sorted by symbol: a repeat can only be the last one */
		if (prev != NULL && strcmp(prev, key->symbol) > 0)
			sorted = false;
		prev = key->symbol;
		foreach(lr, ranges)
		{
			/*
			 * A batched answer names a row by its symbol only, so one batch
			 * holds a symbol once: the same symbol on another market goes to
			 * another.
			 */
			if (call == NULL || list_length(call->keys) >= per_request ||
				(sorted ? strcmp(((KisKey *) llast(call->keys))->symbol, key->symbol) == 0 :
				 call_has_symbol(call, key->symbol)))
			{
				if (call != NULL)
					send_call(f, call);
				call = new_call(config, lfirst(lr), today, view);
				ncalls++;
			}
			call->keys = lappend(call->keys, key);
		}
	}
	if (call != NULL)
		send_call(f, call);
	return ncalls;
}

/*
 * Rows of a live table's REST fallback say so: source, and received_at
 * (when KIS answered).
 */
static void
mark_source(List *rows, const char *source, TimestampTz at)
{
	ListCell   *lc;
	char	   *when = pstrdup(timestamptz_to_str(at));

	foreach(lc, rows)
	{
		KisRow	   *row = lfirst(lc);

		if (row->row == NULL || !json_is_object(row->row))
			continue;
		json_object_set_new(row->row, "source", json_string(source));
		json_object_set_new(row->row, "received_at", json_string(when));
	}
}

/* A row of an answer, or a key's failure (row NULL, problem set) */
KisRow *
kis_row_new(const KisEndpoint *ep, KisKey *key, json_t *row, json_t *extra,
			const char *problem)
{
	KisRow	   *r = palloc(sizeof(KisRow));

	r->ep = ep;
	r->hint = NULL;
	r->key = key;
	r->row = row;
	r->extra = extra;
	r->problem = problem ? pstrdup(problem) : NULL;
	return r;
}

/* Every key of the call failed the same way */
static List *
fail_all(KisCall *call, const char *problem)
{
	List	   *rows = NIL;
	ListCell   *lc;

	if (call->keys == NIL)
		return list_make1(kis_row_new(call->ep, NULL, NULL, NULL, problem));
	foreach(lc, call->keys)
		rows = lappend(rows, kis_row_new(call->ep, lfirst(lc), NULL, NULL, problem));
	return rows;
}

/*
 * Not listed: "" (or nothing) where the endpoint names the listing, or "0"
 * or "" where it puts a price that every listed symbol has.  The value is
 * read as columns are, so a number where KIS documents a string is still a
 * price.
 */
static bool
row_not_listed(const KisEndpoint *ep, json_t *row, json_t *extra)
{
	char	   *v;

	if (ep->identity_field != NULL)
	{
		v = kis_row_field_text(row, extra, ep->identity_field);
		if (v == NULL || strspn(v, " ") == strlen(v))
			return true;
	}
	if (ep->notfound_field == NULL)
		return false;
	v = kis_row_field_text(row, extra, ep->notfound_field);
	return v == NULL || strcmp(v, "0") == 0;
}

/* An object member, or the first element of an array member */
static json_t *
member_object(json_t *root, const char *name)
{
	json_t	   *m = name ? json_object_get(root, name) : NULL;

	if (json_is_array(m))
		m = json_array_get(m, 0);
	return json_is_object(m) ? m : NULL;
}

/*
 * Whether an answer names the symbols its call asked for (the fetch engine
 * asks before the answer is shared): NULL, or what is wrong.  An answer
 * naming another symbol was meant for another request (one smuggled onto
 * the connection, say): it is the call's failure and never cached
 * (docs/security.md).  An answer that names none (not listed) passes.
 */
static char *
answer_mismatch(void *arg, const KisResponse *resp)
{
	KisCall    *call = (KisCall *) arg;
	const KisEndpoint *ep = call->ep;

	if (ep->echo_field != NULL && call->keys != NIL)
	{
		const char *symbol = ((KisKey *) linitial(call->keys))->symbol;
		json_t	   *m = member_object(resp->root, ep->echo_member);
		char	   *v = m ? kis_row_field_text(m, NULL, ep->echo_field) : NULL;
		size_t		len = v ? strlen(v) : 0;

		while (len > 0 && v[len - 1] == ' ')
			v[--len] = '\0';	/* KIS pads some texts */
		if (len > 0)
		{
			const char *echo = len > (size_t) ep->echo_skip ? v + ep->echo_skip : v;

			/* an ETN is asked for as Q and 6 digits; KIS may name it by the digits */
			if (strcmp(echo, symbol) != 0 &&
				(symbol[0] != 'Q' || strcmp(echo, symbol + 1) != 0))
				return psprintf("the answer is for symbol \"%.40s\", not the one asked for",
								echo);
		}
	}
	if (kis_endpoint_keys_per_request(ep) > 1 && ep->row_symbol_field != NULL)
	{
		json_t	   *member = json_object_get(resp->root, ep->rows_member);
		size_t		n = json_is_object(member) ? 1 : json_array_size(member);

		for (size_t i = 0; i < n; i++)
		{
			json_t	   *elem = json_is_object(member) ? member : json_array_get(member, i);
			const char *sym = json_string_value(json_object_get(elem, ep->row_symbol_field));

			if (sym != NULL && sym[0] != '\0' && !call_has_symbol(call, sym))
				return psprintf("the answer holds symbol \"%.40s\", which was not asked for", sym);
		}
	}
	return NULL;
}

/* Batched answers: find each key's row by its symbol field */
static List *
batched_rows(KisCall *call, json_t *member)
{
	const KisEndpoint *ep = call->ep;
	List	   *rows = NIL;
	ListCell   *lc;

	foreach(lc, call->keys)
	{
		KisKey	   *key = lfirst(lc);
		json_t	   *found = NULL;
		size_t		i;
		json_t	   *elem;

		json_array_foreach(member, i, elem)
		{
			const char *sym = json_string_value(json_object_get(elem, ep->row_symbol_field));

			if (sym != NULL && strcmp(sym, key->symbol) == 0)
			{
				found = elem;
				break;
			}
		}
		if (found == NULL)
			rows = lappend(rows, kis_row_new(call->ep, key, NULL, NULL, "missing from the answer"));
		else if (row_not_listed(ep, found, NULL))
			rows = lappend(rows, kis_row_new(call->ep, key, NULL, NULL, KIS_NOT_LISTED));
		else
			rows = lappend(rows, kis_row_new(call->ep, key, found, NULL, NULL));
	}
	return rows;
}

/*
 * One field of a row as the text its column's input function reads: an
 * unsigned change gets the direction its endpoint's catalogue entry points
 * to (a sign code, else a twin value that carries its sign).  NULL for ""
 * and missing fields.
 */
char *
kis_row_value(const KisRow *row, const char *field)
{
	char	   *text = kis_row_field_text(row->row, row->extra, field);
	const KisColumnDef *col;
	KisDirection dir;

	if (text == NULL || row->ep == NULL)
		return text;
	col = kis_endpoint_column_of_field(row->ep, field);
	if (col == NULL || col->sign_field == NULL ||
		kis_signed_text_direction(text) != KIS_DIR_UNKNOWN)
		return text;
	dir = kis_sign_code_direction(kis_row_field_text(row->row, row->extra,
													 col->sign_field));
	if (dir == KIS_DIR_UNKNOWN && col->sign_twin != NULL)
		dir = kis_signed_text_direction(kis_row_field_text(row->row, row->extra,
														   col->sign_twin));
	return kis_text_with_direction(text, dir);
}

/*
 * The listings of a market's master file: one row per line, a failed row
 * for each line that cannot be read (on_error decides), or the market's
 * failure when the archive cannot be read.
 */
static List *
master_answer(KisCall *call, KisCompletion *c)
{
	KisKey	   *key = linitial(call->keys);
	const char *problem = NULL;
	List	   *line_problems;
	List	   *rows = NIL;
	json_t	   *listings;
	size_t		i;
	json_t	   *elem;
	ListCell   *lc;

	if (c->resp.outcome != KIS_OUTCOME_OK)
		return fail_all(call, kis_response_summary(&c->resp));
	listings = kis_master_rows(key->venue, c->resp.body, c->resp.body_len,
							   &line_problems, &problem);
	if (listings == NULL)
		return fail_all(call, psprintf("the master file of %s: %s", key->venue, problem));
	json_array_foreach(listings, i, elem)
		rows = lappend(rows, kis_row_new(call->ep, key, elem, NULL, NULL));
	foreach(lc, line_problems)
		rows = lappend(rows, kis_row_new(call->ep, key, NULL, NULL,
										 psprintf("the master file of %s, %s", key->venue,
												  (char *) lfirst(lc))));
	return rows;
}

/*
 * Queue the call's next request now, or, with later, when the caller says
 * (kis_requests_send): later grows in the caller's memory context
 */
static void
next_call(KisFetcher *f, KisCall *call, MemoryContext caller, List **later)
{
	MemoryContext old;

	if (later == NULL)
	{
		send_call(f, call);
		return;
	}
	old = MemoryContextSwitchTo(caller);
	*later = lappend(*later, call);
	MemoryContextSwitchTo(old);
}

/* Queue the requests kis_requests_answer left for later, in that order */
void
kis_requests_send(KisFetcher *f, List *later)
{
	ListCell   *lc;

	foreach(lc, later)
		send_call(f, lfirst(lc));
}

/*
 * The rows of one answer (a list of KisRow *, allocated in the answer's
 * memory context; failed keys have problem set), and queue the call's next
 * page if its paging kind returns one (or its first again): at once, or
 * with later not NULL, into *later for kis_requests_send.
 */
List *
kis_requests_answer(KisFetcher *f, KisCompletion *c, List **later)
{
	KisCall    *call = (KisCall *) c->arg;
	const KisEndpoint *ep = call->ep;
	KisRowShape shape = kis_endpoint_rows_shape(ep);
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext old = MemoryContextSwitchTo(c->cxt);
	KisPageAnswer answer;
	List	   *rows = NIL;
	json_t	   *member;
	json_t	   *extra;

	call->page.pages++;
	if (kis_endpoint_from_master_file(ep))
	{
		rows = master_answer(call, c);
		MemoryContextSwitchTo(old);
		return rows;
	}
	if (c->resp.outcome != KIS_OUTCOME_OK)
	{
		const char *hint = NULL;

		if (call->paging->failed(&call->page, ep, &c->resp, &hint))
			next_call(f, call, caller, later);	/* started over */
		else
		{
			rows = fail_all(call, kis_response_summary(&c->resp));
			((KisRow *) linitial(rows))->hint = hint;
		}
		MemoryContextSwitchTo(old);
		return rows;
	}

	member = json_object_get(c->resp.root, ep->rows_member);
	if (shape == KIS_ROWS_ANY && json_is_object(member))
	{
		json_t	   *array = kis_json_new_array();

		json_array_append(array, member);
		member = array;
	}
	extra = member_object(c->resp.root, ep->extra_member);

	if (shape == KIS_ROWS_OBJECT ? !json_is_object(member) : !json_is_array(member))
		rows = fail_all(call, kis_endpoint_is_declared(ep) ?
						psprintf("the answer of TR %s has no \"%s\" array or object",
								 ep->name, ep->rows_member) :
						psprintf("the answer has no \"%s\" %s", ep->rows_member,
								 shape == KIS_ROWS_OBJECT ? "object" : "array"));
	else if (kis_endpoint_keys_per_request(ep) > 1)
		rows = batched_rows(call, member);
	else if (shape == KIS_ROWS_OBJECT)
	{
		KisKey	   *key = call->keys ? linitial(call->keys) : NULL;

		rows = list_make1(row_not_listed(ep, member, extra) ?
						  kis_row_new(ep, key, NULL, NULL, KIS_NOT_LISTED) :
						  kis_row_new(ep, key, member, extra, NULL));
	}
	else
	{
		answer.ep = ep;
		answer.key = call->keys ? linitial(call->keys) : NULL;
		answer.range = &call->range;
		answer.completion = c;
		answer.member = member;
		answer.extra = extra;
		if (call->paging->read(&call->page, &answer, &rows))
			next_call(f, call, caller, later);
	}
	if (ep->row_source != NULL)
		mark_source(rows, ep->row_source, c->completed_at);
	MemoryContextSwitchTo(old);
	return rows;
}

/*
 * Queue an answer the caller already has for one key (a live table's tick,
 * live.c), as the endpoint's own answer; root becomes the answer's.
 */
void
kis_requests_add_answer(KisFetcher *f, const KisConfig *config, KisKey *key, json_t *root)
{
	KisRange	range;
	KisCall    *call;

	memset(&range, 0, sizeof(range));
	call = new_call(config, &range, kis_today_kst(), NULL);
	call->keys = key ? list_make1(key) : NIL;
	kis_fetch_add_answer(f, root, call);
}
