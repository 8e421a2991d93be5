/*-------------------------------------------------------------------------
 *
 * scan.c
 *	  The executor side of a kis foreign scan: evaluate the pushed-down
 *	  key and date conditions when the scan starts, hand the keys to a run
 *	  (run.c), return its tuples, and show the work in EXPLAIN.
 *
 * Memory of a scan:
 *	  es_query_cxt
 *	    "kis_fdw scan"  config, key expressions, and the runner (run.c),
 *	                    whose run context a rescan drops
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "commands/explain.h"
#include "executor/execAsync.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/execnodes.h"
#include "nodes/nodeFuncs.h"
#include "storage/latch.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "kis_fdw.h"

/* Executor state, in node->fdw_state */
typedef struct KisScanState
{
	MemoryContext scan_cxt;
	KisConfig	config;
	Relation	rel;

	/* from the plan */
	int			qual_pos[KIS_NUM_LIST_KEYS];	/* index into key_exprs, or -1 */
	bool		qual_is_array[KIS_NUM_LIST_KEYS];
	int			planned[KIS_NUM_LIST_KEYS]; /* values known at plan time, or -1 */
	List	   *date_quals;		/* (op, index into key_exprs, given in the query) */
	List	   *key_exprs;		/* ExprState per pushed-down qual */

	KisRunner  *runner;			/* NULL under plain EXPLAIN */

	bool		async;			/* an async child of an Append: never wait */
	KisPoll		polled;			/* what the last async step found */
} KisScanState;

