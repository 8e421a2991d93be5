/*-------------------------------------------------------------------------
 *
 * paging.c
 *	  How a call goes on past one answer, one table of operations per
 *	  paging kind:
 *
 *	  none    one answer is the whole listing
 *	  date    ask again with the end date before the oldest row of a full
 *	          page (daily bars; docs/daily.md)
 *	  time    ask again one second before the oldest bar of a full page
 *	          (today's minute bars; docs/new-tables.md)
 *	  cursor  send back the answer's continuation keys (ctx_area_*) with
 *	          tr_cont N while KIS's tr_cont header says more pages follow;
 *	          rows are held until the last page (docs/kis-answers.md)
 *
 * Each kind reads a page's rows and returns the next page's request in
 * the call's KisPage; it sends nothing.  requests.c builds and sends the
 * request (kis_page_param gives the paging parameters' values).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>
#include <math.h>

#include <jansson.h>

#include "utils/datetime.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "endpoints.h"
#include "paging.h"
#include "requests.h"
#include "response.h"

#define KIS_MAX_PAGES		1000	/* pages of one call */

/*
 * Without a lower bound on "date", a daily call pages back until KIS runs
 * out of rows, but no further than this many pages: a longer history is an
 * ERROR asking for a lower bound (docs/daily.md).  A calendar without an
 * upper bound stops after as many.
 */
#define KIS_MAX_UNBOUNDED_PAGES 50

/* YYYYMMDD (exactly 8 digits, a real date) <-> julian day */
char *
kis_date_text(int jd)
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

/* The date of a row (its endpoint's row_date_field), or false */
static bool
row_jd(const KisEndpoint *ep, json_t *elem, int *jd)
{
	return text_jd(json_string_value(json_object_get(elem, ep->row_date_field)), jd);
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

/*
 * The first page's request: it ends at the range's upper bound (else
 * today) and now.  page->cxt is the caller's.
 */
void
kis_page_begin(KisPage *page, const KisRange *range, int today)
{
	page->to = range->has_to ? range->to : today;
	page->time = now_kst_seconds();
}

/* The value of a paging parameter for the next request, or NULL */
const char *
kis_page_param(const KisPage *page, KisParamSource source)
{
	switch (source)
	{
		case KIS_PARAM_DATE_TO:
			return kis_date_text(page->to);
		case KIS_PARAM_TIME_TO:
			return psprintf("%02d%02d%02d", page->time / 3600,
							page->time / 60 % 60, page->time % 60);
		case KIS_PARAM_CTX_FK:
			return page->ctx_fk ? page->ctx_fk : "";
		case KIS_PARAM_CTX_NK:
			return page->ctx_nk ? page->ctx_nk : "";
		default:
			return NULL;
	}
}

/* A server that never stops announcing pages must not keep a scan forever */
static void
check_page_count(const KisPage *page, const KisEndpoint *ep)
{
	if (page->pages >= KIS_MAX_PAGES)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_ERROR),
				 errmsg("KIS kept announcing more pages after %d pages of endpoint %s",
						KIS_MAX_PAGES, ep->name)));
}

/* ---- what most kinds do ---- */

static bool
any_range(const KisEndpoint *ep, const KisRange *range, int today)
{
	return true;
}

/* One call per key over the whole range */
static List *
one_range(const KisEndpoint *ep, const char *period, const KisRange *range,
		  int today)
{
	return list_make1((KisRange *) range);
}

static bool
no_restart(KisPage *page, const KisEndpoint *ep, const KisResponse *resp,
		   const char **hint)
{
	return false;
}

static const char *
no_header(const KisPage *page)
{
	return NULL;
}

/* A row of a dated listing outside the asked range, or past its end */
static bool
row_outside_range(const KisPageAnswer *a, json_t *elem, bool *past_end)
{
	int			jd;

	if (a->ep->row_date_field == NULL || !kis_endpoint_has_key(a->ep, KIS_KEY_DATE))
		return false;
	if (!row_jd(a->ep, elem, &jd))
		return false;			/* its date column reports it */
	if (a->range->has_to && jd > a->range->to)
		*past_end = true;
	return (a->range->has_from && jd < a->range->from) ||
		(a->range->has_to && jd > a->range->to);
}

/*
 * The objects of a listing within the asked range, each a row of the
 * call's key (none for an account's or a calendar's listing)
 */
