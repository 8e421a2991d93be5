/*-------------------------------------------------------------------------
 *
 * join.c
 *	  The batched join: a kis foreign table joined on its key columns to
 *	  any other relation reads the other side first, collects its distinct
 *	  keys, fetches them as one concurrent, rate-gated run (run.c), and
 *	  joins locally.  Without it, such a join is a parameterized nested
 *	  loop: one request per outer row, one after another.
 *
 * Planning: set_join_pathlist_hook offers a CustomPath for joins whose
 * inner side is a kis foreign table (a base relation), or a partitioned
 * table whose every remaining leaf partition is one, and whose join
 * clauses include "kis.symbol = <expression of the other side>" (and
 * likewise market or exchange).  Join types: INNER, LEFT (the kis side
 * nullable), SEMI and ANTI, and an inner join over the unique-ified other
 * side of an IN (SELECT ...).  The plan is a CustomScan over one child
 * plan, the other side; its scan tuple (custom_scan_tlist) is the child's
 * columns followed by the kis table's columns the join needs, so that the
 * join conditions, the filters and the target list all read that one
 * tuple.
 *
 * Execution: the first call reads the child into a tuplestore (work_mem,
 * then disk) and its distinct non-NULL keys into a hash table (at most
 * kis_fdw.batched_join_max_keys), starts one run over them and keeps the
 * fetched rows in memory, indexed by symbol.  Then it reads the stored
 * child rows again and, for each, tries the fetched rows of its symbol
 * against the join conditions.  A rescan whose parameters did not change
 * reads the stored rows again; one whose keys turn out the same keeps the
 * fetched rows.
 *
 * Into a partitioned table, the run is one per leaf partition, each over
 * the keys its partition bound admits (partition.c: a partition never
 * asks for another's key), and the runs are driven together, so that the
 * requests of partitions on different servers, app keys and rate gates
 * overlap.  A fetched row keeps only the columns the join reads, in the
 * scan tuple's order, so partitions whose columns are numbered unlike
 * their parent's need no conversion later.
 *
 * The kis table's own conditions (date ranges, a market) are pushed down
 * as in a scan (kis_plan_keys) and checked again on each row.  All join
 * conditions are checked on each pair, so the result never depends on
 * what was pushed down.
 *
 * What this relies on in PostgreSQL's planner and executor, and why the
 * design is a CustomScan from set_join_pathlist_hook: docs/batched-join.md.
 *
 * Memory of a join node (es_query_cxt, which itself holds the node's slots
 * and their descriptors: the executor's tuple table outlives the node):
 *	  "kis_fdw join"        config, expressions, a runner (run.c) per
 *	                        kis table or leaf partition, tuplestore
 *	    "kis_fdw join keys" the current batch's keys and fetched rows;
 *	                        reset when the keys change
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/sysattr.h"
#include "access/table.h"
#include "commands/explain.h"
#include "common/hashfn.h"
#include "executor/executor.h"
#include "foreign/fdwapi.h"
#include "miscadmin.h"
#include "nodes/extensible.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/cost.h"
#include "optimizer/optimizer.h"
#include "optimizer/pathnode.h"
#include "optimizer/paths.h"
#include "optimizer/restrictinfo.h"
#include "optimizer/tlist.h"
#include "parser/parsetree.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/ruleutils.h"
#include "utils/selfuncs.h"
#include "utils/tuplestore.h"

#include "compat.h"
#include "endpoints.h"
#include "join.h"
#include "keys.h"
#include "options.h"
#include "plan.h"
#include "pushdown.h"
#include "quals.h"
#include "requests.h"
#include "run.h"

#define KIS_JOIN_NAME	"KIS Batched Join"

/*
 * Setting up a batch (tuplestore, hash tables) costs a little more than
 * one request of a nested loop, so that one outer row keeps the
 * parameterized path, and two rows or more batch.
 */
#define KIS_JOIN_STARTUP_COST	200.0

/* GUCs */
static bool kis_enable_batched_join = true;
static int	kis_batched_join_max_keys = 10000;

static set_join_pathlist_hook_type prev_join_pathlist_hook = NULL;

/*
 * custom_private of the plan, a list of:
 *	  jointype      JOIN_INNER, JOIN_LEFT, JOIN_SEMI or JOIN_ANTI
 *	  relid         the kis foreign table, or the partitioned table
 *	  userid        the role whose user mapping it uses (InvalidOid: the
 *	                current user)
 *	  nouter        columns of the child's tuple (first in the scan tuple)
 *	  ninner        columns of the kis table following them
 *	  key_names     "symbol", and "market" or "exchange" when joined on it
 *	  parts         per kis foreign table (the table itself, or each leaf
 *	                partition): a list of its relid, its attnum of each
 *	                inner column of the scan tuple, and what its own key
 *	                conditions push down (kis_pushdown_to_list)
 * custom_exprs: join conditions, other conditions (outer joins: applied
 * after the join), the other side's symbol expression and venue
 * expression (or NULL), per part its own key expressions, and the
 * conditions that read no row (pseudoconstant: the gate, evaluated once
 * per batch).
 */
enum
{
	PRIV_JOINTYPE,
	PRIV_RELID,
	PRIV_USERID,
	PRIV_NOUTER,
	PRIV_NINNER,
	PRIV_KEY_NAMES,
	PRIV_PARTS
};

enum
{
	PART_RELID,
	PART_ATTNOS,
	PART_PUSHDOWN
};

enum
{
	EXPRS_JOIN_QUALS,
	EXPRS_OTHER_QUALS,
	EXPRS_SYMBOL,
	EXPRS_VENUE,
	EXPRS_PARTS,
	EXPRS_GATE
};

/* What the path carries to PlanCustomPath */
typedef struct KisJoinInfo
{
	JoinType	jointype;
	RelOptInfo *kisrel;			/* the kis table, or the partitioned table */
	List	   *leaves;			/* kis tables: kisrel, or its leaf partitions */
	RestrictInfo *symbol_clause;
	RestrictInfo *venue_clause; /* or NULL */
	Expr	   *symbol_expr;	/* the other side's value */
	Expr	   *venue_expr;
	List	   *restrictlist;
} KisJoinInfo;

/* A key of the batch: a symbol and, when the join gives it, a venue */
typedef struct KisJoinKey
{
	KisKey		key;			/* venue NULL when not joined on it */
} KisJoinKey;

/* The fetched rows of one symbol */
typedef struct KisJoinRows
{
	char	   *symbol;			/* hash key */
	List	   *rows;			/* MinimalTuples */
} KisJoinRows;

/*
 * One kis foreign table the join fetches from: the table itself, or one
 * leaf partition of a partitioned table.
 */
typedef struct KisJoinPart
{
	Relation	rel;
	KisConfig	config;
	KisKeyExprs keys;
	AttrNumber *attnos;			/* its column of each inner scan column */
	AttrNumber	symbol_attno;
	Oid			symbol_type;	/* its type (a domain: the base type) */
	KisRunner  *runner;			/* NULL under plain EXPLAIN */
	TupleTableSlot *fetch_slot; /* the runner's tuples */
	KisRunKeys	last;			/* the fetched rows' keys (its venues) */
	bool		running;		/* in fetch_rows: its run not yet ended */
} KisJoinPart;