void
kisBeginForeignScan(ForeignScanState *node, int eflags)
{
	ForeignScan *fsplan = (ForeignScan *) node->ss.ps.plan;
	EState	   *estate = node->ss.ps.state;
	KisScanState *st = palloc0(sizeof(KisScanState));
	List	   *keys = (List *) linitial(fsplan->fdw_private);
	List	   *needed = (List *) lthird(fsplan->fdw_private);
	MemoryContext old;
	Oid			userid;

	node->fdw_state = st;
	st->rel = node->ss.ss_currentRelation;
	st->async = node->ss.ps.async_capable;
	for (int k = 0; k < KIS_NUM_LIST_KEYS; k++)
	{
		st->qual_pos[k] = list_nth_int(keys, k * 3);
		st->qual_is_array[k] = list_nth_int(keys, k * 3 + 1);
		st->planned[k] = list_nth_int(keys, k * 3 + 2);
	}
	st->date_quals = (List *) lsecond(fsplan->fdw_private);

	st->scan_cxt = AllocSetContextCreate(estate->es_query_cxt, "kis_fdw scan",
										 ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(st->scan_cxt);
	kis_config_for_table(RelationGetRelid(st->rel), &st->config);
	MemoryContextSwitchTo(old);

	/* plain EXPLAIN: no credentials needed, nothing sent */
	if (eflags & EXEC_FLAG_EXPLAIN_ONLY)
		return;

	userid = kis_scan_check_as_user(fsplan, estate);
	if (!OidIsValid(userid))
		userid = GetUserId();

	old = MemoryContextSwitchTo(st->scan_cxt);
	kis_config_add_credentials(&st->config, userid);
	MemoryContextSwitchTo(old);

	st->runner = kis_runner_create(st->rel, &st->config, needed, st->scan_cxt);
	st->key_exprs = ExecInitExprList(fsplan->fdw_exprs, (PlanState *) node);
}

/* Text of one key value, as the user wrote it (char(n) padding removed) */
static char *
key_text(Datum value, Oid type)
{
	char	   *s = TextDatumGetCString(value);

	if (type == BPCHAROID)
	{
		int			len = strlen(s);

		while (len > 0 && s[len - 1] == ' ')
			s[--len] = '\0';
	}
	return s;
}

static Datum
eval_key_expr(ForeignScanState *node, KisScanState *st, int pos, bool *isnull, Oid *type)
{
	ExprState  *es = (ExprState *) list_nth(st->key_exprs, pos);

	*type = exprType((Node *) es->expr);
	return ExecEvalExprSwitchContext(es, node->ss.ps.ps_ExprContext, isnull);
}

/*
 * The distinct values of one list key, from its pushed-down condition, or
 * the table's default when there is none.  NULLs match nothing.
 */
static List *
key_values(ForeignScanState *node, KisScanState *st, KisKeyColumn key,
		   const char *default_value)
{
	Datum		d;
	bool		isnull;
	Oid			type;

	if (st->qual_pos[key] < 0)
		return default_value ? list_make1(pstrdup(default_value)) : NIL;

	d = eval_key_expr(node, st, st->qual_pos[key], &isnull, &type);
	if (isnull)
		return NIL;
	return kis_key_strings(d, type, st->qual_is_array[key]);
}

/*
 * The distinct texts of a key value of type type, or of the elements of
 * an array value; NULL elements match nothing.
 */
List *
kis_key_strings(Datum d, Oid type, bool is_array)
{
	List	   *values = NIL;

	if (!is_array)
		values = list_make1(key_text(d, type));
	else
	{
		ArrayType  *arr = DatumGetArrayTypeP(d);
		Oid			elemtype = ARR_ELEMTYPE(arr);
		int16		typlen;
		bool		typbyval;
		char		typalign;
		Datum	   *elems;
		bool	   *nulls;
		int			n;

		get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
		deconstruct_array(arr, elemtype, typlen, typbyval, typalign, &elems, &nulls, &n);
		for (int i = 0; i < n; i++)
		{
			if (!nulls[i])
				values = lappend(values, key_text(elems[i], elemtype));
		}
	}
	return kis_sort_unique_strings(values);
}

static int
compare_ints(const void *a, const void *b)
{
	int			x = *(const int *) a;
	int			y = *(const int *) b;

	return (x > y) - (x < y);
}

/*
 * The days of a "date IN (...)" array, sorted and without repeats, kept
 * only if also in the previous set (several IN conditions must all hold).
 * NULL and infinite elements match no row.  Returns how many are left.
 */
static int
date_set(Datum value, int **dates, int ndates, bool have_set)
{
	ArrayType  *arr = DatumGetArrayTypeP(value);
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int		   *set;
	int			nset = 0;
	int			kept = 0;

	deconstruct_array(arr, DATEOID, sizeof(DateADT), true, TYPALIGN_INT,
					  &elems, &nulls, &n);
	set = palloc(sizeof(int) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		if (!nulls[i] && !DATE_NOT_FINITE(DatumGetDateADT(elems[i])))
			set[nset++] = DatumGetDateADT(elems[i]) + POSTGRES_EPOCH_JDATE;
	}
	qsort(set, nset, sizeof(int), compare_ints);
	for (int i = 0; i < nset; i++)
	{
		if (kept > 0 && set[kept - 1] == set[i])
			continue;
		if (have_set && bsearch(&set[i], *dates, ndates, sizeof(int), compare_ints) == NULL)
			continue;
		set[kept++] = set[i];
	}
	*dates = set;
	return kept;
}

/*
 * The date range of the date conditions: each one narrows it.  Returns
 * false when no row can match: a comparison with NULL, or bounds that
 * cross.  Crossing bounds given in the query (constants, parameters) are
 * a mistake worth an ERROR; bounds that come from other rows (a join, a
 * correlated sub-select) just match nothing, as in any SQL.
 * A timestamp or timestamptz value bounds by its day, from outside (its
 * condition is also a local filter).  "date IN (...)" gives a set of days
 * (range->dates); bounds given elsewhere that exclude every one of them
 * just match nothing.
 */
static bool
date_range(ForeignScanState *node, KisScanState *st, KisRange *range)
{
	bool		all_given = true;
	bool		have_set = false;
	int		   *dates = NULL;
	int			ndates = 0;
	KisRange	bound;			/* the partition bound's */
	ListCell   *lc;

	memset(range, 0, sizeof(KisRange));
	memset(&bound, 0, sizeof(KisRange));
	for (lc = list_head(st->date_quals); lc != NULL; lc = lnext(st->date_quals, lc))
	{
		KisQualOp	op = lfirst_int(lc);
		int			pos;
		bool		isnull;
		Oid			type;
		Datum		value;
		DateADT		d;
		int			jd;
		KisRange   *r = range;

		lc = lnext(st->date_quals, lc);
		pos = lfirst_int(lc);
		lc = lnext(st->date_quals, lc);
		if (lfirst_int(lc) == KIS_DATE_PARTITION_BOUND)
			r = &bound;
		else
			all_given &= lfirst_int(lc);

		value = eval_key_expr(node, st, pos, &isnull, &type);
		if (isnull)
			return false;
		if (op == KIS_OP_IN)
		{
			ndates = date_set(value, &dates, ndates, have_set);
			have_set = true;
			continue;
		}
		if (type == TIMESTAMPOID || type == TIMESTAMPTZOID)
		{
			d = DatumGetDateADT(DirectFunctionCall1(type == TIMESTAMPOID ? timestamp_date :
													timestamptz_date, value));
			if (op == KIS_OP_GT)
				op = KIS_OP_GE;
			else if (op == KIS_OP_LT)
				op = KIS_OP_LE;
		}
		else
			d = DatumGetDateADT(value);
		if (DATE_NOT_FINITE(d))
		{
			/* -infinity as a lower bound, infinity as an upper: no bound */
			if ((DATE_IS_NOBEGIN(d) && (op == KIS_OP_GT || op == KIS_OP_GE)) ||
				(DATE_IS_NOEND(d) && (op == KIS_OP_LT || op == KIS_OP_LE)))
				continue;
			return false;
		}
		jd = d + POSTGRES_EPOCH_JDATE;
		if (op == KIS_OP_GT)
			jd++;
		else if (op == KIS_OP_LT)
			jd--;
		if (op == KIS_OP_EQ || op == KIS_OP_GT || op == KIS_OP_GE)
		{
			r->from = r->has_from ? Max(r->from, jd) : jd;
			r->has_from = true;
		}
		if (op == KIS_OP_EQ || op == KIS_OP_LT || op == KIS_OP_LE)
		{
			r->to = r->has_to ? Min(r->to, jd) : jd;
			r->has_to = true;
		}
	}
	if (range->has_from && range->has_to && range->from > range->to)
	{
		if (!all_given)
			return false;
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the date range of foreign table \"%s\" is empty: from %s to %s",
						RelationGetRelationName(st->rel),
						DatumGetCString(DirectFunctionCall1(date_out, DateADTGetDatum(range->from - POSTGRES_EPOCH_JDATE))),
						DatumGetCString(DirectFunctionCall1(date_out, DateADTGetDatum(range->to - POSTGRES_EPOCH_JDATE)))),
				 errhint("Check the order of the bounds, e.g. date BETWEEN '2025-01-01' AND '2025-06-30'.")));
	}

	/* a partition reads only the dates of its bound */
	if (bound.has_from)
	{
		range->from = range->has_from ? Max(range->from, bound.from) : bound.from;
		range->has_from = true;
	}
	if (bound.has_to)
	{
		range->to = range->has_to ? Min(range->to, bound.to) : bound.to;
		range->has_to = true;
	}
	if (range->has_from && range->has_to && range->from > range->to)
		return false;

	/* the days of IN lists within the range; the range hugs them */
	if (have_set)
	{
		int			kept = 0;

		for (int i = 0; i < ndates; i++)
		{
			if ((!range->has_from || dates[i] >= range->from) &&
				(!range->has_to || dates[i] <= range->to))
				dates[kept++] = dates[i];
		}
		if (kept == 0)
			return false;
		range->has_from = range->has_to = true;
		range->from = dates[0];
		range->to = dates[kept - 1];
		range->ndates = kept;
		range->dates = dates;
	}
	return true;
}