static List *
listing_rows(const KisPageAnswer *a, bool *past_end)
{
	List	   *rows = NIL;
	size_t		i;
	json_t	   *elem;

	json_array_foreach(a->member, i, elem)
	{
		if (json_is_object(elem) && !row_outside_range(a, elem, past_end))
			rows = lappend(rows, kis_row_new(a->ep, a->key, elem, a->extra, NULL));
		else if (!json_is_object(elem) && kis_endpoint_is_declared(a->ep))
			rows = lappend(rows, kis_row_new(a->ep, a->key, NULL, NULL,
											 psprintf("TR %s sent a row that is not an object",
													  a->ep->name)));
	}
	return rows;
}

/* ---- none: one answer is all ---- */

static bool
none_read(KisPage *page, const KisPageAnswer *a, List **rows)
{
	bool		past_end = false;

	*rows = listing_rows(a, &past_end);
	return false;
}

/* ---- date: back by date (docs/daily.md) ---- */

/* an open upper bound ends today: a range starting later has no rows */
static bool
date_range_ok(const KisEndpoint *ep, const KisRange *range, int today)
{
	return !(!range->has_to && range->has_from && range->from > today);
}

/*
 * Pages one call over the range of an IN list takes, at most: bars per
 * calendar day by period (weekdays only; holidays make it fewer).
 */
static double
range_pages(const KisEndpoint *ep, const char *period, const KisRange *range,
			int today)
{
	int			days = Min(range->to, today) - range->from + 1;
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
	return Max(1, ceil(bars / ep->page_rows));
}

/*
 * "date IN (...)": one call over the range from the first to the last day
 * (the IN list filters its rows), or one call per day up to today when
 * those are fewer requests.
 */
static List *
date_ranges(const KisEndpoint *ep, const char *period, const KisRange *range,
			int today)
{
	List	   *ranges = NIL;

	if (range->ndates == 0 || range->ndates >= range_pages(ep, period, range, today))
		return list_make1((KisRange *) range);
	for (int i = 0; i < range->ndates && range->dates[i] <= today; i++)
	{
		KisRange   *day = palloc0(sizeof(KisRange));

		day->has_from = day->has_to = true;
		day->from = day->to = range->dates[i];
		ranges = lappend(ranges, day);
	}
	return ranges;
}

/*
 * Paging back with no lower bound ends where KIS runs out of rows, or
 * here: never a silent prefix of the history
 */
static void
check_unbounded_pages(const KisPage *page, const KisPageAnswer *a)
{
	if (page->pages >= KIS_MAX_UNBOUNDED_PAGES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("the history of %s \"%s\" is longer than %d %s with no lower bound on \"%s\"",
						kis_endpoint_key_column(a->ep, KIS_KEY_SYMBOL), a->key->symbol,
						KIS_MAX_UNBOUNDED_PAGES * Max(a->ep->page_rows, 1),
						a->ep->page_rows > 1 ? "rows" : "pages",
						kis_endpoint_key_column(a->ep, KIS_KEY_DATE)),
				 errdetail("Without a lower bound kis_fdw reads back to the first row KIS has, at most %d requests per key.",
						   KIS_MAX_UNBOUNDED_PAGES),
				 errhint("Add a lower bound, e.g. WHERE date >= '2015-01-01'; with one every row of the range is read.")));
}

/*
 * Rows of a dated page within the asked range, and the next page: a full
 * page whose oldest row is still after the lower bound (or with no lower
 * bound at all) goes on with the day before that row.  A short page is
 * the last.
 */
static bool
date_read(KisPage *page, const KisPageAnswer *a, List **rows)
{
	const KisRange *range = a->range;
	int			oldest = INT_MAX;
	size_t		i;
	json_t	   *elem;

	*rows = NIL;
	json_array_foreach(a->member, i, elem)
	{
		int			jd;

		if (!json_is_object(elem))
			continue;
		if (!row_jd(a->ep, elem, &jd))
		{
			*rows = lappend(*rows, kis_row_new(a->ep, a->key, NULL, NULL,
											   "a row without a valid date"));
			continue;
		}
		oldest = Min(oldest, jd);
		/* after the page's end: a server that ignored it, or an earlier page's row */
		if ((range->has_from && jd < range->from) ||
			(range->has_to && jd > range->to) || jd > page->to)
			continue;
		*rows = lappend(*rows, kis_row_new(a->ep, a->key, elem, a->extra, NULL));
	}

	if (json_array_size(a->member) >= (size_t) a->ep->page_rows &&
		oldest != INT_MAX && oldest <= page->to &&
		(!range->has_from || oldest > range->from))
	{
		if (!range->has_from)
			check_unbounded_pages(page, a);
		check_page_count(page, a->ep);
		page->to = oldest - 1;
		return true;
	}
	return false;
}