typedef struct KisJoinState
{
	CustomScanState css;
	MemoryContext cxt;
	MemoryContext batch_cxt;

	JoinType	jointype;
	int			nouter;
	int			ninner;
	List	   *key_names;
	ExprState  *join_qual;
	ExprState  *other_qual;
	ExprState  *symbol_expr;
	ExprState  *venue_expr;
	ExprState  *gate;
	Oid			symbol_type;
	Oid			venue_type;

	char	   *relname;		/* the kis table, or the partitioned table */
	bool		partitioned;
	int			nparts;
	KisJoinPart *parts;

	Tuplestorestate *outer_rows;
	TupleTableSlot *outer_slot; /* reads them back */
	TupleTableSlot *build_slot; /* a fetched row's inner columns, built */
	TupleTableSlot *inner_slot; /* a fetched row's inner columns, stored */

	/* the batch */
	bool		fetched;		/* outer rows read, keys fetched */
	bool		gate_open;		/* the gate held: the fetched rows count */
	bool		have_last;		/* parts' last and last_pairs are valid */
	List	   *last_pairs;		/* joined on the venue: the fetched KisKeys */
	HTAB	   *rows_by_symbol;

	/* the join */
	bool		have_outer;
	bool		matched;
	List	   *candidates;
	int			next_candidate;

	/* EXPLAIN ANALYZE */
	int64		batches;
	int64		batches_reused;
	int64		outer_total;
	int64		keys_total;
} KisJoinState;

static CustomPathMethods kis_join_path_methods;
static CustomScanMethods kis_join_scan_methods;
static CustomExecMethods kis_join_exec_methods;

/* ----------------------------------------------------------------
 * Planning
 * ----------------------------------------------------------------
 */

/*
 * Is rel a kis foreign table, a plain base relation?  A leaf partition
 * counts too: a partitionwise join joins it on its own.
 */
static bool
is_kis_baserel(PlannerInfo *root, RelOptInfo *rel)
{
	return (rel->reloptkind == RELOPT_BASEREL ||
			rel->reloptkind == RELOPT_OTHER_MEMBER_REL) &&
		rel->rtekind == RTE_RELATION &&
		rel->fdwroutine != NULL &&
		rel->fdwroutine->GetForeignRelSize == kisGetForeignRelSize &&
		!planner_rt_fetch(rel->relid, root)->inh;
}

/*
 * Add the leaf partitions of partitioned table rel that survived pruning
 * to *leaves; false if one is not a kis foreign table (a local partition:
 * the nested loop answers).  Sub-partitions are walked down.
 */
static bool
add_kis_leaves(PlannerInfo *root, RelOptInfo *rel, List **leaves)
{
	ListCell   *lc;

	foreach(lc, root->append_rel_list)
	{
		AppendRelInfo *appinfo = lfirst_node(AppendRelInfo, lc);
		RelOptInfo *child;
		RangeTblEntry *rte;

		if (appinfo->parent_relid != rel->relid)
			continue;
		child = root->simple_rel_array[appinfo->child_relid];
		if (child == NULL || IS_DUMMY_REL(child))
			continue;			/* pruned */
		rte = planner_rt_fetch(child->relid, root);
		if (rte->inh)
		{
			if (rte->relkind != RELKIND_PARTITIONED_TABLE ||
				!add_kis_leaves(root, child, leaves))
				return false;
		}
		else if (child->fdwroutine == NULL ||
				 child->fdwroutine->GetForeignRelSize != kisGetForeignRelSize)
			return false;
		else
			*leaves = lappend(*leaves, child);
	}
	return true;
}

/*
 * The kis foreign tables a join into rel fetches from: rel itself, or the
 * remaining leaf partitions of a partitioned table, all of one endpoint;
 * NIL when the batched join does not apply.
 */
static List *
kis_join_leaves(PlannerInfo *root, RelOptInfo *rel)
{
	RangeTblEntry *rte;
	List	   *leaves = NIL;
	const KisEndpoint *ep = NULL;
	ListCell   *lc;

	/*
	 * A relation proven empty (its conditions fold to false) was never
	 * planned as a scan (no fdw_private): the planner's empty join answers.
	 */
	if (IS_DUMMY_REL(rel))
		return NIL;
	if (is_kis_baserel(root, rel))
		return rel->fdw_private != NULL ? list_make1(rel) : NIL;
	if (rel->reloptkind != RELOPT_BASEREL || rel->rtekind != RTE_RELATION)
		return NIL;
	rte = planner_rt_fetch(rel->relid, root);
	if (!rte->inh || rte->relkind != RELKIND_PARTITIONED_TABLE ||
		!add_kis_leaves(root, rel, &leaves))
		return NIL;
	foreach(lc, leaves)
	{
		KisPlanState *ps = (KisPlanState *) ((RelOptInfo *) lfirst(lc))->fdw_private;

		if (ep != NULL && strcmp(ps->config.endpoint->name, ep->name) != 0)
			return NIL;
		ep = ps->config.endpoint;
	}
	return leaves;
}

/*
 * A join clause "kis.<key> = <expression of the other side>", as a join
 * condition (not a filter above an outer join); its other side in *value.
 */
static RestrictInfo *
find_key_clause(RelOptInfo *kisrel, List *joinclauses, AttrNumber attnum,
				Relids outer_relids, Expr **value)
{
	AttrNumber	attnums[KIS_NUM_KEYS];
	ListCell   *lc;

	if (attnum == InvalidAttrNumber)
		return NULL;
	for (int k = 0; k < KIS_NUM_KEYS; k++)
		attnums[k] = InvalidAttrNumber;
	attnums[KIS_KEY_SYMBOL] = attnum;
	foreach(lc, joinclauses)
	{
		RestrictInfo *rinfo = lfirst_node(RestrictInfo, lc);
		KisKeyQual	q;

		if (kis_match_key_clause(kisrel, rinfo, attnums, &q) &&
			q.op == KIS_OP_EQ &&
			bms_is_subset(pull_varnos(NULL, (Node *) q.expr), outer_relids))
		{
			*value = q.expr;
			return rinfo;
		}
	}
	return NULL;
}

/*
 * A column the node can fill: a user column, or tableoid (which partition
 * a row came from)
 */
static bool
plain_column(Node *node)
{
	return IsA(node, Var) &&
		(((Var *) node)->varattno > 0 ||
		 ((Var *) node)->varattno == TableOidAttributeNumber);
}

/*
 * The kis side is read as plain columns: what it gives the join (no
 * placeholders) and what its own conditions read (no whole row, no other
 * system column).
 */
static bool
plain_columns(RelOptInfo *rel)
{
	ListCell   *lc;

	foreach(lc, rel->reltarget->exprs)
	{
		if (!plain_column(lfirst(lc)))
			return false;
	}
	foreach(lc, rel->baserestrictinfo)
	{
		ListCell   *lv;
		List	   *vars = pull_var_clause((Node *) lfirst_node(RestrictInfo, lc)->clause,
										   PVC_RECURSE_PLACEHOLDERS);

		foreach(lv, vars)
		{
			if (!plain_column(lfirst(lv)))
				return false;
		}
	}
	return true;
}

/*
 * Does the join's output read each column of the kis table in one form
 * only?  (A column both inside and outside a placeholder evaluated above
 * the nullable side could come in two.)  The scan tuple has one entry per
 * column.
 */
static bool
one_form_per_column(RelOptInfo *joinrel, Index relid)
{
	List	   *vars = pull_var_clause((Node *) joinrel->reltarget->exprs,
									   PVC_RECURSE_PLACEHOLDERS);
	ListCell   *la;
	ListCell   *lb;

	foreach(la, vars)
	{
		Var		   *a = lfirst_node(Var, la);

		if (a->varno != relid)
			continue;
		for_each_cell(lb, vars, lnext(vars, la))
		{
			Var		   *b = lfirst_node(Var, lb);

			if (b->varno == relid && b->varattno == a->varattno &&
				!bms_equal(kis_var_nullingrels(a), kis_var_nullingrels(b)))
				return false;
		}
	}
	return true;
}

