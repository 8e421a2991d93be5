/*-------------------------------------------------------------------------
 *
 * requests.c
 *	  What a scan asks KIS for, and what each answer yields: the scan's keys
 *	  become calls (one per key, or batches of keys for multi-symbol
 *	  endpoints), each call becomes a request built from the endpoint's
 *	  parameter list, and each answer becomes rows — or failed keys — and,
 *	  for paged endpoints, the call's next request.
 *
 * Pages of one call are sequential (the next is asked when the previous
 * answer is in); different calls run concurrently in the fetch engine.
 * Everything here is driven by the endpoint entry (endpoints.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>
#include <math.h>

#include <jansson.h>

#include "lib/stringinfo.h"
#include "utils/datetime.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "endpoints.h"
#include "fetch.h"
#include "master.h"
#include "options.h"
#include "requests.h"
#include "response.h"

#define KIS_MAX_PAGES		1000	/* pages of one call */
#define KIS_EARLIEST_DATE	"19000101"	/* DATE_1 when no lower bound is given */

/*
 * Without a lower bound on "date", a daily call pages back until KIS runs
 * out of rows, but no further than this many pages: a longer history is an
 * ERROR asking for a lower bound (docs/daily.md).
 */
#define KIS_MAX_UNBOUNDED_PAGES 50

/* One logical request: its keys and where its paging stands */
typedef struct KisCall
{
	const KisEndpoint *ep;
	const KisConfig *config;
	List	   *keys;			/* KisKey *: 1, or up to batch_size */
	KisRange	range;			/* as the query asked */
	int			page_to;		/* end date (julian) of the next page */
	int			page_time;		/* time paging: end of the next page, seconds
								 * of the day in Korea */
	int			day;			/* time paging: the day of the bars (julian) */
	char	   *ctx_fk;			/* cursor paging: keys from the last page */
	char	   *ctx_nk;
	int			pages;			/* answers received so far */
	List	   *held;			/* cursor paging: rows of the earlier pages */
	bool		restarted;		/* cursor paging: started over once already */
} KisCall;

/* YYYYMMDD (exactly 8 digits, a real date) <-> julian day */
static char *
jd_text(int jd)
{
	int			y,
				m,
				d;

	j2date(jd, &y, &m, &d);
	return psprintf("%04d%02d%02d", y, m, d);
}

static bool
text_jd(const char *text, int *jd)
{
	int			y,
				m,
				d,
				ry,
				rm,
				rd;

	if (text == NULL || strspn(text, "0123456789") != 8 || text[8] != '\0')
		return false;
	y = (text[0] - '0') * 1000 + (text[1] - '0') * 100 + (text[2] - '0') * 10 + (text[3] - '0');
	m = (text[4] - '0') * 10 + (text[5] - '0');
	d = (text[6] - '0') * 10 + (text[7] - '0');
	if (m < 1 || m > 12 || d < 1 || d > 31)
		return false;
	*jd = date2j(y, m, d);
	/* 20250231 is no date: it would come back as another day */
	j2date(*jd, &ry, &rm, &rd);
	return ry == y && rm == m && rd == d;
}

/* Today in Korea (UTC+9, no daylight saving), as a julian day */
int
kis_today_kst(void)
{
	TimestampTz kst = GetCurrentTimestamp() + (int64) 9 * SECS_PER_HOUR * USECS_PER_SEC;

	return (int) (kst / USECS_PER_DAY) + POSTGRES_EPOCH_JDATE;
}

/* The time of day in Korea, in seconds */
static int
now_kst_seconds(void)
{
	TimestampTz kst = GetCurrentTimestamp() + (int64) 9 * SECS_PER_HOUR * USECS_PER_SEC;

	return (int) ((kst % USECS_PER_DAY) / USECS_PER_SEC);
}

/* HHMMSS -> seconds of the day, or -1 */
static int
text_seconds(const char *text)
{
	int			h,
				m,
				sec;

	if (text == NULL || strlen(text) != 6 || strspn(text, "0123456789") != 6 ||
		sscanf(text, "%2d%2d%2d", &h, &m, &sec) != 3 || h > 23 || m > 59 || sec > 59)
		return -1;
	return h * 3600 + m * 60 + sec;
}

