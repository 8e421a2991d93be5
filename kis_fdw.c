/*-------------------------------------------------------------------------
 *
 * kis_fdw.c
 *	  The foreign data wrapper callbacks of kis_fdw: planning (which
 *	  conditions become request keys, what a scan costs), execution (turn
 *	  the keys into requests, completed answers into tuples, apply on_error)
 *	  and EXPLAIN.  Glue only: HTTP is in src/fetch.c, JSON in
 *	  src/response.c, options in src/options.c.
 *
 * Memory and resources of a scan:
 *	  es_query_cxt
 *	    "kis_fdw scan"  config, column map, key expressions
 *	      "kis_fdw run"  one run's keys and fetcher; its reset callback
 *	                     frees every libcurl handle (src/fetch.c).  A rescan
 *	                     deletes it and the next fetch makes a new one.
 *	      "kis_fdw row"  the current tuple's values, reset per tuple
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include <curl/curl.h>

#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/pg_type.h"
#include "commands/explain.h"
#include "executor/executor.h"
#include "foreign/fdwapi.h"
#include "foreign/foreign.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/cost.h"
#include "optimizer/optimizer.h"
#include "optimizer/pathnode.h"
#include "optimizer/planmain.h"
#include "optimizer/restrictinfo.h"
#include "parser/parsetree.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datetime.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "kis_fdw.h"

PG_MODULE_MAGIC;

/*
 * Cost model, in the planner's units.  A request is assumed to take
 * KIS_ASSUMED_LATENCY_MS; one millisecond of waiting costs KIS_COST_PER_MS
 * (a sequential page read is a few hundredths of a millisecond).  A scan
 * takes as long as the slower of its concurrency and its rate limit allow.
 */
#define KIS_ASSUMED_LATENCY_MS	50.0
#define KIS_COST_PER_MS			20.0
#define KIS_STARTUP_COST		100.0
#define KIS_DEFAULT_KEYS		10	/* symbols behind a parameter */
#define KIS_NO_KEY_COST			1.0e10	/* a path that must not be chosen */
#define KIS_ACCOUNT_ROWS		50	/* holdings of an account, a guess */
#define KIS_MAX_SKIPPED_LISTED	10	/* symbols named in the skip WARNING */

/* The key columns whose values are lists (the first condition on each) */
#define KIS_NUM_LIST_KEYS	KIS_KEY_DATE

/* Planner state, in baserel->fdw_private */
typedef struct KisPlanState
{
	KisConfig	config;
	AttrNumber	key_attnums[KIS_NUM_KEYS];
	bool		has_qual[KIS_NUM_LIST_KEYS];
	KisKeyQual	quals[KIS_NUM_LIST_KEYS];
} KisPlanState;

/* What a tuple column is filled from */
typedef enum KisColumnSource
{
	KIS_COL_UNUSED,				/* dropped, or not needed by the query */
	KIS_COL_SYMBOL,
	KIS_COL_VENUE,				/* market or exchange */
	KIS_COL_FETCHED_AT,
	KIS_COL_ERROR,
	KIS_COL_RAW,
	KIS_COL_FIELD
} KisColumnSource;

typedef struct KisColumn
{
	KisColumnSource source;
	const char *name;
	const char *field;			/* KIS_COL_FIELD */
	FmgrInfo	input;
	Oid			ioparam;
	int32		typmod;
} KisColumn;

/* Executor state, in node->fdw_state */
typedef struct KisScanState
{
	MemoryContext scan_cxt;
	MemoryContext row_cxt;
	MemoryContext run_cxt;		/* NULL between runs */
	KisConfig	config;
	Relation	rel;

	/* from the plan */
	int			qual_pos[KIS_NUM_LIST_KEYS];	/* index into key_exprs, or -1 */
	bool		qual_is_array[KIS_NUM_LIST_KEYS];
	int			planned[KIS_NUM_LIST_KEYS]; /* values known at plan time, or -1 */
	List	   *date_quals;		/* (op, index into key_exprs, given in the query) */
	List	   *key_exprs;		/* ExprState per pushed-down qual */

	int			ncolumns;
	KisColumn  *columns;
	bool		has_error_column;

	/* the current run */
	KisFetcher *fetcher;
	int			nkeys;
	List	   *skipped;		/* "symbol: reason" of skipped keys */
	KisCompletion *current;		/* the answer whose rows are being returned */
	List	   *rows;			/* its KisRow *s */
	int			next_row;

	/* over all runs, for EXPLAIN ANALYZE */
	KisFetchStats stats;
	int64		keys_requested;
} KisScanState;