/*
 * Cost: the other side, then one batch of requests for its distinct keys,
 * then a pass over the stored rows.  Nothing is returned before the batch
 * is complete.
 */
static void
cost_batched_join(PlannerInfo *root, CustomPath *cpath, Path *outer_path,
				  const KisPlanState *ps, KisJoinInfo *info, double rows)
{
	const KisEndpoint *ep = ps->config.endpoint;
	double		nouter = Max(outer_path->rows, 1);
	double		ndistinct;
	double		nkeys;
	double		fetched;
	Cost		fetch_startup;
	Cost		fetch_total;
	QualCost	quals;
	Cost		per_outer;

	ndistinct = estimate_num_groups(root, list_make1(info->symbol_expr), nouter,
									NULL, NULL);
	nkeys = Max(ndistinct, 1);
	if (info->venue_clause == NULL)
		nkeys *= kis_planned_values(ps, kis_endpoint_venue_key(ep), 1);
	fetched = nkeys * kis_endpoint_rows_per_key(ep);
	kis_estimate_cost(&ps->config, kis_planned_requests(ep, nkeys), fetched,
					  &fetch_startup, &fetch_total);
	cost_qual_eval(&quals, info->restrictlist, root);

	/* store and re-read each outer row; try the rows of its symbol */
	per_outer = 2 * cpu_tuple_cost + quals.per_tuple * Max(fetched / nkeys, 1);
	cpath->path.rows = rows;
	cpath->path.startup_cost = KIS_JOIN_STARTUP_COST + outer_path->total_cost + fetch_total +
		quals.startup + nouter * cpu_tuple_cost;
	cpath->path.total_cost = cpath->path.startup_cost + nouter * per_outer +
		rows * cpu_tuple_cost;
}

/*
 * set_join_pathlist_hook: offer the batched join where it applies.  The
 * hook sees each join twice (both orders); only the order with the kis
 * table inside matches.
 */
static void
kis_join_pathlist(PlannerInfo *root, RelOptInfo *joinrel, RelOptInfo *outerrel,
				  RelOptInfo *innerrel, JoinType jointype, JoinPathExtraData *extra)
{
	KisPlanState *ps;
	KisJoinInfo *info;
	CustomPath *cpath;
	Path	   *outer_path;
	List	   *joinclauses;
	List	   *leaves;
	AttrNumber	key_attnums[KIS_NUM_KEYS];
	ListCell   *lc;

	if (prev_join_pathlist_hook)
		prev_join_pathlist_hook(root, joinrel, outerrel, innerrel, jointype, extra);

	if (!kis_enable_batched_join)
		return;
	if (jointype != JOIN_INNER && jointype != JOIN_LEFT && jointype != JOIN_SEMI &&
		jointype != JOIN_ANTI && jointype != JOIN_UNIQUE_OUTER)
		return;
	leaves = kis_join_leaves(root, innerrel);
	if (leaves == NIL)
		return;
	foreach(lc, leaves)
	{
		ps = (KisPlanState *) ((RelOptInfo *) lfirst(lc))->fdw_private;
		if (!kis_endpoint_per_symbol(ps->config.endpoint) ||
			ps->has_qual[KIS_KEY_SYMBOL] ||
			ps->key_attnums[KIS_KEY_SYMBOL] == InvalidAttrNumber)
			return;				/* a scan needs no keys from the join */
	}
	ps = (KisPlanState *) ((RelOptInfo *) linitial(leaves))->fdw_private;
	/* the key columns as the join's clauses name them (a partition's parent) */
	kis_key_attnums(planner_rt_fetch(innerrel->relid, root)->relid, ps->config.endpoint,
					key_attnums);

	/* an unparameterized join over an unparameterized other side */
	if (!bms_is_empty(joinrel->lateral_relids) || !bms_is_empty(innerrel->lateral_relids))
		return;
	outer_path = outerrel->cheapest_total_path;
	if (outer_path == NULL || outer_path->param_info != NULL)
		return;
	if (jointype == JOIN_UNIQUE_OUTER)
	{
		outer_path = (Path *) create_unique_path(root, outerrel, outer_path, extra->sjinfo);
		if (outer_path == NULL)
			return;
		jointype = JOIN_INNER;
	}
	if (!plain_columns(innerrel) || !one_form_per_column(joinrel, innerrel->relid))
		return;

	/*
	 * A condition of the join that reads no row is a gate of the node (no
	 * kis rows when false), which answers for inner and semi joins; above an
	 * outer join it would mean no rows at all: the nested loop answers.
	 */
	foreach(lc, extra->restrictlist)
	{
		if (lfirst_node(RestrictInfo, lc)->pseudoconstant && IS_OUTER_JOIN(jointype))
			return;
	}

	/* the key must be a join condition, not a filter above an outer join */
	if (IS_OUTER_JOIN(jointype))
	{
		joinclauses = NIL;
		foreach(lc, extra->restrictlist)
		{
			RestrictInfo *rinfo = lfirst_node(RestrictInfo, lc);

			if (!RINFO_IS_PUSHED_DOWN(rinfo, joinrel->relids))
				joinclauses = lappend(joinclauses, rinfo);
		}
	}
	else
		joinclauses = extra->restrictlist;

	info = palloc0(sizeof(KisJoinInfo));
	info->jointype = jointype;
	info->kisrel = innerrel;
	info->leaves = leaves;
	info->restrictlist = extra->restrictlist;
	info->symbol_clause = find_key_clause(innerrel, joinclauses,
										  key_attnums[KIS_KEY_SYMBOL],
										  outerrel->relids, &info->symbol_expr);
	if (info->symbol_clause == NULL)
		return;
	info->venue_clause = find_key_clause(innerrel, joinclauses,
										 key_attnums[kis_endpoint_venue_key(ps->config.endpoint)],
										 outerrel->relids, &info->venue_expr);

	/* more keys than a batch may hold: not a run-time surprise */
	if (estimate_num_groups(root, list_make1(info->symbol_expr),
							Max(outer_path->rows, 1), NULL, NULL) > kis_batched_join_max_keys)
		return;

	cpath = makeNode(CustomPath);
	cpath->path.pathtype = T_CustomScan;
	cpath->path.parent = joinrel;
	cpath->path.pathtarget = joinrel->reltarget;
	cpath->path.param_info = NULL;
	cpath->path.parallel_aware = false;
	cpath->path.parallel_safe = false;
	cpath->path.parallel_workers = 0;
	cpath->path.pathkeys = NIL;
	cpath->custom_paths = list_make1(outer_path);
	cpath->custom_private = list_make1(info);
	cpath->methods = &kis_join_path_methods;
	cost_batched_join(root, cpath, outer_path, ps, info, joinrel->rows);

	add_path(joinrel, (Path *) cpath);
}

/*
 * expr with each Var of the kis table in the one form the scan tuple holds:
 * since PostgreSQL 16 a column of an outer join's nullable side above the
 * join is a Var naming that join (varnullingrels), while the join's
 * conditions use the plain Var, and setrefs.c matches a Var to the scan
 * tuple's entry of its column only when the two agree.  A column in the
 * join's output (output_vars) takes the output's form, any other the plain
 * one; the values are the same, since every condition is checked on the
 * pair before any null-extension.
 */