/* RFC 3986 percent-encoding of a query value */
static void
append_url_encoded(StringInfo buf, const char *value)
{
	static const char hex[] = "0123456789ABCDEF";

	for (const unsigned char *p = (const unsigned char *) value; *p; p++)
	{
		if (isalnum(*p) || *p == '-' || *p == '_' || *p == '.' || *p == '~')
			appendStringInfoChar(buf, (char) *p);
		else
		{
			appendStringInfoChar(buf, '%');
			appendStringInfoChar(buf, hex[*p >> 4]);
			appendStringInfoChar(buf, hex[*p & 0x0F]);
		}
	}
}

static void
append_param(StringInfo buf, const char *name, int n, const char *value)
{
	appendStringInfoChar(buf, strchr(buf->data, '?') ? '&' : '?');
	appendStringInfoString(buf, name);
	if (n > 0)
		appendStringInfo(buf, "%d", n);
	appendStringInfoChar(buf, '=');
	append_url_encoded(buf, value);
}

/* The value of one non-batch parameter for this call */
static const char *
param_value(const KisCall *call, const KisParamDef *p)
{
	const KisConfig *config = call->config;
	const KisKey *key = call->keys ? linitial(call->keys) : NULL;

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
			return call->range.has_from ? jd_text(call->range.from) : KIS_EARLIEST_DATE;
		case KIS_PARAM_DATE_TO:
			return jd_text(call->page_to);
		case KIS_PARAM_DATE_START:
			return jd_text(call->range.has_from ? call->range.from : kis_today_kst());
		case KIS_PARAM_TIME_TO:
			return psprintf("%02d%02d%02d", call->page_time / 3600,
							call->page_time / 60 % 60, call->page_time % 60);
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
		case KIS_PARAM_CTX_FK:
			return call->ctx_fk ? call->ctx_fk : "";
		case KIS_PARAM_CTX_NK:
			return call->ctx_nk ? call->ctx_nk : "";
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
	const char *header = NULL;

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

				append_param(&path, p->name, ++n,
							 p->source == KIS_PARAM_BATCH_MARKET ? key->venue : key->symbol);
			}
		}
		else
			append_param(&path, p->name, 0, param_value(call, p));
	}
	if (call->ep->paging == KIS_PAGING_CURSOR && call->pages > 0)
		header = "tr_cont: N";
	kis_fetch_add(f, path.data, kis_endpoint_tr_id(call->ep, call->config->environment),
				  header,
				  (header == NULL ? KIS_FETCH_SHARED : 0) |
				  (kis_endpoint_private_answers(call->ep) ? KIS_FETCH_PRIVATE : 0) |
				  (kis_endpoint_paging(call->ep) == KIS_PAGING_CURSOR ?
				   KIS_FETCH_MAY_CONTINUE : 0),
				  call);
	pfree(path.data);
}

static KisCall *
new_call(const KisConfig *config, const KisRange *range, int today)
{
	KisCall    *call = palloc0(sizeof(KisCall));

	call->ep = config->endpoint;
	call->config = config;
	call->range = *range;
	call->range.ndates = 0;		/* the IN list stays a local filter */
	call->range.dates = NULL;
	call->page_to = range->has_to ? range->to : today;
	call->page_time = now_kst_seconds();
	return call;
}

/*
 * Pages one call over the range of an IN list takes, at most: bars per
 * calendar day by period (weekdays only; holidays make it fewer).
 */
static double
range_pages(const KisCall *call, int today)
{
	const char *period = call->config->period;
	int			days = Min(call->range.to, today) - call->range.from + 1;
	double		bars;

	if (days <= 0)
		return 1;
	switch (period[0])
	{
		case 'W':
			bars = days / 7.0 + 1;
			break;
		case 'M':
			bars = days / 28.0 + 1;
			break;
		case 'Y':
			bars = days / 365.0 + 1;
			break;
		default:
			bars = days * 5.0 / 7.0 + 2;
			break;
	}
	return Max(1, ceil(bars / call->ep->page_rows));
}

/*
 * "date IN (...)": one call over the range from the first to the last day
 * (the IN list filters its rows), or one call per day when those are fewer
 * requests.  Returns the number of calls queued for key.
 */
