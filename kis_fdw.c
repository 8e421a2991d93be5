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
#define KIS_MAX_SKIPPED_LISTED	10	/* symbols named in the skip WARNING */

/* Planner state, in baserel->fdw_private */
typedef struct KisPlanState
{
	KisConfig	config;
	AttrNumber	key_attnums[KIS_NUM_KEYS];
	bool		has_qual[KIS_NUM_KEYS];
	KisKeyQual	quals[KIS_NUM_KEYS];
} KisPlanState;

/* What a tuple column is filled from */
typedef enum KisColumnSource
{
	KIS_COL_UNUSED,				/* dropped, or not needed by the query */
	KIS_COL_SYMBOL,
	KIS_COL_MARKET,
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

/* One request key */
typedef struct KisKey
{
	char	   *symbol;
	char	   *market;
} KisKey;

/* Executor state, in node->fdw_state */
typedef struct KisScanState
{
	MemoryContext scan_cxt;
	MemoryContext row_cxt;
	MemoryContext run_cxt;		/* NULL between runs */
	KisConfig	config;
	Relation	rel;

	/* from the plan */
	int			qual_pos[KIS_NUM_KEYS]; /* index into key_exprs, or -1 */
	bool		qual_is_array[KIS_NUM_KEYS];
	int			planned[KIS_NUM_KEYS];	/* values known at plan time, or -1 */
	List	   *key_exprs;		/* ExprState per pushed-down qual */

	int			ncolumns;
	KisColumn  *columns;
	bool		has_error_column;

	/* the current run */
	KisFetcher *fetcher;
	int			nkeys;
	List	   *skipped;		/* "symbol: reason" of skipped keys */

	/* over all runs, for EXPLAIN ANALYZE */
	KisFetchStats stats;
	int64		keys_requested;
} KisScanState;

/* What the error context callback needs to name a failing conversion */
typedef struct KisConvContext
{
	Relation	rel;
	const KisColumn *column;
	const KisKey *key;
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

static void
kisGetForeignRelSize(PlannerInfo *root, RelOptInfo *baserel, Oid foreigntableid)
{
	KisPlanState *ps = palloc0(sizeof(KisPlanState));
	double		nsymbols;
	double		nmarkets = 1;
	ListCell   *lc;

	kis_config_for_table(foreigntableid, &ps->config);
	for (int k = 0; k < KIS_NUM_KEYS; k++)
		ps->key_attnums[k] = (k == KIS_KEY_MARKET && !ps->config.endpoint->has_market) ?
			InvalidAttrNumber : kis_key_attnum(foreigntableid, k);

	foreach(lc, baserel->baserestrictinfo)
	{
		RestrictInfo *rinfo = lfirst_node(RestrictInfo, lc);
		KisKeyQual	q;

		if (kis_match_key_clause(baserel, rinfo, ps->key_attnums, &q) &&
			!ps->has_qual[q.key])
		{
			ps->has_qual[q.key] = true;
			ps->quals[q.key] = q;
		}
	}

	nsymbols = !ps->has_qual[KIS_KEY_SYMBOL] ? KIS_DEFAULT_KEYS :
		ps->quals[KIS_KEY_SYMBOL].nconst >= 0 ? ps->quals[KIS_KEY_SYMBOL].nconst :
		KIS_DEFAULT_KEYS;
	if (ps->has_qual[KIS_KEY_MARKET] && ps->quals[KIS_KEY_MARKET].nconst >= 0)
		nmarkets = ps->quals[KIS_KEY_MARKET].nconst;

	baserel->rows = Max(nsymbols * nmarkets, 1);
	baserel->fdw_private = ps;
}

/*
 * One path that reads the symbols given in WHERE (batched: all requests
 * of the scan run concurrently), and, when there is no such condition,
 * parameterized paths for joins on symbol (a nested loop sends one
 * request per outer row).  Without either, the only path is priced out of
 * reach, and GetForeignPlan explains what is missing if it is chosen.
 */
static void
kisGetForeignPaths(PlannerInfo *root, RelOptInfo *baserel, Oid foreigntableid)
{
	KisPlanState *ps = (KisPlanState *) baserel->fdw_private;
	Cost		startup;
	Cost		total;
	ListCell   *lc;

	if (ps->has_qual[KIS_KEY_SYMBOL])
		estimate_cost(&ps->config, baserel->rows, baserel->rows, &startup, &total);
	else
		startup = total = KIS_NO_KEY_COST;

	add_path(baserel, (Path *)
			 create_foreignscan_path(root, baserel, NULL, baserel->rows,
									 startup, total, NIL,
									 baserel->lateral_relids, NULL, NIL));

	if (ps->has_qual[KIS_KEY_SYMBOL])
		return;

	foreach(lc, kis_symbol_join_clauses(root, baserel, ps->key_attnums[KIS_KEY_SYMBOL]))
	{
		RestrictInfo *rinfo = lfirst_node(RestrictInfo, lc);
		Relids		required_outer;
		double		rows = baserel->rows / KIS_DEFAULT_KEYS;

		required_outer = bms_union(rinfo->clause_relids, baserel->lateral_relids);
		required_outer = bms_del_member(required_outer, baserel->relid);
		if (bms_is_empty(required_outer))
			continue;

		/* one symbol per outer row: one request per rescan */
		rows = Max(rows, 1);
		estimate_cost(&ps->config, rows, rows, &startup, &total);
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
	List	   *local_quals = NIL;
	List	   *fdw_exprs = NIL;
	List	   *fdw_private = NIL;
	int			qual_pos[KIS_NUM_KEYS];
	KisKeyQual	quals[KIS_NUM_KEYS];
	ListCell   *lc;

	for (int k = 0; k < KIS_NUM_KEYS; k++)
		qual_pos[k] = -1;

	/* scan_clauses has the join clauses too when the path is parameterized */
	foreach(lc, scan_clauses)
	{
		RestrictInfo *rinfo = lfirst_node(RestrictInfo, lc);
		KisKeyQual	q;

		if (rinfo->pseudoconstant)
			continue;
		if (kis_match_key_clause(baserel, rinfo, ps->key_attnums, &q) &&
			qual_pos[q.key] < 0)
		{
			qual_pos[q.key] = list_length(fdw_exprs);
			quals[q.key] = q;
			fdw_exprs = lappend(fdw_exprs, q.expr);
		}
		else
			local_quals = lappend(local_quals, rinfo->clause);
	}

	if (qual_pos[KIS_KEY_SYMBOL] < 0)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_ERROR),
				 errmsg("a scan of foreign table \"%s\" needs a condition on \"symbol\"",
						get_rel_name(foreigntableid)),
				 ps->key_attnums[KIS_KEY_SYMBOL] == InvalidAttrNumber ?
				 errdetail("The table has no column named \"symbol\".") :
				 errdetail("KIS answers one symbol at a time; kis_fdw never crawls a whole market."),
				 errhint("Add WHERE symbol = '005930', symbol IN (...), symbol = ANY (ARRAY(SELECT symbol FROM ...)), or join on symbol.")));

	for (int k = 0; k < KIS_NUM_KEYS; k++)
	{
		fdw_private = lappend(fdw_private, makeInteger(qual_pos[k]));
		fdw_private = lappend(fdw_private,
							  makeInteger(qual_pos[k] >= 0 && quals[k].is_array));
		fdw_private = lappend(fdw_private,
							  makeInteger(qual_pos[k] >= 0 ? quals[k].nconst : -1));
	}
	fdw_private = lappend(fdw_private, needed_attnums(baserel, local_quals));

	return make_foreignscan(tlist, local_quals, baserel->relid, fdw_exprs,
							fdw_private, NIL, NIL, outer_plan);
}