typedef struct ScanVarsContext
{
	Index		relid;			/* the kis table */
	List	   *output_vars;
} ScanVarsContext;

static Node *
as_scan_vars(Node *node, ScanVarsContext *cxt)
{
	if (node == NULL)
		return NULL;
	if (IsA(node, Var) && ((Var *) node)->varno == cxt->relid &&
		((Var *) node)->varlevelsup == 0)
	{
		Var		   *var = copyObject((Var *) node);
		Relids		nullingrels = NULL;
		ListCell   *lc;

		foreach(lc, cxt->output_vars)
		{
			Var		   *out = lfirst_node(Var, lc);

			if (out->varattno == var->varattno)
			{
				nullingrels = bms_copy(kis_var_nullingrels(out));
				break;
			}
		}
		kis_set_var_nullingrels(var, nullingrels);
		return (Node *) var;
	}
	return expression_tree_mutator(node, as_scan_vars, cxt);
}

/* The scan tuple's entry for expr, added at the end if missing */
static int
scan_column(List **tlist, Expr *expr)
{
	TargetEntry *tle = tlist_member(expr, *tlist);

	if (tle == NULL)
	{
		tle = makeTargetEntry(copyObject(expr), list_length(*tlist) + 1, NULL, false);
		*tlist = lappend(*tlist, tle);
	}
	return tle->resno;
}

static Plan *
kis_join_plan(PlannerInfo *root, RelOptInfo *rel, CustomPath *best_path,
			  List *tlist, List *clauses, List *custom_plans)
{
	KisJoinInfo *info = linitial(best_path->custom_private);
	RelOptInfo *kisrel = info->kisrel;
	KisPlanState *ps = (KisPlanState *) ((RelOptInfo *) linitial(info->leaves))->fdw_private;
	const KisEndpoint *ep = ps->config.endpoint;
	Oid			relid = planner_rt_fetch(kisrel->relid, root)->relid;
	Plan	   *outer_plan = linitial(custom_plans);
	CustomScan *cscan = makeNode(CustomScan);
	List	   *scan_tlist = NIL;
	List	   *inner_attnos = NIL;
	List	   *join_quals;
	List	   *other_quals;
	List	   *kis_quals = NIL;
	List	   *gate_quals = NIL;
	List	   *parts = NIL;
	List	   *part_exprs = NIL;
	List	   *key_names;
	List	   *vars;
	ScanVarsContext scan_vars;
	AttrNumber	key_attnums[KIS_NUM_KEYS];
	int			nouter;
	ListCell   *lc;

	/* the child's columns, in its order */
	foreach(lc, outer_plan->targetlist)
	{
		TargetEntry *tle = lfirst_node(TargetEntry, lc);

		scan_tlist = lappend(scan_tlist,
							 makeTargetEntry(copyObject(tle->expr),
											 list_length(scan_tlist) + 1, NULL, false));
	}
	nouter = list_length(scan_tlist);

	/* the join's conditions, and the kis table's own, checked on each pair */
	if (IS_OUTER_JOIN(info->jointype))
		extract_actual_join_clauses(info->restrictlist, rel->relids,
									&join_quals, &other_quals);
	else
	{
		join_quals = extract_actual_clauses(info->restrictlist, false);
		other_quals = NIL;
		gate_quals = extract_actual_clauses(info->restrictlist, true);
	}
	foreach(lc, kisrel->baserestrictinfo)
	{
		RestrictInfo *rinfo = lfirst_node(RestrictInfo, lc);

		if (rinfo->pseudoconstant)
			gate_quals = lappend(gate_quals, rinfo->clause);
		else
			kis_quals = lappend(kis_quals, rinfo->clause);
	}
	/* the kis table's own conditions first: they may be security barriers */
	join_quals = list_concat(kis_quals, join_quals);

	/*
	 * The kis table's columns: what is needed above, and what is checked.
	 * The join's own target list is read too: since PostgreSQL 16 its
	 * columns of a nullable side are Vars of their own (varnullingrels).
	 */
	scan_vars.relid = kisrel->relid;
	scan_vars.output_vars = NIL;
	foreach(lc, pull_var_clause((Node *) tlist, PVC_RECURSE_PLACEHOLDERS))
	{
		if (lfirst_node(Var, lc)->varno == kisrel->relid)
			scan_vars.output_vars = lappend(scan_vars.output_vars, lfirst(lc));
	}
	join_quals = (List *) as_scan_vars((Node *) join_quals, &scan_vars);
	other_quals = (List *) as_scan_vars((Node *) other_quals, &scan_vars);
	vars = pull_var_clause((Node *) kisrel->reltarget->exprs, 0);
	vars = list_concat(vars, pull_var_clause((Node *) rel->reltarget->exprs,
											 PVC_RECURSE_PLACEHOLDERS));
	vars = (List *) as_scan_vars((Node *) vars, &scan_vars);
	vars = list_concat(vars, pull_var_clause((Node *) join_quals, PVC_RECURSE_PLACEHOLDERS));
	vars = list_concat(vars, pull_var_clause((Node *) other_quals, PVC_RECURSE_PLACEHOLDERS));
	foreach(lc, vars)
	{
		Var		   *var = lfirst_node(Var, lc);

		if (var->varno != kisrel->relid)
			continue;
		if (scan_column(&scan_tlist, (Expr *) var) > nouter + list_length(inner_attnos))
			inner_attnos = lappend_int(inner_attnos, var->varattno);
	}
	/* the symbol column itself, by which fetched rows are found */
	kis_key_attnums(relid, ep, key_attnums);
	{
		AttrNumber	attno = key_attnums[KIS_KEY_SYMBOL];
		Oid			type;
		int32		typmod;
		Oid			collid;
		Var		   *symbol;

		get_atttypetypmodcoll(relid, attno, &type, &typmod, &collid);
		symbol = (Var *) as_scan_vars((Node *) makeVar(kisrel->relid, attno, type, typmod,
													   collid, 0), &scan_vars);
		if (scan_column(&scan_tlist, (Expr *) symbol) > nouter + list_length(inner_attnos))
			inner_attnos = lappend_int(inner_attnos, symbol->varattno);
	}

	/*
	 * Each kis table fetched from: its columns (a partition's may be
	 * numbered unlike its parent's) and its own key conditions, translated
	 * to it by the planner.
	 */
	foreach(lc, info->leaves)
	{
		RelOptInfo *leaf = lfirst(lc);
		Oid			leaf_relid = planner_rt_fetch(leaf->relid, root)->relid;
		List	   *attnos = NIL;
		KisPushdown pd;
		ListCell   *la;

		foreach(la, inner_attnos)
			attnos = lappend_int(attnos, leaf_relid == relid || lfirst_int(la) < 0 ?
								 lfirst_int(la) :
								 get_attnum(leaf_relid,
											get_attname(relid, lfirst_int(la), false)));
		(void) kis_plan_keys(leaf, leaf_relid, leaf->baserestrictinfo, &pd);
		Assert(!kis_pushdown_has_key(&pd, KIS_KEY_SYMBOL));
		kis_plan_partition_dates(root, leaf, leaf_relid, &pd);
		/* in PART_* order */
		parts = lappend(parts, list_make3(makeInteger(leaf_relid), attnos,
										  kis_pushdown_to_list(&pd)));
		part_exprs = lappend(part_exprs, pd.exprs);
	}

	key_names = list_make1(makeString(pstrdup("symbol")));
	if (info->venue_clause != NULL)
		key_names = lappend(key_names,
							makeString(pstrdup(kis_endpoint_venue_name(ep))));

	cscan->scan.plan.targetlist = tlist;
	cscan->scan.plan.qual = NIL;
	cscan->scan.scanrelid = 0;
	cscan->flags = best_path->flags;
	cscan->custom_plans = custom_plans;
	cscan->custom_exprs = list_make5(join_quals, other_quals, info->symbol_expr,
									 info->venue_expr, part_exprs);
	cscan->custom_exprs = lappend(cscan->custom_exprs, gate_quals);
	cscan->custom_private = list_make5(makeInteger(info->jointype),
									   makeInteger(relid),
									   makeInteger(kisrel->userid),
									   makeInteger(nouter),
									   makeInteger(list_length(inner_attnos)));
	cscan->custom_private = lappend(cscan->custom_private, key_names);
	cscan->custom_private = lappend(cscan->custom_private, parts);
	cscan->custom_scan_tlist = scan_tlist;
	cscan->custom_relids = bms_copy(rel->relids);
	cscan->methods = &kis_join_scan_methods;
	return &cscan->scan.plan;
}