static int
start_dated_calls(KisFetcher *f, const KisConfig *config, KisKey *key,
				  const KisRange *range, int today)
{
	KisCall    *call = new_call(config, range, today);
	int			ncalls = 0;

	call->keys = list_make1(key);
	if (range->ndates == 0 || range->ndates >= range_pages(call, today))
	{
		send_call(f, call);
		return 1;
	}
	pfree(call);
	for (int i = 0; i < range->ndates && range->dates[i] <= today; i++)
	{
		KisRange	day = {true, true, range->dates[i], range->dates[i], 0, NULL};

		call = new_call(config, &day, today);
		call->keys = list_make1(key);
		send_call(f, call);
		ncalls++;
	}
	return ncalls;
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
 * Queue the requests of a scan: one call per (symbol, venue) key, or
 * batches of keys where the endpoint takes several, or one call for an
 * account endpoint.  keys is a list of KisKey *.  Returns the number of
 * calls queued (0 when the date range lies after today).
 */
int
kis_requests_start(KisFetcher *f, const KisConfig *config, List *keys,
				   const KisRange *range)
{
	const KisEndpoint *ep = config->endpoint;
	int			today = kis_today_kst();
	int			ncalls = 0;
	KisCall    *call = NULL;
	ListCell   *lc;

	kis_fetch_set_check(f, answer_mismatch);

	/* an open upper bound ends today: a range starting later has no rows */
	if (ep->paging == KIS_PAGING_DATE && !range->has_to && range->has_from &&
		range->from > today)
		return 0;

	/* a calendar starts at its lower bound, else today (docs/new-tables.md) */
	if (ep->paging == KIS_PAGING_CURSOR && ep->has_date && !range->has_from &&
		range->has_to && range->to < today)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_ERROR),
				 errmsg("a scan of endpoint %s before today needs a lower bound on \"date\"",
						ep->name),
				 errdetail("Without a lower bound the calendar starts today."),
				 errhint("Add a lower bound, e.g. WHERE date >= '2025-01-01'.")));

	if (ep->source == KIS_SOURCE_MASTER_FILE)
	{
		/* one download per market: the keys are markets */
		foreach(lc, keys)
		{
			KisKey	   *key = lfirst(lc);

			call = new_call(config, range, today);
			call->keys = list_make1(key);
			kis_fetch_add_file(f, psprintf("%s/%s", config->master_url,
										   kis_master_file(key->venue)),
							   kis_zip_is_whole, call);
			ncalls++;
		}
		return ncalls;
	}

	if (ep->symbol_kind == KIS_SYMBOL_NONE)
	{
		send_call(f, new_call(config, range, today));
		return 1;
	}

	if (ep->paging == KIS_PAGING_DATE)
	{
		Assert(ep->batch_size == 1);
		foreach(lc, keys)
			ncalls += start_dated_calls(f, config, lfirst(lc), range, today);
		return ncalls;
	}

	foreach(lc, keys)
	{
		/*
		 * A batched answer names a row by its symbol only, so one batch holds
		 * a symbol once: the same symbol on another market goes to another.
		 */
		if (call == NULL || list_length(call->keys) >= ep->batch_size ||
			call_has_symbol(call, ((KisKey *) lfirst(lc))->symbol))
		{
			if (call != NULL)
				send_call(f, call);
			call = new_call(config, range, today);
			ncalls++;
		}
		call->keys = lappend(call->keys, lfirst(lc));
	}
	if (call != NULL)
		send_call(f, call);
	return ncalls;
}

static KisRow *
row_for(const KisCall *call, KisKey *key, json_t *row, json_t *extra,
		const char *problem)
{
	KisRow	   *r = palloc(sizeof(KisRow));

	r->ep = call->ep;
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
		return list_make1(row_for(call, NULL, NULL, NULL, problem));
	foreach(lc, call->keys)
		rows = lappend(rows, row_for(call, lfirst(lc), NULL, NULL, problem));
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
	if (ep->batch_size > 1 && ep->row_symbol_field != NULL)
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
			rows = lappend(rows, row_for(call, key, NULL, NULL, "missing from the answer"));
		else if (row_not_listed(ep, found, NULL))
			rows = lappend(rows, row_for(call, key, NULL, NULL, KIS_NOT_LISTED));
		else
			rows = lappend(rows, row_for(call, key, found, NULL, NULL));
	}
	return rows;
}

