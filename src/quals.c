/*-------------------------------------------------------------------------
 *
 * quals.c
 *	  Which WHERE and join conditions become request keys: "symbol = v",
 *	  "symbol IN (...)", "symbol = ANY(array)" (likewise for market and
 *	  exchange), and date comparisons (=, <, <=, >, >=, BETWEEN, IN) that
 *	  bound a daily table's range, where
 *	  v is anything that does not read this table and is not volatile: a
 *	  constant, a prepared statement's parameter, an InitPlan's result
 *	  (ANY(ARRAY(SELECT ...))), or another table's column in a join, which
 *	  the planner turns into a nested-loop parameter.
 *
 * The values are not known here; the executor evaluates the expressions
 * when the scan starts (keys.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "nodes/nodeFuncs.h"
#include "optimizer/clauses.h"
#include "optimizer/optimizer.h"
#include "optimizer/pathnode.h"
#include "optimizer/paths.h"
#include "optimizer/restrictinfo.h"
#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"

#include "endpoints.h"
#include "options.h"
#include "quals.h"

/*
 * The attribute numbers of the table's key columns, InvalidAttrNumber for
 * those the endpoint does not take (or the table lacks).  A key column
 * with a "field" option is an ordinary column, not a key.
 */
void
kis_key_attnums(Oid relid, const KisEndpoint *ep, AttrNumber *attnums)
{
	for (int k = 0; k < KIS_NUM_KEYS; k++)
	{
		attnums[k] = kis_endpoint_has_key(ep, k) ?
			get_attnum(relid, kis_endpoint_key_column(ep, k)) : InvalidAttrNumber;
		if (attnums[k] != InvalidAttrNumber && !kis_endpoint_is_declared(ep) &&
			kis_column_field_option(relid, attnums[k]) != NULL)
			attnums[k] = InvalidAttrNumber;
	}
	/* ranges need a real date column (the tick ring: bigint seq) */
	if (attnums[KIS_KEY_DATE] != InvalidAttrNumber &&
		get_atttype(relid, attnums[KIS_KEY_DATE]) !=
		(kis_endpoint_ringed(ep) ? INT8OID : DATEOID))
		attnums[KIS_KEY_DATE] = InvalidAttrNumber;
}

/* Is node this rel's column attnum (possibly under a binary-compatible cast)? */
static bool
is_column(Node *node, Index relid, AttrNumber attnum)
{
	while (node && IsA(node, RelabelType))
		node = (Node *) ((RelabelType *) node)->arg;
	return node && IsA(node, Var) &&
		((Var *) node)->varno == relid &&
		((Var *) node)->varattno == attnum &&
		((Var *) node)->varlevelsup == 0 &&
		attnum != InvalidAttrNumber;
}

/* Text equality only: the values are sent to KIS as they are */
static bool
is_text_equality(Oid opno)
{
	RegProcedure fn = get_opcode(opno);

	return fn == F_TEXTEQ || fn == F_BPCHAREQ;
}

/* An operator as seen with its operands swapped */
static const KisQualOp flipped[] = {
	[KIS_OP_EQ] = KIS_OP_EQ, [KIS_OP_IN] = KIS_OP_IN,
	[KIS_OP_LT] = KIS_OP_GT, [KIS_OP_LE] = KIS_OP_GE,
	[KIS_OP_GT] = KIS_OP_LT, [KIS_OP_GE] = KIS_OP_LE
};

/*
 * Date comparisons; *op as seen with the column on the left.  Comparisons
 * with a timestamp or timestamptz (date >= now() - interval '1 year') are
 * "loose": the value's day bounds the range from outside, and the condition
 * also stays a local filter.
 */