/* What the error context callback needs to name a failing conversion */
typedef struct KisConvContext
{
	Relation	rel;
	const KisColumn *column;
	const KisRow *row;
} KisConvContext;

void		_PG_init(void);

PG_FUNCTION_INFO_V1(kis_fdw_handler);

/* ----------------------------------------------------------------
 * Planning
 * ----------------------------------------------------------------
 */

/* Time a scan of nrequests takes, as startup and total cost */
static void
estimate_cost(const KisConfig *config, double nrequests, double rows,
			  Cost *startup, Cost *total)
{
	double		rounds = ceil(nrequests / config->max_concurrency);
	double		ms = rounds * KIS_ASSUMED_LATENCY_MS;

	if (config->rate_limit > 0)
		ms = Max(ms, (nrequests - 1) * 1000.0 / config->rate_limit +
				 KIS_ASSUMED_LATENCY_MS);
	*startup = KIS_STARTUP_COST + KIS_ASSUMED_LATENCY_MS * KIS_COST_PER_MS;
	*total = KIS_STARTUP_COST + ms * KIS_COST_PER_MS + rows * cpu_tuple_cost;
}

/* How many values a list key gives: its known count, or a guess */
static double
planned_values(const KisPlanState *ps, KisKeyColumn key, double if_unknown)
{
	if (!ps->has_qual[key])
		return key == KIS_KEY_SYMBOL ? if_unknown : 1;
	return ps->quals[key].nconst >= 0 ? ps->quals[key].nconst : if_unknown;
}

static void
kisGetForeignRelSize(PlannerInfo *root, RelOptInfo *baserel, Oid foreigntableid)
{
	KisPlanState *ps = palloc0(sizeof(KisPlanState));
	const KisEndpoint *ep;
	double		nkeys;
	ListCell   *lc;

	kis_config_for_table(foreigntableid, &ps->config);
	ep = ps->config.endpoint;
	kis_key_attnums(foreigntableid, ep, ps->key_attnums);

	foreach(lc, baserel->baserestrictinfo)
	{
		RestrictInfo *rinfo = lfirst_node(RestrictInfo, lc);
		KisKeyQual	q;

		if (kis_match_key_clause(baserel, rinfo, ps->key_attnums, &q) &&
			q.key < KIS_NUM_LIST_KEYS && !ps->has_qual[q.key])
		{
			ps->has_qual[q.key] = true;
			ps->quals[q.key] = q;
		}
	}

	nkeys = planned_values(ps, KIS_KEY_SYMBOL, KIS_DEFAULT_KEYS) *
		planned_values(ps, KIS_KEY_MARKET, 1) * planned_values(ps, KIS_KEY_EXCHANGE, 1);
	if (ep->symbol_kind == KIS_SYMBOL_NONE)
		baserel->rows = KIS_ACCOUNT_ROWS;
	else if (ep->paging == KIS_PAGING_DATE)
		baserel->rows = Max(nkeys, 1) * ep->page_rows;
	else
		baserel->rows = Max(nkeys, 1);
	baserel->fdw_private = ps;
}

/* Requests of the first round: one per key, or per batch of keys */
static double
planned_requests(const KisEndpoint *ep, double nkeys)
{
	if (ep->symbol_kind == KIS_SYMBOL_NONE)
		return 1;
	return ceil(Max(nkeys, 1) / ep->batch_size);
}

/*
 * One path that reads the keys given in WHERE (batched: all requests of
 * the scan run concurrently), and, when a symbol endpoint has no such
 * condition, parameterized paths for joins on symbol (a nested loop sends
 * one request per outer row).  Without either, the only path is priced
 * out of reach, and GetForeignPlan explains what is missing if it is
 * chosen.
 */
