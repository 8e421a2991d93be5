/*-------------------------------------------------------------------------
 *
 * pushdown.h
 *	  What a plan pushes down to KIS: per key column the condition that
 *	  gives its values, and the date conditions that bound the range; the
 *	  planner fills it (plan.c), the scan and the batched join read it back
 *	  from their plan (pushdown.c).
 *
 * src/pushdown.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef KIS_PUSHDOWN_H
#define KIS_PUSHDOWN_H

#include "nodes/pg_list.h"
#include "nodes/primnodes.h"

#include "quals.h"

/* Where a date condition comes from (its value in the plan) */
typedef enum KisDateOrigin
{
	KIS_DATE_QUERY = 0,			/* the query's WHERE or join clauses */
	KIS_DATE_PARTITION_BOUND = 2	/* the partition's bound (plan.c) */
} KisDateOrigin;

/* The pushed-down condition of one list key (symbol, market, exchange) */
typedef struct KisKeyPushdown
{
	int			pos;			/* its expression's position, or -1: none */
	bool		is_array;		/* IN (...) or = ANY (array) */
	int			nplanned;		/* values known at plan time, or -1 */
} KisKeyPushdown;

/*
 * Another condition on a list key that already has one: its values narrow
 * the key's (they are intersected at run time), so that every condition on
 * a key, a view's and its caller's alike, limits what is sent.
 */
typedef struct KisAlsoPushdown
{
	KisKeyColumn key;
	int			pos;			/* its expression's position */
	bool		is_array;
} KisAlsoPushdown;

/* One date condition: "date op expression" */
typedef struct KisDatePushdown
{
	KisQualOp	op;
	int			pos;			/* its expression's position */
	KisDateOrigin origin;
} KisDatePushdown;

/*
 * The expressions themselves stay out of the list form: the plan keeps
 * them where setrefs.c fixes them (a scan's fdw_exprs, the join's
 * custom_exprs), in exprs' order, and pos points into that list.
 */
typedef struct KisPushdown
{
	KisKeyPushdown keys[KIS_NUM_LIST_KEYS];
	int			ndates;
	KisDatePushdown *dates;
	int			nalso;
	KisAlsoPushdown *also;
	List	   *exprs;			/* the planner's: the expressions, in order */
} KisPushdown;

extern void kis_pushdown_init(KisPushdown *pd);
extern void kis_pushdown_set_key(KisPushdown *pd, KisKeyColumn key, Expr *expr,
								 bool is_array, int nplanned);
extern void kis_pushdown_add_date(KisPushdown *pd, KisQualOp op, Expr *expr,
								  KisDateOrigin origin);
extern void kis_pushdown_add_also(KisPushdown *pd, KisKeyColumn key, Expr *expr,
								  bool is_array);
extern bool kis_pushdown_has_key(const KisPushdown *pd, KisKeyColumn key);
extern List *kis_pushdown_to_list(const KisPushdown *pd);
extern void kis_pushdown_from_list(KisPushdown *pd, List *list);

#endif							/* KIS_PUSHDOWN_H */