/* A server that never stops announcing pages must not keep a scan forever */
static void
check_page_count(const KisCall *call)
{
	if (call->pages >= KIS_MAX_PAGES)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_ERROR),
				 errmsg("KIS kept announcing more pages after %d pages of endpoint %s",
						KIS_MAX_PAGES, call->ep->name)));
}

/*
 * Paging back with no lower bound ends where KIS runs out of rows, or
 * here: never a silent prefix of the history
 */
static void
check_unbounded_pages(const KisCall *call)
{
	if (call->pages >= KIS_MAX_UNBOUNDED_PAGES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("the history of symbol \"%s\" is longer than %d rows with no lower bound on \"date\"",
						((KisKey *) linitial(call->keys))->symbol,
						KIS_MAX_UNBOUNDED_PAGES * call->ep->page_rows),
				 errdetail("Without a lower bound kis_fdw reads back to the first row KIS has, at most %d requests per symbol.",
						   KIS_MAX_UNBOUNDED_PAGES),
				 errhint("Add a lower bound, e.g. WHERE date >= '2015-01-01'; with one every row of the range is read.")));
}

/*
 * Rows of a dated page within the asked range, and the call's next page:
 * a full page whose oldest row is still after the lower bound (or with no
 * lower bound at all) continues with the day before that row (see
 * docs/daily.md).  A short page is the last.
 */
static List *
dated_rows(KisFetcher *f, KisCall *call, json_t *member, json_t *extra)
{
	const KisEndpoint *ep = call->ep;
	KisKey	   *key = call->keys ? linitial(call->keys) : NULL;
	List	   *rows = NIL;
	int			oldest = INT_MAX;
	size_t		i;
	json_t	   *elem;

	json_array_foreach(member, i, elem)
	{
		int			jd;

		if (!json_is_object(elem))
			continue;
		if (!text_jd(json_string_value(json_object_get(elem, ep->row_date_field)), &jd))
		{
			rows = lappend(rows, row_for(call, key, NULL, NULL, "a row without a valid date"));
			continue;
		}
		oldest = Min(oldest, jd);
		/* after the page's end: a server that ignored it, or an earlier page's row */
		if ((call->range.has_from && jd < call->range.from) ||
			(call->range.has_to && jd > call->range.to) || jd > call->page_to)
			continue;
		rows = lappend(rows, row_for(call, key, elem, extra, NULL));
	}

	if (json_array_size(member) >= (size_t) ep->page_rows &&
		oldest != INT_MAX && oldest <= call->page_to &&
		(!call->range.has_from || oldest > call->range.from))
	{
		if (!call->range.has_from)
			check_unbounded_pages(call);
		check_page_count(call);
		call->page_to = oldest - 1;
		send_call(f, call);
	}
	return rows;
}

/*
 * Rows of a page of today's bars (time paging), and the call's next page:
 * a full page continues one second before its oldest bar, until the first
 * bar of the day.  The bars are of one day, the newest KIS has: a row of
 * an earlier day (an answer reaching past the open) is dropped and ends
 * the paging, as is a row after the page's end (see docs/new-tables.md).
 */
static List *
timed_rows(KisFetcher *f, KisCall *call, json_t *member, json_t *extra)
{
	const KisEndpoint *ep = call->ep;
	KisKey	   *key = linitial(call->keys);
	List	   *rows = NIL;
	int			oldest = INT_MAX;
	bool		earlier_day = false;
	size_t		i;
	json_t	   *elem;

	/* the first page names the day: its newest date */
	json_array_foreach(member, i, elem)
	{
		int			jd;

		if (call->pages == 1 && json_is_object(elem) &&
			text_jd(json_string_value(json_object_get(elem, ep->row_date_field)), &jd))
			call->day = Max(call->day, jd);
	}
	json_array_foreach(member, i, elem)
	{
		int			jd;
		int			secs;

		if (!json_is_object(elem))
			continue;
		secs = text_seconds(json_string_value(json_object_get(elem, ep->row_time_field)));
		if (!text_jd(json_string_value(json_object_get(elem, ep->row_date_field)), &jd) ||
			secs < 0)
		{
			rows = lappend(rows, row_for(call, key, NULL, NULL, "a row without a valid date and time"));
			continue;
		}
		if (jd != call->day)
		{
			earlier_day = true;
			continue;
		}
		if (secs > call->page_time)
			continue;
		oldest = Min(oldest, secs);
		rows = lappend(rows, row_for(call, key, elem, extra, NULL));
	}

	if (!earlier_day && json_array_size(member) >= (size_t) ep->page_rows &&
		oldest != INT_MAX && oldest > 0)
	{
		check_page_count(call);
		call->page_time = oldest - 1;
		send_call(f, call);
	}
	return rows;
}