/* ----------------------------------------------------------------
 * Execution
 * ----------------------------------------------------------------
 */

static Node *
kis_join_create_state(CustomScan *cscan)
{
	KisJoinState *st = palloc0(sizeof(KisJoinState));

	NodeSetTag(st, T_CustomScanState);
	st->css.methods = &kis_join_exec_methods;
	return (Node *) st;
}

static void
kis_join_begin(CustomScanState *node, EState *estate, int eflags)
{
	KisJoinState *st = (KisJoinState *) node;
	CustomScan *cscan = (CustomScan *) node->ss.ps.plan;
	List	   *priv = cscan->custom_private;
	Oid			relid = intVal(list_nth(priv, PRIV_RELID));
	Oid			userid = intVal(list_nth(priv, PRIV_USERID));
	List	   *parts = list_nth(priv, PRIV_PARTS);
	List	   *part_exprs = list_nth(cscan->custom_exprs, EXPRS_PARTS);
	TupleDesc	scan_desc = node->ss.ss_ScanTupleSlot->tts_tupleDescriptor;
	TupleDesc	inner_desc;
	PlanState  *outer;
	MemoryContext old;
	ListCell   *lc;
	ListCell   *le;
	int			n = 0;

	st->jointype = intVal(list_nth(priv, PRIV_JOINTYPE));
	st->nouter = intVal(list_nth(priv, PRIV_NOUTER));
	st->ninner = intVal(list_nth(priv, PRIV_NINNER));
	st->key_names = list_nth(priv, PRIV_KEY_NAMES);
	st->cxt = AllocSetContextCreate(estate->es_query_cxt, "kis_fdw join",
									ALLOCSET_DEFAULT_SIZES);
	st->relname = MemoryContextStrdup(st->cxt, get_rel_name(relid));
	st->partitioned = get_rel_relkind(relid) == RELKIND_PARTITIONED_TABLE;
	st->nparts = list_length(parts);
	st->parts = MemoryContextAllocZero(st->cxt, sizeof(KisJoinPart) * st->nparts);

	outer = ExecInitNode(linitial(cscan->custom_plans), estate, eflags);
	node->custom_ps = list_make1(outer);

	forboth(lc, parts, le, part_exprs)
	{
		List	   *part = lfirst(lc);
		KisJoinPart *p = &st->parts[n++];
		Oid			part_relid = intVal(list_nth(part, PART_RELID));
		AttrNumber	key_attnums[KIS_NUM_KEYS];
		int			i = 0;
		ListCell   *la;

		/* locked already as the query's relation; closed at the node's end */
		p->rel = table_open(part_relid, AccessShareLock);
		old = MemoryContextSwitchTo(st->cxt);
		kis_config_for_table(part_relid, &p->config);
		p->attnos = palloc(sizeof(AttrNumber) * Max(st->ninner, 1));
		foreach(la, list_nth(part, PART_ATTNOS))
			p->attnos[i++] = lfirst_int(la);
		MemoryContextSwitchTo(old);
		kis_key_attnums(part_relid, p->config.endpoint, key_attnums);
		p->symbol_attno = key_attnums[KIS_KEY_SYMBOL];
		p->symbol_type = getBaseType(TupleDescAttr(RelationGetDescr(p->rel),
												   p->symbol_attno - 1)->atttypid);
		kis_keys_init(&p->keys, list_nth(part, PART_PUSHDOWN), lfirst(le),
					  (eflags & EXEC_FLAG_EXPLAIN_ONLY) ? NULL : (PlanState *) node);
	}
	if (eflags & EXEC_FLAG_EXPLAIN_ONLY)
		return;

	st->join_qual = ExecInitQual(list_nth(cscan->custom_exprs, EXPRS_JOIN_QUALS),
								 (PlanState *) node);
	st->other_qual = ExecInitQual(list_nth(cscan->custom_exprs, EXPRS_OTHER_QUALS),
								  (PlanState *) node);
	st->symbol_expr = ExecInitExpr(list_nth(cscan->custom_exprs, EXPRS_SYMBOL),
								   (PlanState *) node);
	st->symbol_type = getBaseType(exprType(list_nth(cscan->custom_exprs, EXPRS_SYMBOL)));
	st->gate = ExecInitQual(list_nth(cscan->custom_exprs, EXPRS_GATE), (PlanState *) node);
	if (list_nth(cscan->custom_exprs, EXPRS_VENUE) != NULL)
	{
		st->venue_expr = ExecInitExpr(list_nth(cscan->custom_exprs, EXPRS_VENUE),
									  (PlanState *) node);
		st->venue_type = getBaseType(exprType(list_nth(cscan->custom_exprs, EXPRS_VENUE)));
	}

	old = MemoryContextSwitchTo(st->cxt);
	for (int i = 0; i < st->nparts; i++)
	{
		KisJoinPart *p = &st->parts[i];
		List	   *needed = NIL;

		for (int c = 0; c < st->ninner; c++)
		{
			if (p->attnos[c] > 0)
				needed = lappend_int(needed, p->attnos[c]);
		}
		kis_config_add_credentials(&p->config, OidIsValid(userid) ? userid : GetUserId());
		p->runner = kis_runner_create(p->rel, &p->config, needed, st->cxt);
	}
	st->batch_cxt = AllocSetContextCreate(st->cxt, "kis_fdw join keys",
										  ALLOCSET_DEFAULT_SIZES);
	st->outer_rows = tuplestore_begin_heap(false, false, work_mem);
	MemoryContextSwitchTo(old);

	/*
	 * Slots and their descriptors belong to the executor, which resets its
	 * tuple table after every node's end: they live in es_query_cxt (the
	 * current context), not in st->cxt, and their descriptors are copies,
	 * which no resource owner pins.
	 */
	for (int i = 0; i < st->nparts; i++)
	{
		TupleDesc	desc = CreateTupleDescCopy(RelationGetDescr(st->parts[i].rel));

		st->parts[i].fetch_slot = ExecInitExtraTupleSlot(estate, desc, &TTSOpsVirtual);
	}
	/* a fetched row keeps only the inner columns of the scan tuple */
	inner_desc = CreateTemplateTupleDesc(st->ninner);
	for (int i = 0; i < st->ninner; i++)
		TupleDescCopyEntry(inner_desc, i + 1, scan_desc, st->nouter + i + 1);
	st->outer_slot = ExecInitExtraTupleSlot(estate, ExecGetResultType(outer),
											&TTSOpsMinimalTuple);
	st->build_slot = ExecInitExtraTupleSlot(estate, inner_desc, &TTSOpsVirtual);
	st->inner_slot = ExecInitExtraTupleSlot(estate, inner_desc, &TTSOpsMinimalTuple);
}