static void
kisGetForeignPaths(PlannerInfo *root, RelOptInfo *baserel, Oid foreigntableid)
{
	KisPlanState *ps = (KisPlanState *) baserel->fdw_private;
	const KisEndpoint *ep = ps->config.endpoint;
	bool		needs_symbol = ep->symbol_kind != KIS_SYMBOL_NONE;
	double		nkeys = baserel->rows;
	Cost		startup;
	Cost		total;
	ListCell   *lc;

	if (ep->paging == KIS_PAGING_DATE)
		nkeys = baserel->rows / ep->page_rows;
	if (!needs_symbol || ps->has_qual[KIS_KEY_SYMBOL])
		estimate_cost(&ps->config, planned_requests(ep, nkeys), baserel->rows,
					  &startup, &total);
	else
		startup = total = KIS_NO_KEY_COST;

	add_path(baserel, (Path *)
			 create_foreignscan_path(root, baserel, NULL, baserel->rows,
									 startup, total, NIL,
									 baserel->lateral_relids, NULL, NIL));

	if (!needs_symbol || ps->has_qual[KIS_KEY_SYMBOL])
		return;

	foreach(lc, kis_symbol_join_clauses(root, baserel, ps->key_attnums[KIS_KEY_SYMBOL]))
	{
		RestrictInfo *rinfo = lfirst_node(RestrictInfo, lc);
		Relids		required_outer;
		double		rows = Max(baserel->rows / KIS_DEFAULT_KEYS, 1);

		required_outer = bms_union(rinfo->clause_relids, baserel->lateral_relids);
		required_outer = bms_del_member(required_outer, baserel->relid);
		if (bms_is_empty(required_outer))
			continue;

		/* one symbol per outer row: one request per rescan */
		estimate_cost(&ps->config, 1, rows, &startup, &total);
		add_path(baserel, (Path *)
				 create_foreignscan_path(root, baserel, NULL, rows,
										 startup, total, NIL,
										 required_outer, NULL, NIL));
	}
}

/* Columns the query reads: only those are converted */
static List *
needed_attnums(RelOptInfo *baserel, List *local_quals)
{
	Bitmapset  *attrs = NULL;
	List	   *result = NIL;
	int			x = -1;

	pull_varattnos((Node *) baserel->reltarget->exprs, baserel->relid, &attrs);
	pull_varattnos((Node *) local_quals, baserel->relid, &attrs);
	while ((x = bms_next_member(attrs, x)) >= 0)
		result = lappend_int(result, x + FirstLowInvalidHeapAttributeNumber);
	return result;
}

static ForeignScan *
kisGetForeignPlan(PlannerInfo *root, RelOptInfo *baserel, Oid foreigntableid,
				  ForeignPath *best_path, List *tlist, List *scan_clauses,
				  Plan *outer_plan)
{
	KisPlanState *ps = (KisPlanState *) baserel->fdw_private;
	const KisEndpoint *ep = ps->config.endpoint;
	List	   *local_quals = NIL;
	List	   *fdw_exprs = NIL;
	List	   *keys = NIL;
	List	   *dates = NIL;
	int			qual_pos[KIS_NUM_LIST_KEYS];
	KisKeyQual	quals[KIS_NUM_LIST_KEYS];
	ListCell   *lc;

	for (int k = 0; k < KIS_NUM_LIST_KEYS; k++)
		qual_pos[k] = -1;

	/*
	 * scan_clauses has the join clauses too when the path is parameterized.
	 * The first condition on a list key is pushed down (others stay local
	 * filters); every date comparison narrows the date range.
	 */
	foreach(lc, scan_clauses)
	{
		RestrictInfo *rinfo = lfirst_node(RestrictInfo, lc);
		KisKeyQual	q;

		if (rinfo->pseudoconstant)
			continue;
		if (kis_match_key_clause(baserel, rinfo, ps->key_attnums, &q) &&
			(q.key == KIS_KEY_DATE || qual_pos[q.key] < 0))
		{
			if (q.key == KIS_KEY_DATE)
			{
				dates = lappend_int(dates, q.op);
				dates = lappend_int(dates, list_length(fdw_exprs));
				dates = lappend_int(dates, !kis_depends_on_rows((Node *) q.expr));
				if (q.loose)
					local_quals = lappend(local_quals, rinfo->clause);
			}
			else
			{
				qual_pos[q.key] = list_length(fdw_exprs);
				quals[q.key] = q;
			}
			fdw_exprs = lappend(fdw_exprs, q.expr);
		}
		else
			local_quals = lappend(local_quals, rinfo->clause);
	}

	if (ep->symbol_kind != KIS_SYMBOL_NONE && qual_pos[KIS_KEY_SYMBOL] < 0)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_ERROR),
				 errmsg("a scan of foreign table \"%s\" needs a condition on \"symbol\"",
						get_rel_name(foreigntableid)),
				 ps->key_attnums[KIS_KEY_SYMBOL] == InvalidAttrNumber ?
				 errdetail("The table has no column named \"symbol\".") :
				 errdetail("KIS answers for given symbols only; kis_fdw never crawls a whole market."),
				 errhint("Add WHERE symbol = '005930', symbol IN (...), symbol = ANY (ARRAY(SELECT symbol FROM ...)), or join on symbol.")));

	for (int k = 0; k < KIS_NUM_LIST_KEYS; k++)
	{
		keys = lappend_int(keys, qual_pos[k]);
		keys = lappend_int(keys, qual_pos[k] >= 0 && quals[k].op == KIS_OP_IN);
		keys = lappend_int(keys, qual_pos[k] >= 0 ? quals[k].nconst : -1);
	}

	return make_foreignscan(tlist, local_quals, baserel->relid, fdw_exprs,
							list_make3(keys, dates, needed_attnums(baserel, local_quals)),
							NIL, NIL, outer_plan);
}