/* ---- time: today's bars, back by time (docs/new-tables.md) ---- */

/*
 * Rows of a page of today's bars, and the next page: a full page goes on
 * one second before its oldest bar, until the first bar of the day.  The
 * bars are of one day, the newest KIS has: a row of an earlier day (an
 * answer reaching past the open) is dropped and ends the paging, as is a
 * row after the page's end.
 */
static bool
time_read(KisPage *page, const KisPageAnswer *a, List **rows)
{
	const KisEndpoint *ep = a->ep;
	int			oldest = INT_MAX;
	bool		earlier_day = false;
	size_t		i;
	json_t	   *elem;

	/* the first page names the day: its newest date */
	json_array_foreach(a->member, i, elem)
	{
		int			jd;

		if (page->pages == 1 && json_is_object(elem) && row_jd(ep, elem, &jd))
			page->day = Max(page->day, jd);
	}
	*rows = NIL;
	json_array_foreach(a->member, i, elem)
	{
		int			jd;
		int			secs;

		if (!json_is_object(elem))
			continue;
		secs = text_seconds(json_string_value(json_object_get(elem, ep->row_time_field)));
		if (!row_jd(ep, elem, &jd) || secs < 0)
		{
			*rows = lappend(*rows, kis_row_new(ep, a->key, NULL, NULL,
											   "a row without a valid date and time"));
			continue;
		}
		if (jd != page->day)
		{
			earlier_day = true;
			continue;
		}
		if (secs > page->time)
			continue;
		oldest = Min(oldest, secs);
		*rows = lappend(*rows, kis_row_new(ep, a->key, elem, a->extra, NULL));
	}

	if (!earlier_day && json_array_size(a->member) >= (size_t) ep->page_rows &&
		oldest != INT_MAX && oldest > 0)
	{
		check_page_count(page, ep);
		page->time = oldest - 1;
		return true;
	}
	return false;
}

/* ---- cursor: tr_cont and continuation keys (docs/kis-answers.md) ---- */

/* a calendar starts at its lower bound, else today (docs/new-tables.md) */
static bool
cursor_range_ok(const KisEndpoint *ep, const KisRange *range, int today)
{
	if (kis_endpoint_has_key(ep, KIS_KEY_DATE) && !range->has_from &&
		range->has_to && range->to < today)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_ERROR),
				 errmsg("a scan of endpoint %s before today needs a lower bound on \"date\"",
						ep->name),
				 errdetail("Without a lower bound the calendar starts today."),
				 errhint("Add a lower bound, e.g. WHERE date >= '2025-01-01'.")));
	return true;
}

/*
 * Continue while KIS says more pages follow.  Only the tr_cont header says
 * so: ctx_area_fk100 stays set on the last page, and a call made with it
 * fails.  The rows of a page are held back until the last page is in, so
 * that a listing started over from its first page (cursor_failed) never
 * returns a row twice or a mix of two states of the account.
 */