/* ----------------------------------------------------------------
 * Execution
 * ----------------------------------------------------------------
 */

/* Decide what fills each column, and look up its input function */
static void
build_column_map(KisScanState *st, List *needed)
{
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
		else if (strcmp(name, "symbol") == 0)
			col->source = KIS_COL_SYMBOL;
		else if (strcmp(name, "market") == 0 && st->config.endpoint->has_market)
			col->source = KIS_COL_MARKET;
		else if (strcmp(name, "fetched_at") == 0)
			col->source = KIS_COL_FETCHED_AT;
		else if (strcmp(name, "error") == 0)
			col->source = KIS_COL_ERROR;
		else if (strcmp(name, "raw") == 0)
			col->source = KIS_COL_RAW;
		else
		{
			col->source = KIS_COL_FIELD;
			col->field = kis_endpoint_field(st->config.endpoint, name);
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
	MemoryContext old;
	RangeTblEntry *rte;
	Oid			userid;
	List	   *needed;

	node->fdw_state = st;
	st->rel = node->ss.ss_currentRelation;
	for (int k = 0; k < KIS_NUM_KEYS; k++)
	{
		st->qual_pos[k] = intVal(list_nth(fsplan->fdw_private, k * 3));
		st->qual_is_array[k] = intVal(list_nth(fsplan->fdw_private, k * 3 + 1));
		st->planned[k] = intVal(list_nth(fsplan->fdw_private, k * 3 + 2));
	}
	needed = (List *) list_nth(fsplan->fdw_private, KIS_NUM_KEYS * 3);

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

/*
 * The distinct values of one key, from its pushed-down condition, or the
 * table's default when there is none.  NULLs match nothing and are dropped.
 */
static List *
key_values(ForeignScanState *node, KisScanState *st, KisKeyColumn key,
		   const char *default_value)
{
	ExprContext *econtext = node->ss.ps.ps_ExprContext;
	List	   *values = NIL;
	List	   *unique = NIL;
	ExprState  *es;
	Datum		d;
	bool		isnull;
	Oid			type;
	ListCell   *lc;

	if (st->qual_pos[key] < 0)
		return list_make1(pstrdup(default_value));

	es = (ExprState *) list_nth(st->key_exprs, st->qual_pos[key]);
	d = ExecEvalExprSwitchContext(es, econtext, &isnull);
	type = exprType((Node *) es->expr);
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

/* Evaluate the keys, check them, and queue one request per key */
static void
start_run(ForeignScanState *node, KisScanState *st)
{
	const KisEndpoint *ep = st->config.endpoint;
	const char *tr_id = kis_endpoint_tr_id(ep, st->config.environment);
	List	   *symbols;
	List	   *markets;
	ListCell   *ls;
	ListCell   *lm;
	MemoryContext old;

	st->run_cxt = AllocSetContextCreate(st->scan_cxt, "kis_fdw run",
										ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(st->run_cxt);

	symbols = key_values(node, st, KIS_KEY_SYMBOL, NULL);
	markets = key_values(node, st, KIS_KEY_MARKET, st->config.market);
	foreach(ls, symbols)
	{
		if (!kis_symbol_is_valid(ep->symbol_kind, lfirst(ls)))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid symbol \"%s\"", (char *) lfirst(ls)),
					 errhint("%s", kis_symbol_hint(ep->symbol_kind))));
	}
	foreach(lm, markets)
	{
		if (!kis_market_is_valid(lfirst(lm)))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid market \"%s\"", (char *) lfirst(lm)),
					 errhint("Valid markets are: J (KRX), NX (Nextrade), UN (both).")));
	}

	st->nkeys = list_length(symbols) * list_length(markets);
	st->skipped = NIL;
	if (st->nkeys > 0)
	{
		st->fetcher = kis_fetch_begin(st->run_cxt, &st->config, &st->stats);
		foreach(ls, symbols)
		{
			foreach(lm, markets)
			{
				KisKey	   *key = palloc(sizeof(KisKey));

				key->symbol = lfirst(ls);
				key->market = lfirst(lm);
				kis_fetch_add(st->fetcher,
							  kis_endpoint_request_path(ep, key->symbol, key->market),
							  tr_id, key);
			}
		}
	}
	st->keys_requested += st->nkeys;
	MemoryContextSwitchTo(old);
}