/* ----------------------------------------------------------------
 * Execution
 * ----------------------------------------------------------------
 */

/* Decide what fills each column, and look up its input function */
static void
build_column_map(KisScanState *st, List *needed)
{
	const KisEndpoint *ep = st->config.endpoint;
	TupleDesc	tupdesc = RelationGetDescr(st->rel);
	Oid			relid = RelationGetRelid(st->rel);
	bool		whole_row = list_member_int(needed, 0);

	st->ncolumns = tupdesc->natts;
	st->columns = palloc0(sizeof(KisColumn) * tupdesc->natts);
	for (int i = 0; i < tupdesc->natts; i++)
	{
		Form_pg_attribute attr = TupleDescAttr(tupdesc, i);
		KisColumn  *col = &st->columns[i];
		const char *name = NameStr(attr->attname);
		char	   *field_opt;
		Oid			infunc;

		if (attr->attisdropped)
			continue;
		/* known even if not read: on_error 'row' needs it */
		if (strcmp(name, "error") == 0)
			st->has_error_column = true;
		if (!whole_row && !list_member_int(needed, attr->attnum))
			continue;

		col->name = pstrdup(name);
		field_opt = kis_column_field_option(relid, attr->attnum);
		if (field_opt != NULL)
		{
			col->source = KIS_COL_FIELD;
			col->field = field_opt;
		}
		else if (strcmp(name, "symbol") == 0 && ep->symbol_kind != KIS_SYMBOL_NONE)
			col->source = KIS_COL_SYMBOL;
		else if ((strcmp(name, "market") == 0 && ep->has_market) ||
				 (strcmp(name, "exchange") == 0 && ep->has_exchange))
			col->source = KIS_COL_VENUE;
		else if (strcmp(name, "fetched_at") == 0)
			col->source = KIS_COL_FETCHED_AT;
		else if (strcmp(name, "error") == 0)
			col->source = KIS_COL_ERROR;
		else if (strcmp(name, "raw") == 0)
			col->source = KIS_COL_RAW;
		else
		{
			col->source = KIS_COL_FIELD;
			col->field = kis_endpoint_field(ep, name);
			if (col->field == NULL)
				col->field = col->name;
		}

		getTypeInputInfo(attr->atttypid, &infunc, &col->ioparam);
		fmgr_info_cxt(infunc, &col->input, st->scan_cxt);
		col->typmod = attr->atttypmod;
	}
}

static void
kisBeginForeignScan(ForeignScanState *node, int eflags)
{
	ForeignScan *fsplan = (ForeignScan *) node->ss.ps.plan;
	EState	   *estate = node->ss.ps.state;
	KisScanState *st = palloc0(sizeof(KisScanState));
	List	   *keys = (List *) linitial(fsplan->fdw_private);
	List	   *needed = (List *) lthird(fsplan->fdw_private);
	MemoryContext old;
	RangeTblEntry *rte;
	Oid			userid;

	node->fdw_state = st;
	st->rel = node->ss.ss_currentRelation;
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

	rte = exec_rt_fetch(fsplan->scan.scanrelid, estate);
	userid = OidIsValid(rte->checkAsUser) ? rte->checkAsUser : GetUserId();

	old = MemoryContextSwitchTo(st->scan_cxt);
	kis_config_add_credentials(&st->config, userid);
	build_column_map(st, needed);
	MemoryContextSwitchTo(old);

	if (st->config.on_error == KIS_ON_ERROR_ROW && !st->has_error_column)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_ERROR),
				 errmsg("on_error 'row' needs a column named \"error\" in foreign table \"%s\"",
						RelationGetRelationName(st->rel)),
				 errhint("ALTER FOREIGN TABLE %s ADD COLUMN error text;",
						 RelationGetRelationName(st->rel))));

	st->key_exprs = ExecInitExprList(fsplan->fdw_exprs, (PlanState *) node);
	st->row_cxt = AllocSetContextCreate(st->scan_cxt, "kis_fdw row",
										ALLOCSET_SMALL_SIZES);
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