static bool
date_comparison(Oid opno, bool column_left, KisQualOp *op, bool *loose)
{
	static const struct
	{
		Oid			fn;
		KisQualOp	op;			/* with the date column on the left */
		bool		date_left;	/* the function's left argument is the date */
		bool		loose;
	}			ops[] = {
		{F_DATE_EQ, KIS_OP_EQ, true, false},
		{F_DATE_LT, KIS_OP_LT, true, false},
		{F_DATE_LE, KIS_OP_LE, true, false},
		{F_DATE_GT, KIS_OP_GT, true, false},
		{F_DATE_GE, KIS_OP_GE, true, false},
		{F_DATE_EQ_TIMESTAMP, KIS_OP_EQ, true, true},
		{F_DATE_LT_TIMESTAMP, KIS_OP_LT, true, true},
		{F_DATE_LE_TIMESTAMP, KIS_OP_LE, true, true},
		{F_DATE_GT_TIMESTAMP, KIS_OP_GT, true, true},
		{F_DATE_GE_TIMESTAMP, KIS_OP_GE, true, true},
		{F_DATE_EQ_TIMESTAMPTZ, KIS_OP_EQ, true, true},
		{F_DATE_LT_TIMESTAMPTZ, KIS_OP_LT, true, true},
		{F_DATE_LE_TIMESTAMPTZ, KIS_OP_LE, true, true},
		{F_DATE_GT_TIMESTAMPTZ, KIS_OP_GT, true, true},
		{F_DATE_GE_TIMESTAMPTZ, KIS_OP_GE, true, true},
		{F_TIMESTAMP_EQ_DATE, KIS_OP_EQ, false, true},
		{F_TIMESTAMP_LT_DATE, KIS_OP_GT, false, true},
		{F_TIMESTAMP_LE_DATE, KIS_OP_GE, false, true},
		{F_TIMESTAMP_GT_DATE, KIS_OP_LT, false, true},
		{F_TIMESTAMP_GE_DATE, KIS_OP_LE, false, true},
		{F_TIMESTAMPTZ_EQ_DATE, KIS_OP_EQ, false, true},
		{F_TIMESTAMPTZ_LT_DATE, KIS_OP_GT, false, true},
		{F_TIMESTAMPTZ_LE_DATE, KIS_OP_GE, false, true},
		{F_TIMESTAMPTZ_GT_DATE, KIS_OP_LT, false, true},
		{F_TIMESTAMPTZ_GE_DATE, KIS_OP_LE, false, true},
	};
	RegProcedure fn = get_opcode(opno);

	for (int i = 0; i < lengthof(ops); i++)
	{
		if (ops[i].fn != fn)
			continue;
		/* the date column must be the date argument */
		if (ops[i].loose && ops[i].date_left != column_left)
			return false;
		if (ops[i].loose)
			*op = ops[i].op;
		else
			*op = column_left ? ops[i].op : flipped[ops[i].op];
		*loose = ops[i].loose;
		return true;
	}
	return false;
}

/*
 * Comparisons of the tick ring's bigint seq, as date_comparison; they
 * bound what is read and stay local filters too (loose).
 */
static bool
seq_comparison(Oid opno, bool column_left, KisQualOp *op, bool *loose)
{
	static const struct
	{
		RegProcedure fn;
		KisQualOp	op;			/* with the column on the left */
	}			ops[] = {
		{F_INT8EQ, KIS_OP_EQ}, {F_INT8LT, KIS_OP_LT}, {F_INT8LE, KIS_OP_LE},
		{F_INT8GT, KIS_OP_GT}, {F_INT8GE, KIS_OP_GE},
		{F_INT84EQ, KIS_OP_EQ}, {F_INT84LT, KIS_OP_LT}, {F_INT84LE, KIS_OP_LE},
		{F_INT84GT, KIS_OP_GT}, {F_INT84GE, KIS_OP_GE},
	};
	RegProcedure fn = get_opcode(opno);

	for (int i = 0; i < lengthof(ops); i++)
	{
		/* int84 takes the bigint on the left: the column must be there */
		if (ops[i].fn != fn || (!column_left && i >= 5))
			continue;
		*op = column_left ? ops[i].op : flipped[ops[i].op];
		*loose = true;
		return true;
	}
	return false;
}

/* Something the executor can compute before scanning this table */
static bool
is_key_value(Node *expr, Index relid)
{
	return !contain_volatile_functions(expr) &&
		!contain_subplans(expr) &&
		!bms_is_member(relid, pull_varnos(NULL, expr));
}

/* How many values an expression gives, if the planner can tell */
static int
count_values(Node *expr, bool is_array)
{
	if (!is_array)
		return 1;
	if (IsA(expr, Const))
	{
		Const	   *c = (Const *) expr;
		ArrayType  *arr;

		if (c->constisnull)
			return 0;
		arr = DatumGetArrayTypeP(c->constvalue);
		return ArrayGetNItems(ARR_NDIM(arr), ARR_DIMS(arr));
	}
	if (IsA(expr, ArrayExpr))
		return list_length(((ArrayExpr *) expr)->elements);
	return -1;
}

/*
 * Does this clause give values for one of the key columns?  key_attnums
 * holds each key column's attnum (InvalidAttrNumber when the table lacks
 * it).  On a match, *out describes it.
 */