/*
 * The scan tuple of a pair: the outer row's columns, then the kis row's
 * (all NULL without one).
 */
static TupleTableSlot *
pair_tuple(KisJoinState *st, TupleTableSlot *outer, TupleTableSlot *inner)
{
	TupleTableSlot *pair = st->css.ss.ss_ScanTupleSlot;

	ExecClearTuple(pair);
	slot_getallattrs(outer);
	memcpy(pair->tts_values, outer->tts_values, sizeof(Datum) * st->nouter);
	memcpy(pair->tts_isnull, outer->tts_isnull, sizeof(bool) * st->nouter);
	if (inner != NULL)
		slot_getallattrs(inner);
	for (int i = 0; i < st->ninner; i++)
	{
		pair->tts_values[st->nouter + i] = inner ? inner->tts_values[i] : (Datum) 0;
		pair->tts_isnull[st->nouter + i] = inner ? inner->tts_isnull[i] : true;
	}
	return ExecStoreVirtualTuple(pair);
}

/* An outer row's key value as text, or NULL */
static char *
outer_key(KisJoinState *st, ExprState *expr, Oid type)
{
	ExprContext *econtext = st->css.ss.ps.ps_ExprContext;
	bool		isnull;
	Datum		value;

	MemoryContext old;
	char	   *text = NULL;

	econtext->ecxt_scantuple = st->css.ss.ss_ScanTupleSlot;
	old = MemoryContextSwitchTo(econtext->ecxt_per_tuple_memory);
	value = ExecEvalExpr(expr, econtext, &isnull);
	if (!isnull)
		text = kis_key_text(value, type);
	MemoryContextSwitchTo(old);
	return text;
}

/* Fetched rows: hashed by their symbol string */
static uint32
symbol_hash(const void *key, Size keysize)
{
	const char *s = *(char *const *) key;

	return string_hash(s, strlen(s) + 1);
}

static int
symbol_match(const void *key1, const void *key2, Size keysize)
{
	return strcmp(*(char *const *) key1, *(char *const *) key2);
}

/* Batch keys: hashed by their strings, compared by them */
static uint32
join_key_hash(const void *key, Size keysize)
{
	const KisKey *k = *(KisKey *const *) key;
	uint32		h = string_hash(k->symbol, strlen(k->symbol) + 1);

	if (k->venue != NULL)
		h = hash_combine(h, string_hash(k->venue, strlen(k->venue) + 1));
	return h;
}

static int
join_key_match(const void *key1, const void *key2, Size keysize)
{
	const KisKey *a = *(KisKey *const *) key1;
	const KisKey *b = *(KisKey *const *) key2;

	if (strcmp(a->symbol, b->symbol) != 0)
		return 1;
	if (a->venue == NULL || b->venue == NULL)
		return a->venue != b->venue;
	return strcmp(a->venue, b->venue);
}

static int
compare_keys(const ListCell *a, const ListCell *b)
{
	const KisKey *ka = lfirst(a);
	const KisKey *kb = lfirst(b);
	int			c = strcmp(ka->symbol, kb->symbol);

	if (c != 0 || ka->venue == NULL)
		return c;
	return strcmp(ka->venue, kb->venue);
}

/*
 * Read the other side into the tuplestore and its distinct keys into a
 * sorted list of KisKey, in keys_cxt (none without keys_cxt).
 */
static List *
read_outer(KisJoinState *st, MemoryContext keys_cxt)
{
	PlanState  *outer = linitial(st->css.custom_ps);
	HASHCTL		ctl;
	HTAB	   *seen = NULL;
	List	   *keys = NIL;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(KisKey *);
	ctl.entrysize = sizeof(KisKey *);
	ctl.hash = join_key_hash;
	ctl.match = join_key_match;
	ctl.hcxt = keys_cxt;
	if (keys_cxt != NULL)
		seen = hash_create("kis_fdw join keys", 256, &ctl,
						   HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);

	tuplestore_clear(st->outer_rows);
	for (;;)
	{
		TupleTableSlot *slot = ExecProcNode(outer);
		KisKey		probe;
		KisKey	   *probep = &probe;
		bool		found;

		if (TupIsNull(slot))
			break;
		tuplestore_puttupleslot(st->outer_rows, slot);
		st->outer_total++;
		if (seen == NULL)
			continue;

		ResetExprContext(st->css.ss.ps.ps_ExprContext);
		pair_tuple(st, slot, NULL);
		probe.symbol = outer_key(st, st->symbol_expr, st->symbol_type);
		if (probe.symbol == NULL)
			continue;
		probe.venue = NULL;
		if (st->venue_expr != NULL)
		{
			probe.venue = outer_key(st, st->venue_expr, st->venue_type);
			if (probe.venue == NULL)
				continue;
		}
		hash_search(seen, &probep, HASH_FIND, &found);
		if (found)
			continue;
		if (list_length(keys) >= kis_batched_join_max_keys)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 st->partitioned ?
					 errmsg("batched join of partitioned table \"%s\" has more than %d distinct keys",
							st->relname, kis_batched_join_max_keys) :
					 errmsg("batched join of foreign table \"%s\" has more than %d distinct keys",
							st->relname, kis_batched_join_max_keys),
					 errdetail("The other side of the join holds more distinct symbols than one batch may fetch."),
					 errhint("Raise kis_fdw.batched_join_max_keys, or narrow the other side of the join.")));
		{
			MemoryContext old = MemoryContextSwitchTo(keys_cxt);
			KisKey	   *key = palloc(sizeof(KisKey));

			key->symbol = pstrdup(probe.symbol);
			key->venue = probe.venue ? pstrdup(probe.venue) : NULL;
			keys = lappend(keys, key);
			hash_search(seen, &key, HASH_ENTER, NULL);
			MemoryContextSwitchTo(old);
		}
	}
	if (seen != NULL)
		hash_destroy(seen);
	list_sort(keys, compare_keys);
	return keys;
}

/* Keep the fetched row of part p in batch_cxt, under its symbol */
static void
keep_row(KisJoinState *st, KisJoinPart *p)
{
	MemoryContext old;
	TupleTableSlot *slot = p->fetch_slot;
	TupleTableSlot *row = st->build_slot;
	bool		isnull;
	Datum		d = slot_getattr(slot, p->symbol_attno, &isnull);
	char	   *symbol;
	KisJoinRows *entry;
	bool		found;

	if (isnull)
		return;
	slot_getallattrs(slot);
	ExecClearTuple(row);
	for (int i = 0; i < st->ninner; i++)
	{
		if (p->attnos[i] == TableOidAttributeNumber)
		{
			row->tts_values[i] = ObjectIdGetDatum(RelationGetRelid(p->rel));
			row->tts_isnull[i] = false;
			continue;
		}
		row->tts_values[i] = slot->tts_values[p->attnos[i] - 1];
		row->tts_isnull[i] = slot->tts_isnull[p->attnos[i] - 1];
	}
	ExecStoreVirtualTuple(row);

	old = MemoryContextSwitchTo(st->batch_cxt);
	/* as the outer keys are: a char(n) value without its padding */
	symbol = kis_key_text(d, p->symbol_type);
	entry = hash_search(st->rows_by_symbol, &symbol, HASH_ENTER, &found);
	if (!found)
		entry->rows = NIL;
	entry->rows = lappend(entry->rows, ExecCopySlotMinimalTuple(row));
	MemoryContextSwitchTo(old);
}