static int
compare_strings(const ListCell *a, const ListCell *b)
{
	return strcmp(lfirst(a), lfirst(b));
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
	List	   *values = NIL;
	List	   *unique = NIL;
	Datum		d;
	bool		isnull;
	Oid			type;
	ListCell   *lc;

	if (st->qual_pos[key] < 0)
		return default_value ? list_make1(pstrdup(default_value)) : NIL;

	d = eval_key_expr(node, st, st->qual_pos[key], &isnull, &type);
	if (isnull)
		return NIL;
	if (!st->qual_is_array[key])
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

	list_sort(values, compare_strings);
	foreach(lc, values)
	{
		if (unique == NIL || strcmp(llast(unique), lfirst(lc)) != 0)
			unique = lappend(unique, lfirst(lc));
	}
	return unique;
}

/*
 * The date range of the date conditions: each one narrows it.  Returns
 * false when no row can match: a comparison with NULL, or bounds that
 * cross.  Crossing bounds given in the query (constants, parameters) are
 * a mistake worth an ERROR; bounds that come from other rows (a join, a
 * correlated sub-select) just match nothing, as in any SQL.
 * A timestamp or timestamptz value bounds by its day, from outside (its
 * condition is also a local filter).
 */
static bool
date_range(ForeignScanState *node, KisScanState *st, KisRange *range)
{
	bool		all_given = true;
	ListCell   *lc;

	memset(range, 0, sizeof(KisRange));
	for (lc = list_head(st->date_quals); lc != NULL; lc = lnext(st->date_quals, lc))
	{
		KisQualOp	op = lfirst_int(lc);
		int			pos;
		bool		isnull;
		Oid			type;
		Datum		value;
		DateADT		d;
		int			jd;

		lc = lnext(st->date_quals, lc);
		pos = lfirst_int(lc);
		lc = lnext(st->date_quals, lc);
		all_given &= lfirst_int(lc);

		value = eval_key_expr(node, st, pos, &isnull, &type);
		if (isnull)
			return false;
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
			range->from = range->has_from ? Max(range->from, jd) : jd;
			range->has_from = true;
		}
		if (op == KIS_OP_EQ || op == KIS_OP_LT || op == KIS_OP_LE)
		{
			range->to = range->has_to ? Min(range->to, jd) : jd;
			range->has_to = true;
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
	return true;
}

/* Evaluate the keys, check them, and queue the scan's requests */
static void
start_run(ForeignScanState *node, KisScanState *st)
{
	const KisEndpoint *ep = st->config.endpoint;
	KisKeyColumn venue_key = ep->has_exchange ? KIS_KEY_EXCHANGE : KIS_KEY_MARKET;
	List	   *symbols = NIL;
	List	   *venues = NIL;
	List	   *keys = NIL;
	KisRange	range;
	bool		any;
	ListCell   *ls;
	ListCell   *lv;
	MemoryContext old;

	st->run_cxt = AllocSetContextCreate(st->scan_cxt, "kis_fdw run",
										ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(st->run_cxt);
	st->nkeys = 0;
	st->skipped = NIL;

	any = date_range(node, st, &range);
	if (ep->symbol_kind != KIS_SYMBOL_NONE)
	{
		symbols = key_values(node, st, KIS_KEY_SYMBOL, NULL);
		venues = key_values(node, st, venue_key,
							ep->has_exchange ? st->config.exchange : st->config.market);
	}
	foreach(ls, symbols)
	{
		if (!kis_symbol_is_valid(ep->symbol_kind, lfirst(ls)))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid symbol \"%s\"", (char *) lfirst(ls)),
					 errhint("%s", kis_symbol_hint(ep->symbol_kind))));
	}
	foreach(lv, venues)
	{
		if (ep->has_exchange ? !kis_exchange_is_valid(lfirst(lv)) :
			!kis_market_is_valid(lfirst(lv)))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid %s \"%s\"", kis_key_column_names[venue_key],
							(char *) lfirst(lv)),
					 ep->has_exchange ?
					 errhint("Valid exchanges are NAS, NYS, AMS (and their daytime codes BAQ, BAY, BAA), HKS, TSE, SHS, SZS, SHI, SZI, HSX, HNX.") :
					 errhint("Valid markets are: J (KRX), NX (Nextrade), UN (both).")));
	}
	foreach(ls, symbols)
	{
		foreach(lv, venues)
		{
			KisKey	   *key = palloc(sizeof(KisKey));

			key->symbol = lfirst(ls);
			key->venue = lfirst(lv);
			keys = lappend(keys, key);
		}
	}

	st->nkeys = ep->symbol_kind == KIS_SYMBOL_NONE ? 1 : list_length(keys);
	if (any && st->nkeys > 0)
	{
		st->fetcher = kis_fetch_begin(st->run_cxt, &st->config, &st->stats);
		if (kis_requests_start(st->fetcher, &st->config, keys, &range) == 0)
			st->nkeys = 0;
	}
	st->keys_requested += ep->symbol_kind == KIS_SYMBOL_NONE ? 0 : list_length(keys);
	MemoryContextSwitchTo(old);
}