/* Drop the current run: its context's callback frees the handles */
static void
end_run(KisScanState *st)
{
	if (st->fetcher != NULL)
		kis_fetch_end(st->fetcher);
	if (st->run_cxt != NULL)
		MemoryContextDelete(st->run_cxt);
	st->fetcher = NULL;
	st->run_cxt = NULL;
}

static void
conversion_error_callback(void *arg)
{
	KisConvContext *cc = (KisConvContext *) arg;

	if (cc->column->source == KIS_COL_FIELD)
		errcontext("column \"%s\" of foreign table \"%s\", KIS field \"%s\", symbol \"%s\"",
				   cc->column->name, RelationGetRelationName(cc->rel),
				   cc->column->field, cc->key->symbol);
	else
		errcontext("column \"%s\" of foreign table \"%s\", symbol \"%s\"",
				   cc->column->name, RelationGetRelationName(cc->rel),
				   cc->key->symbol);
}

/* The KIS text of one column, in the server encoding, or NULL */
static char *
column_text(const KisColumn *col, const KisKey *key, json_t *row,
			const KisCompletion *c, const char *error)
{
	char	   *text = NULL;

	switch (col->source)
	{
		case KIS_COL_UNUSED:
			return NULL;
		case KIS_COL_SYMBOL:
			return key->symbol;
		case KIS_COL_MARKET:
			return key->market;
		case KIS_COL_FETCHED_AT:
			return DatumGetCString(DirectFunctionCall1(timestamptz_out,
													   TimestampTzGetDatum(c->completed_at)));
		case KIS_COL_ERROR:
			return (char *) error;
		case KIS_COL_RAW:
			text = row ? kis_row_raw_text(row) : NULL;
			break;
		case KIS_COL_FIELD:
			text = row ? kis_row_field_text(row, col->field) : NULL;
			break;
	}
	if (text != NULL && GetDatabaseEncoding() != PG_UTF8)
		text = pg_any_to_server(text, strlen(text), PG_UTF8);
	return text;
}