/*
 * Fetch the keys, run[i] for part i (pairs instead when joined on the
 * venue), and index the rows by symbol, in batch_cxt.  Every part's run
 * starts at once (each sends only the keys its partition bound admits),
 * and the runs are driven together, so that the requests of partitions on
 * different servers and rate gates overlap.
 */
static void
fetch_rows(KisJoinState *st, const KisRunKeys *run, List *pairs)
{
	HASHCTL		ctl;
	KisRunner **waiting = palloc(sizeof(KisRunner *) * st->nparts);
	int			nrunning = st->nparts;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(char *);
	ctl.entrysize = sizeof(KisJoinRows);
	ctl.hash = symbol_hash;
	ctl.match = symbol_match;
	ctl.hcxt = st->batch_cxt;
	st->rows_by_symbol = hash_create("kis_fdw join rows", Max(list_length(run[0].symbols), 16),
									 &ctl, HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);

	for (int i = 0; i < st->nparts; i++)
	{
		KisJoinPart *p = &st->parts[i];

		if (pairs != NULL)
			kis_runner_start_keys(p->runner, pairs, &run[i].range, run[i].can_match, true);
		else
			kis_runner_start(p->runner, &run[i]);
		p->running = true;
	}
	while (nrunning > 0)
	{
		int			nwaiting = 0;

		for (int i = 0; i < st->nparts; i++)
		{
			KisJoinPart *p = &st->parts[i];
			KisPoll		poll;

			if (!p->running)
				continue;
			while ((poll = kis_runner_poll(p->runner, p->fetch_slot)) == KIS_POLL_ROW)
				keep_row(st, p);
			if (poll == KIS_POLL_WAIT)
				waiting[nwaiting++] = p->runner;
			else
			{
				kis_runner_end(p->runner);
				p->running = false;
				nrunning--;
			}
		}
		if (nwaiting > 0)
			kis_runner_wait_any(waiting, nwaiting);
	}
	pfree(waiting);
}

/*
 * The first call, and the first after a rescan whose parameters changed:
 * read the other side, then fetch its keys unless they are the last
 * batch's.
 */
static void
start_batch(KisJoinState *st)
{
	MemoryContext old;
	MemoryContext tmp = AllocSetContextCreate(st->cxt, "kis_fdw join outer keys",
											  ALLOCSET_DEFAULT_SIZES);
	KisRunKeys *run;
	List	   *keys;
	List	   *symbols = NIL;
	List	   *pairs = NIL;
	bool		same;
	ListCell   *lc;

	/*
	 * A closed gate (a condition that reads no row is false) means no kis
	 * rows: nothing is fetched, and every outer row is unmatched.  As under
	 * a gating Result, the other side is not even read when that means no
	 * output.
	 */
	st->gate_open = ExecQual(st->gate, st->css.ss.ps.ps_ExprContext);
	if (!st->gate_open)
	{
		MemoryContextDelete(tmp);
		if (st->jointype == JOIN_LEFT || st->jointype == JOIN_ANTI)
			(void) read_outer(st, NULL);
		else
			tuplestore_clear(st->outer_rows);
		tuplestore_rescan(st->outer_rows);
		st->fetched = true;
		st->have_outer = false;
		return;
	}
	keys = read_outer(st, tmp);

	old = MemoryContextSwitchTo(tmp);
	if (st->venue_expr != NULL)
		pairs = keys;
	else
	{
		foreach(lc, keys)
			symbols = lappend(symbols, ((KisKey *) lfirst(lc))->symbol);
	}
	run = palloc0(sizeof(KisRunKeys) * st->nparts);
	same = st->have_last && kis_lists_equal(pairs, st->last_pairs, compare_keys);
	for (int i = 0; i < st->nparts; i++)
	{
		KisJoinPart *p = &st->parts[i];

		kis_keys_eval(&p->keys, st->css.ss.ps.ps_ExprContext, p->rel, &p->config,
					  false, &run[i]);
		run[i].from_rows = true;
		run[i].symbols = symbols;
		same = same && kis_run_keys_equal(&run[i], &p->last);
	}
	st->batches++;
	st->keys_total += list_length(keys);

	if (same)
		st->batches_reused++;
	else
	{
		MemoryContextReset(st->batch_cxt);
		st->have_last = false;
		MemoryContextSwitchTo(st->batch_cxt);
		for (int i = 0; i < st->nparts; i++)
			kis_run_keys_copy(&st->parts[i].last, &run[i]);
		st->last_pairs = NIL;
		foreach(lc, pairs)
		{
			KisKey	   *key = palloc(sizeof(KisKey));

			key->symbol = pstrdup(((KisKey *) lfirst(lc))->symbol);
			key->venue = pstrdup(((KisKey *) lfirst(lc))->venue);
			st->last_pairs = lappend(st->last_pairs, key);
		}
		MemoryContextSwitchTo(tmp);
		fetch_rows(st, run, pairs);
		st->have_last = true;
	}
	MemoryContextSwitchTo(old);
	MemoryContextDelete(tmp);

	tuplestore_rescan(st->outer_rows);
	st->fetched = true;
	st->have_outer = false;
}

/* Project the current pair (or return it as it is) */
static TupleTableSlot *
emit(KisJoinState *st)
{
	ProjectionInfo *proj = st->css.ss.ps.ps_ProjInfo;

	if (proj == NULL)
		return st->css.ss.ss_ScanTupleSlot;
	return ExecProject(proj);
}

static TupleTableSlot *
kis_join_exec(CustomScanState *node)
{
	KisJoinState *st = (KisJoinState *) node;
	ExprContext *econtext = node->ss.ps.ps_ExprContext;

	if (!st->fetched)
		start_batch(st);

	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		ResetExprContext(econtext);
		econtext->ecxt_scantuple = node->ss.ss_ScanTupleSlot;

		if (!st->have_outer)
		{
			char	   *symbol;
			KisJoinRows *entry = NULL;

			if (!tuplestore_gettupleslot(st->outer_rows, true, false, st->outer_slot))
				return NULL;
			st->have_outer = true;
			st->matched = false;
			st->next_candidate = 0;
			pair_tuple(st, st->outer_slot, NULL);
			symbol = outer_key(st, st->symbol_expr, st->symbol_type);
			if (symbol != NULL && st->gate_open)
				entry = hash_search(st->rows_by_symbol, &symbol, HASH_FIND, NULL);
			st->candidates = entry ? entry->rows : NIL;
		}

		while (st->next_candidate < list_length(st->candidates))
		{
			MinimalTuple row = list_nth(st->candidates, st->next_candidate++);

			ExecStoreMinimalTuple(row, st->inner_slot, false);
			pair_tuple(st, st->outer_slot, st->inner_slot);
			if (!ExecQual(st->join_qual, econtext))
			{
				ResetExprContext(econtext);
				continue;
			}
			st->matched = true;
			if (st->jointype == JOIN_ANTI)
				break;
			if (st->jointype == JOIN_SEMI)
			{
				st->have_outer = false;
				return emit(st);
			}
			if (st->other_qual == NULL || ExecQual(st->other_qual, econtext))
				return emit(st);
			ResetExprContext(econtext);
		}

		/* the outer row's candidates are done */
		st->have_outer = false;
		if (!st->matched && (st->jointype == JOIN_LEFT || st->jointype == JOIN_ANTI))
		{
			pair_tuple(st, st->outer_slot, NULL);
			if (st->other_qual == NULL || ExecQual(st->other_qual, econtext))
				return emit(st);
		}
	}
}