static void warn_skipped(KisScanState *st);

/*
 * Drop the current run: its context's callback frees the handles.  A run
 * ended early (LIMIT, a semi-join's rescan) still reports what it skipped.
 */
static void
end_run(KisScanState *st)
{
	if (st->skipped != NIL)
		warn_skipped(st);
	if (st->fetcher != NULL)
		kis_fetch_end(st->fetcher);
	if (st->run_cxt != NULL)
		MemoryContextDelete(st->run_cxt);
	st->fetcher = NULL;
	st->run_cxt = NULL;
	st->current = NULL;
	st->rows = NIL;
}

/*
 * A key as the skip WARNING names it: the symbol, with its market or
 * exchange unless it is the table's default market; the endpoint for
 * account rows.
 */
static char *
key_label(const KisScanState *st, const KisKey *key)
{
	const KisEndpoint *ep = st->config.endpoint;

	if (key == NULL)
		return pstrdup(ep->name);
	if (ep->has_market && strcmp(key->venue, st->config.market) == 0)
		return pstrdup(key->symbol);
	return psprintf("%s (%s)", key->symbol, key->venue);
}

/* What a failing row is about: its symbol, or the endpoint */
static const char *
row_subject(const KisScanState *st, const KisRow *row)
{
	if (row->key != NULL)
		return psprintf("symbol \"%s\"", row->key->symbol);
	return psprintf("endpoint %s", st->config.endpoint->name);
}

static void
conversion_error_callback(void *arg)
{
	KisConvContext *cc = (KisConvContext *) arg;
	const char *subject = cc->row->key ? cc->row->key->symbol : "(account)";

	if (cc->column == NULL)
		return;
	if (cc->column->source == KIS_COL_FIELD)
		errcontext("column \"%s\" of foreign table \"%s\", KIS field \"%s\", symbol \"%s\"",
				   cc->column->name, RelationGetRelationName(cc->rel),
				   cc->column->field, subject);
	else
		errcontext("column \"%s\" of foreign table \"%s\", symbol \"%s\"",
				   cc->column->name, RelationGetRelationName(cc->rel), subject);
}

/* The KIS text of one column, in the server encoding, or NULL */
static char *
column_text(const KisColumn *col, const KisRow *row, const KisCompletion *c)
{
	char	   *text = NULL;

	switch (col->source)
	{
		case KIS_COL_UNUSED:
			return NULL;
		case KIS_COL_SYMBOL:
			return row->key ? row->key->symbol : NULL;
		case KIS_COL_VENUE:
			return row->key ? row->key->venue : NULL;
		case KIS_COL_FETCHED_AT:
			return DatumGetCString(DirectFunctionCall1(timestamptz_out,
													   TimestampTzGetDatum(c->completed_at)));
		case KIS_COL_ERROR:
			return row->problem;
		case KIS_COL_RAW:
			text = row->row ? kis_row_raw_text(row->row) : NULL;
			break;
		case KIS_COL_FIELD:
			text = row->row ? kis_row_field_text(row->row, row->extra, col->field) : NULL;
			break;
	}
	if (text != NULL && GetDatabaseEncoding() != PG_UTF8)
		text = pg_any_to_server(text, strlen(text), PG_UTF8);
	return text;
}

