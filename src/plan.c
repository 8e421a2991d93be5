/*-------------------------------------------------------------------------
 *
 * plan.c
 *	  The planner side of a kis foreign scan: which conditions become
 *	  request keys (quals.c matches them), what a scan costs, the paths it
 *	  offers (a batched scan of the keys given in WHERE, and parameterized
 *	  paths for joins on symbol), and the plan that scan.c executes: what
 *	  it pushes down (a KisPushdown, pushdown.c) with its expressions as
 *	  fdw_exprs, and the columns the query reads (KisScanPrivate, plan.h).
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
#include "pushdown.h"
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
	KisKeyColumn venue_key = kis_endpoint_venue_key(ep);
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
		venues = list_make1(pstrdup(kis_endpoint_default_venue(ep, &ps->config)));
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

static void choose_key_clauses(RelOptInfo *baserel, const AttrNumber *key_attnums,
							   List *clauses, RestrictInfo **chosen);

void
kisGetForeignRelSize(PlannerInfo *root, RelOptInfo *baserel, Oid foreigntableid)
{
	KisPlanState *ps = palloc0(sizeof(KisPlanState));
	const KisEndpoint *ep;
	double		nkeys;
	RestrictInfo *chosen[KIS_NUM_LIST_KEYS];

	kis_config_for_table(foreigntableid, &ps->config);
	ep = ps->config.endpoint;
	kis_key_attnums(foreigntableid, ep, ps->key_attnums);

	choose_key_clauses(baserel, ps->key_attnums, baserel->baserestrictinfo, chosen);
	for (int k = 0; k < KIS_NUM_LIST_KEYS; k++)
	{
		if (chosen[k] != NULL &&
			kis_match_key_clause(baserel, chosen[k], ps->key_attnums, &ps->quals[k]))
			ps->has_qual[k] = true;
	}
	count_partition_symbols(foreigntableid, ps, ps->quals, ps->has_qual);

	nkeys = kis_planned_values(ps, KIS_KEY_SYMBOL, KIS_DEFAULT_KEYS) *
		kis_planned_values(ps, KIS_KEY_MARKET, 1) * kis_planned_values(ps, KIS_KEY_EXCHANGE, 1);
	if (!kis_endpoint_per_symbol(ep))
		baserel->rows = KIS_ACCOUNT_ROWS;
	else
		baserel->rows = Max(nkeys, 1) * kis_endpoint_rows_per_key(ep);
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
	if (!kis_endpoint_per_symbol(ep))
		return 1;
	return ceil(Max(nkeys, 1) / kis_endpoint_keys_per_request(ep));
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
	bool		needs_symbol = kis_endpoint_key_required(ep, KIS_KEY_SYMBOL);
	double		nkeys = baserel->rows / kis_endpoint_rows_per_key(ep);
	Cost		startup;
	Cost		total;
	ListCell   *lc;

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
partition_venue(RelOptInfo *baserel, Oid relid, KisKeyQual *q)
{
	KisPlanState *ps = (KisPlanState *) baserel->fdw_private;
	const KisEndpoint *ep = ps->config.endpoint;
	KisKeyColumn venue_key = kis_endpoint_venue_key(ep);
	const char *venue = kis_endpoint_default_venue(ep, &ps->config);
	const char *column = kis_endpoint_venue_name(ep);
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
	allowed = kis_partition_venue_allowed(rel, ep, venue);
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
 * Which condition on each list key is pushed down: of those that match,
 * the one of the lowest security level, the first among equals.  A
 * security-barrier view's condition thus decides what is sent, not one a
 * caller of the view adds (which stays a local filter): a caller must not
 * spend the view owner's app key on keys the view excludes.
 */
static void
choose_key_clauses(RelOptInfo *baserel, const AttrNumber *key_attnums, List *clauses,
				   RestrictInfo **chosen)
{
	ListCell   *lc;

	memset(chosen, 0, sizeof(RestrictInfo *) * KIS_NUM_LIST_KEYS);
	foreach(lc, clauses)
	{
		RestrictInfo *rinfo = lfirst_node(RestrictInfo, lc);
		KisKeyQual	q;

		if (!rinfo->pseudoconstant &&
			kis_match_key_clause(baserel, rinfo, key_attnums, &q) &&
			q.key < KIS_NUM_LIST_KEYS &&
			(chosen[q.key] == NULL || rinfo->security_level < chosen[q.key]->security_level))
			chosen[q.key] = rinfo;
	}
}

/*
 * Split clauses (RestrictInfos of baserel, foreign table relid) into
 * pushed-down key conditions and local filters.  One condition on each
 * list key is pushed down (choose_key_clauses; others stay local
 * filters); every date comparison narrows the date range.  Fills *pd with the pushed-down
 * conditions and their expressions, and returns the local filters (bare
 * clauses).
 */
