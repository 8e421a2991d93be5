/*-------------------------------------------------------------------------
 *
 * plan.c
 *	  The planner side of a kis foreign scan: which conditions become
 *	  request keys (quals.c matches them), what a scan costs, the paths it
 *	  offers (a batched scan of the keys given in WHERE, and parameterized
 *	  paths for joins on symbol), and the plan that scan.c executes.
 *
 * The plan's fdw_private is a list of three integer lists:
 *	  keys     per list key (symbol, market, exchange): position of its
 *	           expression in fdw_exprs or -1, whether it is an array, and
 *	           how many values it has at plan time or -1
 *	  dates    per date condition: operator, position in fdw_exprs, and
 *	           whether it is the query's (0) or the partition's bound
 *	           (KIS_DATE_PARTITION_BOUND)
 *	  needed   attribute numbers of the columns the query reads
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/table.h"
#include "foreign/fdwapi.h"
#include "nodes/makefuncs.h"
#include "optimizer/cost.h"
#include "optimizer/optimizer.h"
#include "optimizer/pathnode.h"
#include "optimizer/planmain.h"
#include "optimizer/restrictinfo.h"
#include "utils/lsyscache.h"

#include "compat.h"
#include "endpoints.h"
#include "keys.h"
#include "options.h"
#include "partition.h"
#include "plan.h"
#include "quals.h"
#include "requests.h"

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

/* Time a scan of nrequests takes, as startup and total cost */
void
kis_estimate_cost(const KisConfig *config, double nrequests, double rows,
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

/*
 * One request per rescan of a parameterized path: a nested loop sends
 * them one after another, each waiting for the rate gate.
 */
static void
estimate_rescan_cost(const KisConfig *config, double rows, Cost *startup, Cost *total)
{
	double		ms = KIS_ASSUMED_LATENCY_MS;

	if (config->rate_limit > 0)
		ms = Max(ms, 1000.0 / config->rate_limit);
	*startup = KIS_STARTUP_COST + ms * KIS_COST_PER_MS;
	*total = *startup + rows * cpu_tuple_cost;
}

/* How many values a list key gives: its known count, or a guess */
double
kis_planned_values(const KisPlanState *ps, KisKeyColumn key, double if_unknown)
{
	if (!ps->has_qual[key])
		return key == KIS_KEY_SYMBOL ? if_unknown : 1;
	return ps->quals[key].nconst >= 0 ? ps->quals[key].nconst : if_unknown;
}

/*
 * A partition asks only for the keys its bound allows (partition.c): of
 * symbols given as constants, count the ones that have a key there, so
 * that EXPLAIN and the costs show this partition's share.
 */
static void
count_partition_symbols(Oid relid, const KisPlanState *ps, KisKeyQual *quals,
						const bool *has_qual)
{
	const KisEndpoint *ep = ps->config.endpoint;
	KisKeyColumn venue_key = ep->has_exchange ? KIS_KEY_EXCHANGE : KIS_KEY_MARKET;
	KisKeyQual *q = &quals[KIS_KEY_SYMBOL];
	KisKeyQual *vq = &quals[venue_key];
	Relation	rel;
	KisPartitionFilter *filter;
	List	   *venues;
	ListCell   *ls;
	int			count = 0;

	if (!has_qual[KIS_KEY_SYMBOL] || !IsA(q->expr, Const) ||
		((Const *) q->expr)->constisnull || !get_rel_relispartition(relid))
		return;
	if (!has_qual[venue_key])
		venues = list_make1(ep->has_exchange ? ps->config.exchange : ps->config.market);
	else if (IsA(vq->expr, Const) && !((Const *) vq->expr)->constisnull)
		venues = kis_key_strings(((Const *) vq->expr)->constvalue,
								 ((Const *) vq->expr)->consttype, vq->op == KIS_OP_IN);
	else
		return;

	rel = table_open(relid, NoLock);
	filter = kis_partition_filter_create(rel, ep);
	foreach(ls, kis_key_strings(((Const *) q->expr)->constvalue,
								((Const *) q->expr)->consttype, q->op == KIS_OP_IN))
	{
		ListCell   *lv;

		foreach(lv, venues)
		{
			KisKey		key = {lfirst(ls), lfirst(lv)};

			if (kis_partition_keys(filter, list_make1(&key)) != NIL)
			{
				count++;
				break;
			}
		}
	}
	table_close(rel, NoLock);
	q->nconst = count;
}

void
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
	count_partition_symbols(foreigntableid, ps, ps->quals, ps->has_qual);

	nkeys = kis_planned_values(ps, KIS_KEY_SYMBOL, KIS_DEFAULT_KEYS) *
		kis_planned_values(ps, KIS_KEY_MARKET, 1) * kis_planned_values(ps, KIS_KEY_EXCHANGE, 1);
	if (ep->symbol_kind == KIS_SYMBOL_NONE)
		baserel->rows = KIS_ACCOUNT_ROWS;
	else if (ep->paging == KIS_PAGING_DATE)
		baserel->rows = Max(nkeys, 1) * ep->page_rows;
	else
		baserel->rows = Max(nkeys, 1);
	baserel->fdw_private = ps;
}