/* Fill the slot from one row (a failed key under on_error 'row' has no data) */
static void
store_row(KisScanState *st, TupleTableSlot *slot, const KisRow *row,
		  const KisCompletion *c)
{
	KisConvContext cc;
	ErrorContextCallback errcb;
	MemoryContext old = MemoryContextSwitchTo(st->row_cxt);

	cc.rel = st->rel;
	cc.row = row;
	cc.column = NULL;
	errcb.callback = conversion_error_callback;
	errcb.arg = &cc;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	for (int i = 0; i < st->ncolumns; i++)
	{
		const KisColumn *col = &st->columns[i];
		char	   *text;

		cc.column = col;		/* before anything that can fail */
		text = column_text(col, row, c);
		slot->tts_isnull[i] = (text == NULL);
		slot->tts_values[i] = text == NULL ? (Datum) 0 :
			InputFunctionCall((FmgrInfo *) &col->input, text, col->ioparam, col->typmod);
	}

	error_context_stack = errcb.previous;
	MemoryContextSwitchTo(old);
	ExecStoreVirtualTuple(slot);
}

/*
 * Apply on_error to a failed key.  Returns true when a row was stored
 * (mode 'row'); 'skip' remembers the key for the closing WARNING.
 */
static bool
handle_failure(KisScanState *st, TupleTableSlot *slot, const KisRow *row,
			   const KisCompletion *c)
{
	const KisEndpoint *ep = st->config.endpoint;

	switch (st->config.on_error)
	{
		case KIS_ON_ERROR_ERROR:
			if (strcmp(row->problem, KIS_NOT_LISTED) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_FDW_ERROR),
						 errmsg("symbol \"%s\" is not listed on %s %s", row->key->symbol,
								ep->has_exchange ? "exchange" : "market", row->key->venue),
						 errdetail("KIS answered without a price for it."),
						 errhint("Check the symbol%s, or set the table's on_error option to 'skip' or 'row'.",
								 ep->has_exchange ? " and the exchange" : "")));
			ereport(ERROR,
					(errcode(ERRCODE_FDW_ERROR),
					 errmsg("KIS request for %s failed", row_subject(st, row)),
					 errdetail("%s", row->problem),
					 errhint("Set the table's on_error option to 'skip' or 'row' to keep the other rows.")));
			break;
		case KIS_ON_ERROR_SKIP:
			{
				/* the list outlives this tuple: it lives in the run context */
				MemoryContext old = MemoryContextSwitchTo(st->run_cxt);

				st->skipped = lappend(st->skipped,
									  psprintf("%s: %s", key_label(st, row->key),
											   row->problem));
				MemoryContextSwitchTo(old);
			}
			return false;
		case KIS_ON_ERROR_ROW:
			store_row(st, slot, row, c);
			return true;
	}
	return false;
}

/* The one WARNING of on_error 'skip': how many, and which (sorted) */
static void
warn_skipped(KisScanState *st)
{
	StringInfoData detail;
	int			n = 0;
	ListCell   *lc;

	list_sort(st->skipped, compare_strings);
	initStringInfo(&detail);
	foreach(lc, st->skipped)
	{
		if (n++ == KIS_MAX_SKIPPED_LISTED)
		{
			appendStringInfoString(&detail, "; ...");
			break;
		}
		appendStringInfo(&detail, "%s%s", n > 1 ? "; " : "", (char *) lfirst(lc));
	}
	ereport(WARNING,
			(errcode(ERRCODE_WARNING),
			 errmsg("kis_fdw skipped %d of %d symbols of foreign table \"%s\"",
					list_length(st->skipped), st->nkeys, RelationGetRelationName(st->rel)),
			 errdetail("%s", detail.data)));
	st->skipped = NIL;
}

/*
 * Rows come from answers in completion order; an answer may hold several
 * rows (batches, pages), returned one per call before the next answer is
 * taken.
 */
static TupleTableSlot *
kisIterateForeignScan(ForeignScanState *node)
{
	KisScanState *st = (KisScanState *) node->fdw_state;
	TupleTableSlot *slot = node->ss.ss_ScanTupleSlot;

	ExecClearTuple(slot);
	MemoryContextReset(st->row_cxt);
	if (st->run_cxt == NULL)
		start_run(node, st);

	while (st->fetcher != NULL)
	{
		if (st->next_row < list_length(st->rows))
		{
			KisRow	   *row = list_nth(st->rows, st->next_row++);

			if (row->problem == NULL)
			{
				store_row(st, slot, row, st->current);
				return slot;
			}
			if (handle_failure(st, slot, row, st->current))
				return slot;
			continue;
		}
		if (st->current != NULL)
			kis_fetch_forget(st->current);
		st->rows = NIL;
		st->next_row = 0;
		st->current = kis_fetch_next(st->fetcher);
		if (st->current == NULL)
			break;
		st->rows = kis_requests_answer(st->fetcher, st->current);
	}

	if (st->skipped != NIL)
		warn_skipped(st);
	return slot;
}