List *
kis_plan_keys(RelOptInfo *baserel, Oid relid, List *clauses, KisPushdown *pd)
{
	KisPlanState *ps = (KisPlanState *) baserel->fdw_private;
	const KisEndpoint *ep = ps->config.endpoint;
	List	   *local_quals = NIL;
	KisKeyQual	quals[KIS_NUM_LIST_KEYS];
	bool		has_qual[KIS_NUM_LIST_KEYS];
	RestrictInfo *chosen[KIS_NUM_LIST_KEYS];
	List	   *also = NIL;
	ListCell   *lc;

	kis_pushdown_init(pd);
	choose_key_clauses(baserel, ps->key_attnums, clauses, chosen);
	foreach(lc, clauses)
	{
		RestrictInfo *rinfo = lfirst_node(RestrictInfo, lc);
		KisKeyQual	q;

		if (rinfo->pseudoconstant)
			continue;
		if (kis_match_key_clause(baserel, rinfo, ps->key_attnums, &q) &&
			q.key != KIS_KEY_DATE && chosen[q.key] != rinfo)
		{
			/* a further condition on the key: it narrows what is sent */
			also = lappend(also, rinfo);
			local_quals = lappend(local_quals, rinfo->clause);
		}
		else if (kis_match_key_clause(baserel, rinfo, ps->key_attnums, &q))
		{
			if (q.key == KIS_KEY_DATE)
			{
				kis_pushdown_add_date(pd, q.op, q.expr, KIS_DATE_QUERY);
				if (q.loose)
					local_quals = lappend(local_quals, rinfo->clause);
			}
			else
			{
				kis_pushdown_set_key(pd, q.key, q.expr, q.op == KIS_OP_IN, q.nconst);
				quals[q.key] = q;
			}
		}
		else
			local_quals = lappend(local_quals, rinfo->clause);
	}

	/* after the keys' own conditions: each narrows a key that has one */
	foreach(lc, also)
	{
		KisKeyQual	q;

		if (kis_match_key_clause(baserel, lfirst(lc), ps->key_attnums, &q))
			kis_pushdown_add_also(pd, q.key, q.expr, q.op == KIS_OP_IN);
	}

	if (kis_endpoint_per_symbol(ep))
	{
		KisKeyColumn venue_key = kis_endpoint_venue_key(ep);

		if (!kis_pushdown_has_key(pd, venue_key) &&
			ps->key_attnums[venue_key] != InvalidAttrNumber &&
			partition_venue(baserel, relid, &quals[venue_key]))
			kis_pushdown_set_key(pd, venue_key, quals[venue_key].expr,
								 quals[venue_key].op == KIS_OP_IN, quals[venue_key].nconst);
	}

	/* a partition's share of the symbols given as constants */
	for (int k = 0; k < KIS_NUM_LIST_KEYS; k++)
		has_qual[k] = kis_pushdown_has_key(pd, k);
	count_partition_symbols(relid, ps, quals, has_qual);
	if (has_qual[KIS_KEY_SYMBOL])
		pd->keys[KIS_KEY_SYMBOL].nplanned = quals[KIS_KEY_SYMBOL].nconst;
	return local_quals;
}

/*
 * A partition's bound on "date" narrows its range too (docs/partitions.md);
 * crossing the query's bounds, it matches nothing.  Adds its date
 * conditions to *pd.
 */
void
kis_plan_partition_dates(PlannerInfo *root, RelOptInfo *baserel, Oid relid,
						 KisPushdown *pd)
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
			kis_pushdown_add_date(pd, q.op, q.expr, KIS_DATE_PARTITION_BOUND);
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
	KisPushdown pd;
	List	   *fdw_private;

	/* scan_clauses has the join clauses too when the path is parameterized */
	local_quals = kis_plan_keys(baserel, foreigntableid, scan_clauses, &pd);
	kis_plan_partition_dates(root, baserel, foreigntableid, &pd);

	for (KisKeyColumn k = KIS_KEY_SYMBOL; kis_endpoint_is_declared(ep) && k < KIS_NUM_LIST_KEYS; k++)
	{
		if (kis_endpoint_key_required(ep, k) && !kis_pushdown_has_key(&pd, k))
			ereport(ERROR,
					(errcode(ERRCODE_FDW_ERROR),
					 errmsg("a scan of foreign table \"%s\" needs a condition on \"%s\"",
							get_rel_name(foreigntableid), kis_endpoint_key_column(ep, k)),
					 errdetail("Column \"%s\" fills a parameter of TR %s, and the table's params option gives it no value.",
							   kis_endpoint_key_column(ep, k), ep->name),
					 errhint("Add WHERE %s = '...', %s IN (...), join on it, or give the parameter a value in params.",
							 kis_endpoint_key_column(ep, k), kis_endpoint_key_column(ep, k))));
	}
	if (kis_endpoint_key_required(ep, KIS_KEY_SYMBOL) && !kis_pushdown_has_key(&pd, KIS_KEY_SYMBOL))
		ereport(ERROR,
				(errcode(ERRCODE_FDW_ERROR),
				 errmsg("a scan of foreign table \"%s\" needs a condition on \"symbol\"",
						get_rel_name(foreigntableid)),
				 ps->key_attnums[KIS_KEY_SYMBOL] == InvalidAttrNumber ?
				 errdetail("The table has no column named \"symbol\".") :
				 errdetail("KIS answers for given symbols only; kis_fdw never crawls a whole market."),
				 errhint("Add WHERE symbol = '005930', symbol IN (...), symbol = ANY (ARRAY(SELECT symbol FROM ...)), or join on symbol.")));

	/* in KisScanPrivate's order */
	fdw_private = list_make2(kis_pushdown_to_list(&pd), needed_attnums(baserel, local_quals));
	return make_foreignscan(tlist, local_quals, baserel->relid, pd.exprs, fdw_private,
							NIL, NIL, outer_plan);
}