/* A row of a dated listing outside the asked range, or past its end */
static bool
row_outside_range(const KisCall *call, json_t *elem, bool *past_end)
{
	int			jd;

	if (call->ep->row_date_field == NULL || !call->ep->has_date)
		return false;
	if (!text_jd(json_string_value(json_object_get(elem, call->ep->row_date_field)), &jd))
		return false;			/* its date column reports it */
	if (call->range.has_to && jd > call->range.to)
		*past_end = true;
	return (call->range.has_from && jd < call->range.from) ||
		(call->range.has_to && jd > call->range.to);
}

/*
 * Cursor paging: continue while KIS says more pages follow.  Only the
 * tr_cont header says so: ctx_area_fk100 stays set on the last page, and a
 * call made with it fails (docs/kis-answers.md).  The rows of a page are held
 * back until the last page is in, so that a listing started over from its
 * first page (restart_listing) never returns a row twice or a mix of two
 * states of the account.  Returns the rows to return now.
 */
static List *
cursor_page(KisFetcher *f, KisCall *call, KisCompletion *c, List *rows,
			bool past_end)
{
	MemoryContext call_cxt = GetMemoryChunkContext(call);
	const char *fk_member = call->ep->ctx_fk_member ? call->ep->ctx_fk_member : "ctx_area_fk100";
	const char *nk_member = call->ep->ctx_nk_member ? call->ep->ctx_nk_member : "ctx_area_nk100";
	const char *fk = json_string_value(json_object_get(c->resp.root, fk_member));
	const char *nk = json_string_value(json_object_get(c->resp.root, nk_member));
	MemoryContext old;
	json_t	   *extra = NULL;
	ListCell   *lc;

	/* a dated listing past the range's end has all the rows it needs */
	if (past_end || (strcmp(c->tr_cont, "M") != 0 && strcmp(c->tr_cont, "F") != 0))
	{
		List	   *all = NIL;

		/* in the answer's context, like the rows of any answer */
		foreach(lc, call->held)
			all = lappend(all, lfirst(lc));
		foreach(lc, rows)
			all = lappend(all, lfirst(lc));
		call->held = NIL;
		return all;
	}

	/* the answer goes away when its rows are returned: keep copies */
	old = MemoryContextSwitchTo(call_cxt);
	foreach(lc, rows)
	{
		KisRow	   *copy = palloc(sizeof(KisRow));

		*copy = *(KisRow *) lfirst(lc);
		if (copy->extra != NULL && extra == NULL)
			extra = kis_json_copy(copy->extra);
		copy->row = kis_json_copy(copy->row);
		if (copy->row == NULL || (copy->extra != NULL && extra == NULL))
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory"),
					 errdetail("Failed to keep a page of endpoint %s.", call->ep->name)));
		copy->extra = extra;
		call->held = lappend(call->held, copy);
	}
	MemoryContextSwitchTo(old);

	check_page_count(call);
	if (call->ep->has_date && !call->range.has_to &&
		call->pages >= KIS_MAX_UNBOUNDED_PAGES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("KIS kept announcing more pages after %d pages of endpoint %s with no upper bound on \"date\"",
						call->pages, call->ep->name),
				 errhint("Add an upper bound, e.g. WHERE date < current_date + 60.")));
	call->ctx_fk = MemoryContextStrdup(call_cxt, fk ? fk : "");
	call->ctx_nk = MemoryContextStrdup(call_cxt, nk ? nk : "");
	send_call(f, call);
	return NIL;
}