/* Evaluate the keys and start the run that fetches them */
static void
start_run(ForeignScanState *node, KisScanState *st)
{
	const KisEndpoint *ep = st->config.endpoint;
	KisKeyColumn venue_key = ep->has_exchange ? KIS_KEY_EXCHANGE : KIS_KEY_MARKET;
	List	   *symbols = NIL;
	List	   *venues = NIL;
	KisRange	range;
	bool		any;

	any = date_range(node, st, &range);
	if (ep->symbol_kind != KIS_SYMBOL_NONE)
	{
		symbols = key_values(node, st, KIS_KEY_SYMBOL, NULL);
		venues = key_values(node, st, venue_key,
							ep->has_exchange ? st->config.exchange : st->config.market);
	}
	kis_runner_start(st->runner, symbols, venues, &range, any);
}

TupleTableSlot *
kisIterateForeignScan(ForeignScanState *node)
{
	KisScanState *st = (KisScanState *) node->fdw_state;
	TupleTableSlot *slot = node->ss.ss_ScanTupleSlot;

	if (!kis_runner_started(st->runner))
		start_run(node, st);
	if (st->async)
		st->polled = kis_runner_poll(st->runner, slot);
	else
		kis_runner_next(st->runner, slot);
	return slot;
}

/*
 * Asynchronous execution, as a child of an Append: the Append asks for a
 * tuple (Request), and while none is ready waits on the descriptor the
 * scan gives it (ConfigureWait) along with its other children's, then
 * calls the scan back (Notify).  A tuple goes through the node's ExecScan,
 * so local conditions and projection apply as in a synchronous scan; our
 * Iterate never waits in this mode and leaves in st->polled whether an
 * empty slot means "not yet" or "no more".
 */
