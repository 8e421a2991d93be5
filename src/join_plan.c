/*-------------------------------------------------------------------------
 *
 * join_plan.c
 *	  Planning the batched join (join.c).  set_join_pathlist_hook offers a
 *	  CustomPath for a join whose inner side is a kis foreign table, or a
 *	  partitioned table whose remaining leaves all are, on "kis.symbol =
 *	  <expression of the other side>" (and likewise market or exchange);
 *	  PlanCustomPath makes a CustomScan over one child plan, the other
 *	  side, whose scan tuple is the child's columns followed by the kis
 *	  table's columns the join reads.  Each kis table's own conditions are
 *	  pushed down as in a scan (kis_plan_keys).  Which joins batch, and what
 *	  this relies on in the planner: docs/batched-join.md.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/sysattr.h"
#include "catalog/pg_class.h"
#include "foreign/fdwapi.h"
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
#include "utils/lsyscache.h"
#include "utils/selfuncs.h"

#include "compat.h"
#include "endpoints.h"
#include "join.h"
#include "join_exec.h"
#include "join_plan.h"
#include "options.h"
#include "plan.h"
#include "pushdown.h"
#include "quals.h"

/*
 * Setting up a batch (tuplestore, hash tables) costs a little more than
 * one request of a nested loop, so that one outer row keeps the
 * parameterized path, and two rows or more batch.
 */
#define KIS_JOIN_STARTUP_COST	200.0

static set_join_pathlist_hook_type prev_join_pathlist_hook = NULL;

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

static CustomPathMethods kis_join_path_methods;
static CustomScanMethods kis_join_scan_methods;

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
	const KisEndpoint *ep;
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
	ep = ps->config.endpoint;
	/* the key columns as the join's clauses name them (a partition's parent) */
	kis_key_attnums(planner_rt_fetch(innerrel->relid, root)->relid, ep, key_attnums);

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
										 key_attnums[kis_endpoint_venue_key(ep)],
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
		/* in KisJoinPartPrivate's order */
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
	/* in KisJoinExprs' and KisJoinPrivate's order (join_plan.h) */
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

/*
 * Install the hook, and register the plan's methods, which readfuncs.c
 * finds by their name when a plan is read back.
 */
void
kis_join_plan_init(void)
{
	kis_join_path_methods.CustomName = KIS_JOIN_NAME;
	kis_join_path_methods.PlanCustomPath = kis_join_plan;

	kis_join_scan_methods.CustomName = KIS_JOIN_NAME;
	kis_join_scan_methods.CreateCustomScanState = kis_join_create_state;
	RegisterCustomScanMethods(&kis_join_scan_methods);

	prev_join_pathlist_hook = set_join_pathlist_hook;
	set_join_pathlist_hook = kis_join_pathlist;
}