/*
 * Whether an Append may run this scan alongside its siblings (scan.c's
 * async callbacks): the async_capable option of the table, else of its
 * server, true by default.
 */
bool
kisIsForeignPathAsyncCapable(ForeignPath *path)
{
	KisPlanState *ps = (KisPlanState *) path->path.parent->fdw_private;

	return ps->config.async_capable;
}

/* Requests of the first round: one per key, or per batch of keys */
double
kis_planned_requests(const KisEndpoint *ep, double nkeys)
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
void
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
		kis_estimate_cost(&ps->config, kis_planned_requests(ep, nkeys), baserel->rows,
						  &startup, &total);
	else
		startup = total = KIS_NO_KEY_COST;

	add_path(baserel, (Path *)
			 kis_create_foreignscan_path(root, baserel, NULL, baserel->rows,
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
		estimate_rescan_cost(&ps->config, rows, &startup, &total);
		add_path(baserel, (Path *)
				 kis_create_foreignscan_path(root, baserel, NULL, rows,
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

/*
 * A partition's bound on market (or exchange) gives the venues its requests
 * use when the query names none (docs/partitions.md): FOR VALUES IN ('NX')
 * reads NX whatever the table's market option says.  Returns true with *q
 * set when the bound names them (= or IN).  A bound that names none (a
 * range, a default partition) must let in the table's own venue, or the
 * partition could never hold a row: that is an ERROR, not an empty answer.
 * (No FDW callback runs at CREATE or ATTACH PARTITION, so the planner
 * checks it.)
 */
static bool
partition_venue(RelOptInfo *baserel, Oid relid, KisKeyColumn venue_key, KisKeyQual *q)
{
	KisPlanState *ps = (KisPlanState *) baserel->fdw_private;
	const char *venue = venue_key == KIS_KEY_EXCHANGE ? ps->config.exchange : ps->config.market;
	const char *column = venue_key == KIS_KEY_EXCHANGE ? "exchange" : "market";
	Relation	rel;
	bool		allowed;
	ListCell   *lc;

	if (!get_rel_relispartition(relid))
		return false;
	foreach(lc, kis_partition_bound_clauses(relid, baserel->relid))
	{
		RestrictInfo *rinfo = makeNode(RestrictInfo);	/* the matcher reads the clause */

		rinfo->clause = lfirst(lc);
		if (kis_match_key_clause(baserel, rinfo, ps->key_attnums, q) && q->key == venue_key)
			return true;
	}
	rel = table_open(relid, NoLock);
	allowed = kis_partition_venue_allowed(rel, ps->config.endpoint, venue);
	table_close(rel, NoLock);
	if (!allowed)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
				 errmsg("partition \"%s\" cannot hold rows of its %s \"%s\"",
						get_rel_name(relid), column, venue),
				 errdetail("Without a condition on \"%s\" its requests use the table's %s option (\"%s\"), which its partition bound excludes, and its bound names no %s to use instead.",
						   column, column, venue, column),
				 errhint("Bound the partition with FOR VALUES IN (...) on \"%s\", or set its %s option to a value its bound allows.",
						 column, column)));
	return false;
}

/*
 * Split clauses (RestrictInfos of baserel, foreign table relid) into
 * pushed-down key conditions
 * and local filters.  The first condition on a list key is pushed down
 * (others stay local filters); every date comparison narrows the date
 * range.  Fills *exprs with the pushed expressions, *keys and *dates with
 * the integer lists described at the top of this file, and returns the
 * local filters (bare clauses).  *has_symbol says whether a symbol
 * condition was found.
 */
List *
kis_plan_keys(RelOptInfo *baserel, Oid relid, List *clauses, List **exprs,
			  List **keys, List **dates, bool *has_symbol)
{
	KisPlanState *ps = (KisPlanState *) baserel->fdw_private;
	List	   *local_quals = NIL;
	int			qual_pos[KIS_NUM_LIST_KEYS];
	KisKeyQual	quals[KIS_NUM_LIST_KEYS];
	ListCell   *lc;

	*exprs = NIL;
	*keys = NIL;
	*dates = NIL;
	for (int k = 0; k < KIS_NUM_LIST_KEYS; k++)
		qual_pos[k] = -1;

	foreach(lc, clauses)
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
				*dates = lappend_int(*dates, q.op);
				*dates = lappend_int(*dates, list_length(*exprs));
				*dates = lappend_int(*dates, 0);	/* the query's */
				if (q.loose)
					local_quals = lappend(local_quals, rinfo->clause);
			}
			else
			{
				qual_pos[q.key] = list_length(*exprs);
				quals[q.key] = q;
			}
			*exprs = lappend(*exprs, q.expr);
		}
		else
			local_quals = lappend(local_quals, rinfo->clause);
	}

	if (ps->config.endpoint->symbol_kind != KIS_SYMBOL_NONE)
	{
		KisKeyColumn venue_key = ps->config.endpoint->has_exchange ?
			KIS_KEY_EXCHANGE : KIS_KEY_MARKET;

		if (qual_pos[venue_key] < 0 && ps->key_attnums[venue_key] != InvalidAttrNumber &&
			partition_venue(baserel, relid, venue_key, &quals[venue_key]))
		{
			qual_pos[venue_key] = list_length(*exprs);
			*exprs = lappend(*exprs, quals[venue_key].expr);
		}
	}

	{
		bool		has_qual[KIS_NUM_LIST_KEYS];

		for (int k = 0; k < KIS_NUM_LIST_KEYS; k++)
			has_qual[k] = qual_pos[k] >= 0;
		count_partition_symbols(relid, ps, quals, has_qual);
	}
	for (int k = 0; k < KIS_NUM_LIST_KEYS; k++)
	{
		*keys = lappend_int(*keys, qual_pos[k]);
		*keys = lappend_int(*keys, qual_pos[k] >= 0 && quals[k].op == KIS_OP_IN);
		*keys = lappend_int(*keys, qual_pos[k] >= 0 ? quals[k].nconst : -1);
	}
	*has_symbol = qual_pos[KIS_KEY_SYMBOL] >= 0;
	return local_quals;
}