static bool
cursor_read(KisPage *page, const KisPageAnswer *a, List **rows)
{
	const KisEndpoint *ep = a->ep;
	const KisCompletion *c = a->completion;
	json_t	   *root = c->resp.root;
	const char *fk = json_string_value(json_object_get(root, kis_endpoint_ctx_fk_member(ep)));
	const char *nk = json_string_value(json_object_get(root, kis_endpoint_ctx_nk_member(ep)));
	bool		past_end = false;
	List	   *page_rows = listing_rows(a, &past_end);
	MemoryContext old;
	json_t	   *extra = NULL;
	ListCell   *lc;

	/* a dated listing past the range's end has all the rows it needs */
	if (past_end || (strcmp(c->tr_cont, "M") != 0 && strcmp(c->tr_cont, "F") != 0))
	{
		List	   *all = NIL;

		/* in the answer's context, like the rows of any answer */
		foreach(lc, page->held)
			all = lappend(all, lfirst(lc));
		foreach(lc, page_rows)
			all = lappend(all, lfirst(lc));
		page->held = NIL;
		*rows = all;
		return false;
	}

	/* the answer goes away when its rows are returned: keep copies */
	old = MemoryContextSwitchTo(page->cxt);
	foreach(lc, page_rows)
	{
		KisRow	   *copy = palloc(sizeof(KisRow));

		*copy = *(KisRow *) lfirst(lc);
		if (copy->row == NULL)
		{
			/* a failed row: what went wrong, no document */
			copy->problem = copy->problem ? pstrdup(copy->problem) : NULL;
			copy->hint = copy->hint ? pstrdup(copy->hint) : NULL;
			page->held = lappend(page->held, copy);
			continue;
		}
		if (copy->extra != NULL && extra == NULL)
			extra = kis_json_copy(copy->extra);
		copy->row = kis_json_copy(copy->row);
		if (copy->row == NULL || (copy->extra != NULL && extra == NULL))
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory"),
					 errdetail("Failed to keep a page of endpoint %s.", ep->name)));
		copy->extra = extra;
		page->held = lappend(page->held, copy);
	}
	MemoryContextSwitchTo(old);

	check_page_count(page, ep);
	if (kis_endpoint_has_key(ep, KIS_KEY_DATE) && !a->range->has_to &&
		page->pages >= KIS_MAX_UNBOUNDED_PAGES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("KIS kept announcing more pages after %d pages of endpoint %s with no upper bound on \"date\"",
						page->pages, ep->name),
				 errhint("Add an upper bound, e.g. WHERE date < current_date + 60.")));
	page->ctx_fk = MemoryContextStrdup(page->cxt, fk ? fk : "");
	page->ctx_nk = MemoryContextStrdup(page->cxt, nk ? nk : "");
	*rows = NIL;
	return true;
}

/* Does KIS's answer say that the listing changed under it? */
static bool
is_restart_code(const KisEndpoint *ep, const KisResponse *resp)
{
	if (resp->msg_cd == NULL)
		return false;
	for (const char *const *code = ep->restart_codes; code && *code; code++)
	{
		if (strcmp(*code, resp->msg_cd) == 0)
			return true;
	}
	return false;
}

/*
 * A listing that KIS says changed under it (one of the endpoint's restart
 * codes: the account moved between two pages) starts over from its first
 * page, once, dropping the rows held so far.  A second time it fails,
 * with the endpoint's hint.
 */
static bool
cursor_failed(KisPage *page, const KisEndpoint *ep, const KisResponse *resp,
			  const char **hint)
{
	if (!is_restart_code(ep, resp))
		return false;
	page->held = NIL;
	if (page->restarted)
	{
		*hint = ep->restart_hint;
		return false;
	}
	page->restarted = true;
	page->pages = 0;
	page->ctx_fk = NULL;
	page->ctx_nk = NULL;
	return true;
}

/* Every page after the first says it continues */
static const char *
cursor_header(const KisPage *page)
{
	return page->pages > 0 ? "tr_cont: N" : NULL;
}

static const KisPagingOps paging_none = {
	.range_ok = any_range,
	.ranges = one_range,
	.read = none_read,
	.failed = no_restart,
	.header = no_header,
};
static const KisPagingOps paging_date = {
	.range_ok = date_range_ok,
	.ranges = date_ranges,
	.read = date_read,
	.failed = no_restart,
	.header = no_header,
};
static const KisPagingOps paging_cursor = {
	.range_ok = cursor_range_ok,
	.ranges = one_range,
	.read = cursor_read,
	.failed = cursor_failed,
	.header = cursor_header,
};
static const KisPagingOps paging_time = {
	.range_ok = any_range,
	.ranges = one_range,
	.read = time_read,
	.failed = no_restart,
	.header = no_header,
};

/* The operations of a paging kind */
const KisPagingOps *
kis_paging_ops(KisPaging paging)
{
	switch (paging)
	{
		case KIS_PAGING_NONE:
			return &paging_none;
		case KIS_PAGING_DATE:
			return &paging_date;
		case KIS_PAGING_CURSOR:
			return &paging_cursor;
		case KIS_PAGING_TIME:
			return &paging_time;
	}
	return &paging_none;
}
