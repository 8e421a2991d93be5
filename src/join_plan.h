/*-------------------------------------------------------------------------
 *
 * join_plan.h
 *	  The batched join's plan: the planner hook that offers it and the
 *	  CustomScan it makes (join_plan.c), and the slots of that plan, which
 *	  the node reads back (join_exec.c).
 *
 * src/join_plan.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef KIS_JOIN_PLAN_H
#define KIS_JOIN_PLAN_H

#define KIS_JOIN_NAME	"KIS Batched Join"

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
 *	                partition): a list of KIS_JOIN_PART_* slots
 */
typedef enum KisJoinPrivate
{
	KIS_JOIN_PRIV_JOINTYPE,
	KIS_JOIN_PRIV_RELID,
	KIS_JOIN_PRIV_USERID,
	KIS_JOIN_PRIV_NOUTER,
	KIS_JOIN_PRIV_NINNER,
	KIS_JOIN_PRIV_KEY_NAMES,
	KIS_JOIN_PRIV_PARTS
} KisJoinPrivate;

/* One part of custom_private's parts */
typedef enum KisJoinPartPrivate
{
	KIS_JOIN_PART_RELID,		/* the kis foreign table */
	KIS_JOIN_PART_ATTNOS,		/* its attnum of each inner scan column */
	KIS_JOIN_PART_PUSHDOWN		/* its own key conditions: kis_pushdown_to_list() */
} KisJoinPartPrivate;

/*
 * custom_exprs of the plan: join conditions, other conditions (outer
 * joins: applied after the join), the other side's symbol expression and
 * venue expression (or NULL), per part the expressions of its pushdown,
 * and the conditions that read no row (pseudoconstant: the gate,
 * evaluated once per batch).
 */
typedef enum KisJoinExprs
{
	KIS_JOIN_EXPRS_JOIN_QUALS,
	KIS_JOIN_EXPRS_OTHER_QUALS,
	KIS_JOIN_EXPRS_SYMBOL,
	KIS_JOIN_EXPRS_VENUE,
	KIS_JOIN_EXPRS_PARTS,
	KIS_JOIN_EXPRS_GATE
} KisJoinExprs;

extern void kis_join_plan_init(void);

#endif							/* KIS_JOIN_PLAN_H */