/*
 * A partition's bound on "date" narrows its range too (docs/partitions.md);
 * crossing the query's bounds, it matches nothing.  Appends to *exprs and
 * *dates as kis_plan_keys lays them out.
 */
void
kis_plan_partition_dates(PlannerInfo *root, RelOptInfo *baserel, Oid relid,
						 List **exprs, List **dates)
{
	KisPlanState *ps = (KisPlanState *) baserel->fdw_private;
	ListCell   *lc;

	if (ps->key_attnums[KIS_KEY_DATE] == InvalidAttrNumber)
		return;
	foreach(lc, kis_partition_bound_clauses(relid, baserel->relid))
	{
		KisKeyQual	q;

		if (kis_match_key_clause(baserel, make_simple_restrictinfo(root, lfirst(lc)),
								 ps->key_attnums, &q) &&
			q.key == KIS_KEY_DATE && q.op != KIS_OP_IN)
		{
			*dates = lappend_int(*dates, q.op);
			*dates = lappend_int(*dates, list_length(*exprs));
			*dates = lappend_int(*dates, KIS_DATE_PARTITION_BOUND);
			*exprs = lappend(*exprs, q.expr);
		}
	}
}

ForeignScan *
kisGetForeignPlan(PlannerInfo *root, RelOptInfo *baserel, Oid foreigntableid,
				  ForeignPath *best_path, List *tlist, List *scan_clauses,
				  Plan *outer_plan)
{
	KisPlanState *ps = (KisPlanState *) baserel->fdw_private;
	const KisEndpoint *ep = ps->config.endpoint;
	List	   *local_quals;
	List	   *fdw_exprs;
	List	   *keys;
	List	   *dates;
	bool		has_symbol;

	/* scan_clauses has the join clauses too when the path is parameterized */
	local_quals = kis_plan_keys(baserel, foreigntableid, scan_clauses, &fdw_exprs, &keys,
								&dates, &has_symbol);
	kis_plan_partition_dates(root, baserel, foreigntableid, &fdw_exprs, &dates);

	if (ep->symbol_kind != KIS_SYMBOL_NONE && !has_symbol)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_ERROR),
				 errmsg("a scan of foreign table \"%s\" needs a condition on \"symbol\"",
						get_rel_name(foreigntableid)),
				 ps->key_attnums[KIS_KEY_SYMBOL] == InvalidAttrNumber ?
				 errdetail("The table has no column named \"symbol\".") :
				 errdetail("KIS answers for given symbols only; kis_fdw never crawls a whole market."),
				 errhint("Add WHERE symbol = '005930', symbol IN (...), symbol = ANY (ARRAY(SELECT symbol FROM ...)), or join on symbol.")));

	return make_foreignscan(tlist, local_quals, baserel->relid, fdw_exprs,
							list_make3(keys, dates, needed_attnums(baserel, local_quals)),
							NIL, NIL, outer_plan);
}