/* Does KIS's answer say that the listing changed under it? */
static bool
is_restart_code(const KisCall *call, const KisResponse *resp)
{
	if (call->ep->paging != KIS_PAGING_CURSOR || resp->msg_cd == NULL)
		return false;
	for (const char *const *code = call->ep->restart_codes; code && *code; code++)
	{
		if (strcmp(*code, resp->msg_cd) == 0)
			return true;
	}
	return false;
}

/*
 * A cursor listing that KIS says changed under it (one of the endpoint's
 * restart codes: the account moved between two pages) starts over from its
 * first page, once, dropping the rows held so far.  Returns false when this
 * answer is a failure to report.
 */
static bool
restart_listing(KisFetcher *f, KisCall *call, const KisResponse *resp)
{
	if (!is_restart_code(call, resp))
		return false;
	call->held = NIL;
	if (call->restarted)
		return false;
	call->restarted = true;
	call->pages = 0;
	call->ctx_fk = NULL;
	call->ctx_nk = NULL;
	send_call(f, call);
	return true;
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
		rows = lappend(rows, row_for(call, key, elem, NULL, NULL));
	foreach(lc, line_problems)
		rows = lappend(rows, row_for(call, key, NULL, NULL,
									 psprintf("the master file of %s, %s", key->venue,
											  (char *) lfirst(lc))));
	return rows;
}

/*
 * The rows of one answer (a list of KisRow *, allocated in the answer's
 * memory context; failed keys have problem set), and queue the call's next
 * page if there is one.
 */
List *
kis_requests_answer(KisFetcher *f, KisCompletion *c)
{
	KisCall    *call = (KisCall *) c->arg;
	const KisEndpoint *ep = call->ep;
	MemoryContext old = MemoryContextSwitchTo(c->cxt);
	List	   *rows = NIL;
	json_t	   *member;
	json_t	   *extra;

	call->pages++;
	if (ep->source == KIS_SOURCE_MASTER_FILE)
	{
		rows = master_answer(call, c);
		MemoryContextSwitchTo(old);
		return rows;
	}
	if (c->resp.outcome != KIS_OUTCOME_OK)
	{
		if (!restart_listing(f, call, &c->resp))
		{
			rows = fail_all(call, kis_response_summary(&c->resp));
			if (is_restart_code(call, &c->resp))
				((KisRow *) linitial(rows))->hint =
					"The listing was started over once and KIS said so again. Run the query again later; KIS is reported to answer so on every retry for an account holding exactly one full page (50) of positions.";
		}
		MemoryContextSwitchTo(old);
		return rows;
	}

	member = json_object_get(c->resp.root, ep->rows_member);
	if (ep->rows_shape == KIS_ROWS_ANY && json_is_object(member))
	{
		json_t	   *array = kis_json_new_array();

		json_array_append(array, member);
		member = array;
	}
	extra = member_object(c->resp.root, ep->extra_member);

	if (ep->rows_shape == KIS_ROWS_OBJECT ? !json_is_object(member) : !json_is_array(member))
		rows = fail_all(call, psprintf("the answer has no \"%s\" %s", ep->rows_member,
									   ep->rows_shape == KIS_ROWS_OBJECT ? "object" : "array"));
	else if (ep->batch_size > 1)
		rows = batched_rows(call, member);
	else if (ep->rows_shape == KIS_ROWS_OBJECT)
	{
		KisKey	   *key = call->keys ? linitial(call->keys) : NULL;

		rows = list_make1(row_not_listed(ep, member, extra) ?
						  row_for(call, key, NULL, NULL, KIS_NOT_LISTED) :
						  row_for(call, key, member, extra, NULL));
	}
	else if (ep->paging == KIS_PAGING_DATE)
		rows = dated_rows(f, call, member, extra);
	else if (ep->paging == KIS_PAGING_TIME)
		rows = timed_rows(f, call, member, extra);
	else
	{
		size_t		i;
		json_t	   *elem;
		bool		past_end = false;

		json_array_foreach(member, i, elem)
		{
			if (json_is_object(elem) && !row_outside_range(call, elem, &past_end))
				rows = lappend(rows, row_for(call, NULL, elem, extra, NULL));
		}
		if (ep->paging == KIS_PAGING_CURSOR)
			rows = cursor_page(f, call, c, rows, past_end);
	}
	MemoryContextSwitchTo(old);
	return rows;
}