/* Fill the slot from one answer (row NULL: a failed key under on_error 'row') */
static void
store_row(KisScanState *st, TupleTableSlot *slot, const KisKey *key, json_t *row,
		  const KisCompletion *c, const char *error)
{
	KisConvContext cc;
	ErrorContextCallback errcb;
	MemoryContext old = MemoryContextSwitchTo(st->row_cxt);

	cc.rel = st->rel;
	cc.key = key;
	errcb.callback = conversion_error_callback;
	errcb.arg = &cc;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	for (int i = 0; i < st->ncolumns; i++)
	{
		const KisColumn *col = &st->columns[i];
		char	   *text = column_text(col, key, row, c, error);

		cc.column = col;
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
handle_failure(KisScanState *st, TupleTableSlot *slot, const KisKey *key,
			   const KisCompletion *c, const char *problem)
{
	bool		not_listed = strcmp(problem, KIS_NOT_LISTED) == 0;

	switch (st->config.on_error)
	{
		case KIS_ON_ERROR_ERROR:
			if (not_listed)
				ereport(ERROR,
						(errcode(ERRCODE_FDW_ERROR),
						 errmsg("symbol \"%s\" is not listed on market %s",
								key->symbol, key->market),
						 errdetail("KIS answered without a price for it."),
						 errhint("Check the symbol, or set the table's on_error option to 'skip' or 'row'.")));
			ereport(ERROR,
					(errcode(ERRCODE_FDW_ERROR),
					 errmsg("KIS request for symbol \"%s\" failed", key->symbol),
					 errdetail("%s", problem),
					 errhint("Set the table's on_error option to 'skip' or 'row' to keep the other rows.")));
			break;
		case KIS_ON_ERROR_SKIP:
			st->skipped = lappend(st->skipped,
								  MemoryContextStrdup(st->run_cxt,
													  psprintf("%s: %s", key->symbol, problem)));
			return false;
		case KIS_ON_ERROR_ROW:
			store_row(st, slot, key, NULL, c, problem);
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
		KisCompletion *c = kis_fetch_next(st->fetcher);
		KisKey	   *key;
		char	   *problem = NULL;
		json_t	   *row = NULL;
		bool		stored;

		if (c == NULL)
			break;
		key = (KisKey *) c->arg;
		if (c->resp.outcome == KIS_OUTCOME_OK)
			row = kis_response_row(st->config.endpoint, &c->resp, &problem);
		else
			problem = kis_response_summary(&c->resp);

		if (row != NULL)
		{
			store_row(st, slot, key, row, c, NULL);
			stored = true;
		}
		else
			stored = handle_failure(st, slot, key, c, problem);
		kis_fetch_forget(c);
		if (stored)
			return slot;
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
	int			nsym = st->planned[KIS_KEY_SYMBOL];
	int			nmkt = st->qual_pos[KIS_KEY_MARKET] >= 0 ? st->planned[KIS_KEY_MARKET] : 1;

	ExplainPropertyText("KIS Endpoint", st->config.endpoint->name, es);
	if (nsym >= 0)
		ExplainPropertyInteger("KIS Symbols", NULL, nsym, es);
	else
		ExplainPropertyText("KIS Symbols", "computed at scan start", es);
	if (nsym >= 0 && nmkt >= 0)
		ExplainPropertyInteger("KIS Planned Requests", NULL, (int64) nsym * nmkt, es);

	if (es->analyze)
	{
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