bool
kis_match_key_clause(RelOptInfo *baserel, RestrictInfo *rinfo,
					 const AttrNumber *key_attnums, KisKeyQual *out)
{
	Expr	   *clause = rinfo->clause;
	Index		relid = baserel->relid;

	for (int k = 0; k < KIS_NUM_KEYS; k++)
	{
		AttrNumber attnum = key_attnums[k];

		if (attnum == InvalidAttrNumber)
			continue;

		if (IsA(clause, OpExpr) && list_length(((OpExpr *) clause)->args) == 2)
		{
			Oid			opno = ((OpExpr *) clause)->opno;
			Node	   *l = linitial(((OpExpr *) clause)->args);
			Node	   *r = lsecond(((OpExpr *) clause)->args);
			Node	   *value = NULL;
			bool		column_left = false;
			bool		loose = false;
			KisQualOp	op = KIS_OP_EQ;

			if (is_column(l, relid, attnum) && is_key_value(r, relid))
			{
				value = r;
				column_left = true;
			}
			else if (is_column(r, relid, attnum) && is_key_value(l, relid))
				value = l;
			if (value == NULL)
				continue;
			if (k == KIS_KEY_DATE ?
				!(date_comparison(opno, column_left, &op, &loose) ||
				  seq_comparison(opno, column_left, &op, &loose)) :
				!is_text_equality(opno))
				continue;
			out->key = k;
			out->op = op;
			out->loose = loose;
			out->expr = (Expr *) value;
			out->nconst = 1;
			return true;
		}
		else if (IsA(clause, ScalarArrayOpExpr))
		{
			ScalarArrayOpExpr *saop = (ScalarArrayOpExpr *) clause;
			Node	   *l = linitial(saop->args);
			Node	   *r = lsecond(saop->args);

			/*
			 * "date IN (...)" bounds the range by its first and last day and
			 * stays a local filter: the days between are read too when that
			 * costs fewer requests than asking for each day alone.
			 */
			if (saop->useOr &&
				(k == KIS_KEY_DATE ? get_opcode(saop->opno) == F_DATE_EQ :
				 is_text_equality(saop->opno)) &&
				is_column(l, relid, attnum) && is_key_value(r, relid))
			{
				out->key = k;
				out->op = KIS_OP_IN;
				out->loose = k == KIS_KEY_DATE;
				out->expr = (Expr *) r;
				out->nconst = count_values(r, true);
				return true;
			}
		}
	}
	return false;
}

static bool
depends_on_rows_walker(Node *node, void *context)
{
	if (node == NULL)
		return false;
	if (IsA(node, Var) || (IsA(node, Param) && ((Param *) node)->paramkind == PARAM_EXEC))
		return true;
	return expression_tree_walker(node, depends_on_rows_walker, context);
}

/*
 * Does a key value come from other rows (a join's outer row, a correlated
 * or InitPlan sub-select) rather than from the query's text or its
 * parameters?
 */
bool
kis_depends_on_rows(Node *expr)
{
	return depends_on_rows_walker(expr, NULL);
}

/* generate_implied_equalities_for_column callback: our symbol column? */
static bool
ec_member_is_symbol(PlannerInfo *root, RelOptInfo *rel, EquivalenceClass *ec,
					EquivalenceMember *em, void *arg)
{
	return is_column((Node *) em->em_expr, rel->relid, *(AttrNumber *) arg);
}

/*
 * Join clauses that could feed the symbol key from another relation, for
 * parameterized paths: "q.symbol = p.symbol" lives in an equivalence class,
 * other forms in the rel's joininfo.
 */
List *
kis_symbol_join_clauses(PlannerInfo *root, RelOptInfo *baserel, AttrNumber symbol_attnum)
{
	List	   *result = NIL;
	AttrNumber	attnums[KIS_NUM_KEYS] = {symbol_attnum, InvalidAttrNumber,
	InvalidAttrNumber, InvalidAttrNumber};
	ListCell   *lc;

	if (symbol_attnum == InvalidAttrNumber)
		return NIL;

	foreach(lc, baserel->joininfo)
	{
		RestrictInfo *rinfo = lfirst_node(RestrictInfo, lc);
		KisKeyQual	q;

		if (join_clause_is_movable_to(rinfo, baserel) &&
			kis_match_key_clause(baserel, rinfo, attnums, &q))
			result = lappend(result, rinfo);
	}

	if (baserel->has_eclass_joins)
	{
		List	   *clauses;

		clauses = generate_implied_equalities_for_column(root, baserel,
														 ec_member_is_symbol,
														 &symbol_attnum,
														 baserel->lateral_referencers);
		foreach(lc, clauses)
		{
			RestrictInfo *rinfo = lfirst_node(RestrictInfo, lc);

			if (join_clause_is_movable_to(rinfo, baserel))
				result = lappend(result, rinfo);
		}
	}
	return result;
}