/*
 * A rescan with the same parameters reads the stored rows again; with
 * changed ones, the other side is read again at the next call, and its
 * keys fetched unless they are the last batch's.
 */
static void
kis_join_rescan(CustomScanState *node)
{
	KisJoinState *st = (KisJoinState *) node;
	PlanState  *outer = linitial(node->custom_ps);

	st->have_outer = false;

	/*
	 * The child learns which parameters changed, as Append's children do: a
	 * child that keeps its input (a hash table, a sort) reads it again only
	 * then.  It is rescanned by ExecProcNode(), or here when none of its
	 * own parameters changed.
	 */
	if (node->ss.ps.chgParam != NULL)
		UpdateChangedParamSet(outer, node->ss.ps.chgParam);
	if (!st->fetched)
		return;
	if (node->ss.ps.chgParam == NULL)
	{
		tuplestore_rescan(st->outer_rows);
		return;
	}
	st->fetched = false;
	if (outer->chgParam == NULL)
		ExecReScan(outer);
}

static void
kis_join_end(CustomScanState *node)
{
	KisJoinState *st = (KisJoinState *) node;

	ExecEndNode(linitial(node->custom_ps));
	for (int i = 0; i < st->nparts; i++)
	{
		KisJoinPart *p = &st->parts[i];

		if (p->runner != NULL && kis_runner_started(p->runner))
			kis_runner_end(p->runner);
	}
	if (st->outer_rows != NULL)
		tuplestore_end(st->outer_rows);
	for (int i = 0; i < st->nparts; i++)
	{
		if (st->parts[i].rel != NULL)
			table_close(st->parts[i].rel, AccessShareLock);
	}
	if (st->cxt != NULL)
		MemoryContextDelete(st->cxt);
}

/*
 * A partition as EXPLAIN names relations: quoted where needed, and with
 * its schema under VERBOSE, so that partitions of the same name in
 * different schemas can be told apart.
 */
static const char *
part_name(Relation rel, ExplainState *es)
{
	const char *name = quote_identifier(RelationGetRelationName(rel));

	if (!es->verbose)
		return name;
	return psprintf("%s.%s",
					quote_identifier(get_namespace_name_or_temp(RelationGetNamespace(rel))),
					name);
}

static const char *
join_type_name(JoinType jointype)
{
	switch (jointype)
	{
		case JOIN_INNER:
			return "Inner";
		case JOIN_LEFT:
			return "Left";
		case JOIN_SEMI:
			return "Semi";
		case JOIN_ANTI:
			return "Anti";
		default:
			return "?";
	}
}

/* A list of conditions as EXPLAIN shows them, if any */
static void
explain_quals(const char *label, List *quals, List *context, ExplainState *es)
{
	if (quals != NIL)
		ExplainPropertyText(label,
							deparse_expression((Node *) make_ands_explicit(quals),
											   context, es->verbose || list_length(es->rtable) > 1,
											   false), es);
}

/*
 * EXPLAIN: endpoint, join type, key columns and the join conditions; with
 * ANALYZE, the batches and the request counters.
 */
static void
kis_join_explain(CustomScanState *node, List *ancestors, ExplainState *es)
{
	KisJoinState *st = (KisJoinState *) node;
	CustomScan *cscan = (CustomScan *) node->ss.ps.plan;
	List	   *join_quals = list_nth(cscan->custom_exprs, EXPRS_JOIN_QUALS);
	List	   *other_quals = list_nth(cscan->custom_exprs, EXPRS_OTHER_QUALS);
	List	   *gate_quals = list_nth(cscan->custom_exprs, EXPRS_GATE);
	StringInfoData keys;
	ListCell   *lc;
	List	   *context;

	initStringInfo(&keys);
	foreach(lc, st->key_names)
		appendStringInfo(&keys, "%s%s", keys.len ? ", " : "", strVal(lfirst(lc)));

	ExplainPropertyText("KIS Endpoint", st->parts[0].config.endpoint->name, es);
	ExplainPropertyText("KIS Join Type", join_type_name(st->jointype), es);
	ExplainPropertyText("KIS Join Keys", keys.data, es);
	if (st->partitioned)
	{
		StringInfoData names;

		initStringInfo(&names);
		for (int i = 0; i < st->nparts; i++)
			appendStringInfo(&names, "%s%s", i > 0 ? ", " : "",
							 part_name(st->parts[i].rel, es));
		ExplainPropertyText("KIS Partitions", names.data, es);
	}

	context = set_deparse_context_plan(es->deparse_cxt, (Plan *) cscan, ancestors);
	explain_quals("One-Time Filter", gate_quals, context, es);
	explain_quals("Join Filter", join_quals, context, es);
	explain_quals("Filter", other_quals, context, es);

	if (es->analyze && st->parts[0].runner != NULL)
	{
		const KisRunner **runners = palloc(sizeof(KisRunner *) * st->nparts);

		ExplainPropertyInteger("KIS Batches", NULL, st->batches, es);
		if (st->batches_reused > 0)
			ExplainPropertyInteger("KIS Batches Reused", NULL, st->batches_reused, es);
		ExplainPropertyInteger("KIS Outer Rows", NULL, st->outer_total, es);
		for (int i = 0; i < st->nparts; i++)
			runners[i] = st->parts[i].runner;
		kis_runners_explain(runners, st->nparts, es);
		if (st->partitioned)
		{
			StringInfoData shares;

			/* which partition asked for how many keys */
			initStringInfo(&shares);
			for (int i = 0; i < st->nparts; i++)
				appendStringInfo(&shares, "%s%s %lld", i > 0 ? ", " : "",
								 part_name(st->parts[i].rel, es),
								 (long long) kis_runner_keys_requested(st->parts[i].runner));
			ExplainPropertyText("KIS Partition Keys", shares.data, es);
		}
	}
}

/* ----------------------------------------------------------------
 * Registration
 * ----------------------------------------------------------------
 */

void
kis_join_init(void)
{
	kis_join_path_methods.CustomName = KIS_JOIN_NAME;
	kis_join_path_methods.PlanCustomPath = kis_join_plan;

	kis_join_scan_methods.CustomName = KIS_JOIN_NAME;
	kis_join_scan_methods.CreateCustomScanState = kis_join_create_state;
	RegisterCustomScanMethods(&kis_join_scan_methods);

	kis_join_exec_methods.CustomName = KIS_JOIN_NAME;
	kis_join_exec_methods.BeginCustomScan = kis_join_begin;
	kis_join_exec_methods.ExecCustomScan = kis_join_exec;
	kis_join_exec_methods.EndCustomScan = kis_join_end;
	kis_join_exec_methods.ReScanCustomScan = kis_join_rescan;
	kis_join_exec_methods.ExplainCustomScan = kis_join_explain;

	DefineCustomBoolVariable("kis_fdw.enable_batched_join",
							 "Lets the planner join kis foreign tables in one batch of requests.",
							 "Like enable_hashjoin: turn it off to compare plans.",
							 &kis_enable_batched_join,
							 true,
							 PGC_USERSET, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("kis_fdw.batched_join_max_keys",
							"Most distinct keys one batched join fetches.",
							"A join whose other side holds more ends with an error.",
							&kis_batched_join_max_keys,
							10000, 1, 1000000,
							PGC_USERSET, 0,
							NULL, NULL, NULL);

	prev_join_pathlist_hook = set_join_pathlist_hook;
	set_join_pathlist_hook = kis_join_pathlist;
}