static void
async_produce(AsyncRequest *areq)
{
	ForeignScanState *node = (ForeignScanState *) areq->requestee;
	KisScanState *st = (KisScanState *) node->fdw_state;
	TupleTableSlot *result;

	/* ExecAsyncRequest and ExecAsyncNotify do the node's instrumentation */
	st->polled = KIS_POLL_END;
	result = node->ss.ps.ExecProcNodeReal((PlanState *) node);
	if (!TupIsNull(result))
		ExecAsyncRequestDone(areq, result);
	else if (st->polled == KIS_POLL_WAIT)
		ExecAsyncRequestPending(areq);
	else
		ExecAsyncRequestDone(areq, NULL);
}

void
kisForeignAsyncRequest(AsyncRequest *areq)
{
	async_produce(areq);
}

void
kisForeignAsyncConfigureWait(AsyncRequest *areq)
{
	ForeignScanState *node = (ForeignScanState *) areq->requestee;
	KisScanState *st = (KisScanState *) node->fdw_state;
	AppendState *requestor = (AppendState *) areq->requestor;

	AddWaitEventToSet(requestor->as_eventset, WL_SOCKET_READABLE,
					  kis_runner_wait_fd(st->runner), NULL, areq);
}

void
kisForeignAsyncNotify(AsyncRequest *areq)
{
	async_produce(areq);
}

void
kisReScanForeignScan(ForeignScanState *node)
{
	KisScanState *st = (KisScanState *) node->fdw_state;

	kis_runner_end(st->runner);
}

void
kisEndForeignScan(ForeignScanState *node)
{
	KisScanState *st = (KisScanState *) node->fdw_state;

	if (st == NULL)
		return;
	if (st->runner != NULL)
		kis_runner_end(st->runner);
	MemoryContextDelete(st->scan_cxt);
}

/*
 * EXPLAIN: endpoint and planned work; with ANALYZE, what was done.
 * Never a credential, a token or a URL.
 */
void
kisExplainForeignScan(ForeignScanState *node, ExplainState *es)
{
	KisScanState *st = (KisScanState *) node->fdw_state;
	const KisEndpoint *ep = st->config.endpoint;
	KisKeyColumn venue_key = ep->has_exchange ? KIS_KEY_EXCHANGE : KIS_KEY_MARKET;
	int			nsym = st->planned[KIS_KEY_SYMBOL];
	int			nven = st->qual_pos[venue_key] >= 0 ? st->planned[venue_key] : 1;

	ExplainPropertyText("KIS Endpoint", ep->name, es);
	if (ep->symbol_kind != KIS_SYMBOL_NONE)
	{
		if (nsym >= 0)
			ExplainPropertyInteger("KIS Symbols", NULL, nsym, es);
		else
			ExplainPropertyText("KIS Symbols", "computed at scan start", es);
	}
	if (ep->symbol_kind == KIS_SYMBOL_NONE || (nsym >= 0 && nven >= 0))
		ExplainPropertyInteger("KIS Planned Requests", NULL,
							   (int64) kis_planned_requests(ep, (double) Max(nsym, 0) * nven), es);
	if (ep->paging != KIS_PAGING_NONE)
		ExplainPropertyText("KIS Paging",
							ep->paging == KIS_PAGING_DATE ? "by date, 100 rows per request" :
							ep->paging == KIS_PAGING_TIME ? "by time, 30 rows per request" :
							"by continuation key", es);
	if (st->date_quals != NIL)
		ExplainPropertyInteger("KIS Date Conditions", NULL, list_length(st->date_quals) / 3, es);

	if (es->analyze && st->runner != NULL)
		kis_runner_explain(st->runner, es);
}