static void
kisReScanForeignScan(ForeignScanState *node)
{
	KisScanState *st = (KisScanState *) node->fdw_state;

	end_run(st);
}

static void
kisEndForeignScan(ForeignScanState *node)
{
	KisScanState *st = (KisScanState *) node->fdw_state;

	if (st == NULL)
		return;
	end_run(st);
	MemoryContextDelete(st->scan_cxt);
}

/* ----------------------------------------------------------------
 * EXPLAIN: endpoint and planned work; with ANALYZE, what was done.
 * Never a credential, a token or a URL.
 * ----------------------------------------------------------------
 */
static void
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
							   (int64) planned_requests(ep, (double) Max(nsym, 0) * nven), es);
	if (ep->paging != KIS_PAGING_NONE)
		ExplainPropertyText("KIS Paging",
							ep->paging == KIS_PAGING_DATE ? "by date, 100 rows per request" :
							"by continuation key", es);
	if (st->date_quals != NIL)
		ExplainPropertyInteger("KIS Date Conditions", NULL, list_length(st->date_quals) / 3, es);

	if (es->analyze)
	{
		if (ep->symbol_kind != KIS_SYMBOL_NONE)
			ExplainPropertyInteger("KIS Keys Requested", NULL, st->keys_requested, es);
		ExplainPropertyInteger("KIS Requests", NULL, st->stats.requests, es);
		ExplainPropertyInteger("KIS Retries", NULL, st->stats.retries, es);
		ExplainPropertyInteger("KIS Failures", NULL, st->stats.failures, es);
		ExplainPropertyInteger("KIS Tokens Issued", NULL, st->stats.tokens_issued, es);
		if (es->timing)
		{
			ExplainPropertyFloat("KIS Rate Wait", "ms", st->stats.rate_wait_ms, 1, es);
			ExplainPropertyFloat("KIS HTTP Time", "ms", st->stats.http_ms, 1, es);
		}
	}
}

/*
 * IMPORT FOREIGN SCHEMA kis FROM SERVER s INTO local: one table per
 * endpoint, with typed friendly columns.  LIMIT TO and EXCEPT are applied
 * by PostgreSQL to the returned statements.
 */
static List *
kisImportForeignSchema(ImportForeignSchemaStmt *stmt, Oid serverOid)
{
	ForeignServer *server = GetForeignServer(serverOid);
	List	   *commands = NIL;

	if (strcmp(stmt->remote_schema, "kis") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_SCHEMA_NOT_FOUND),
				 errmsg("kis_fdw offers no schema \"%s\"", stmt->remote_schema),
				 errhint("Use IMPORT FOREIGN SCHEMA kis FROM SERVER %s INTO ...;",
						 quote_identifier(server->servername))));
	for (const KisEndpoint *ep = kis_endpoints; ep->name; ep++)
		commands = lappend(commands, kis_endpoint_table_ddl(ep, server->servername));
	return commands;
}

/* ----------------------------------------------------------------
 * Module
 * ----------------------------------------------------------------
 */
Datum
kis_fdw_handler(PG_FUNCTION_ARGS)
{
	FdwRoutine *routine = makeNode(FdwRoutine);

	routine->GetForeignRelSize = kisGetForeignRelSize;
	routine->GetForeignPaths = kisGetForeignPaths;
	routine->GetForeignPlan = kisGetForeignPlan;
	routine->BeginForeignScan = kisBeginForeignScan;
	routine->IterateForeignScan = kisIterateForeignScan;
	routine->ReScanForeignScan = kisReScanForeignScan;
	routine->EndForeignScan = kisEndForeignScan;
	routine->ExplainForeignScan = kisExplainForeignScan;
	routine->ImportForeignSchema = kisImportForeignSchema;

	PG_RETURN_POINTER(routine);
}

void
_PG_init(void)
{
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		ereport(ERROR,
				(errmsg("kis_fdw could not initialize libcurl")));
	kis_json_use_palloc();

	DefineCustomIntVariable("kis_fdw.token_issue_interval",
							"Minimum time between two access-token issuances for one app key.",
							"KIS allows one issuance per minute per app key; lower it only for test servers.",
							&kis_token_issue_interval,
							60, 0, 3600,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);
	kis_shmem_init();
	MarkGUCPrefixReserved("kis_fdw");
}
