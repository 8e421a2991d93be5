/*-------------------------------------------------------------------------
 *
 * quals.h
 *	  Which WHERE clauses become request keys: the key columns, the
 *	  comparisons that can be pushed down, and their matching (quals.c).
 *
 * src/quals.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef KIS_QUALS_H
#define KIS_QUALS_H

#include "access/attnum.h"
#include "nodes/pg_list.h"
#include "nodes/primnodes.h"

/* The key columns a scan can push down */
typedef enum KisKeyColumn
{
	KIS_KEY_SYMBOL = 0,
	KIS_KEY_MARKET,
	KIS_KEY_EXCHANGE,
	KIS_KEY_DATE,
	KIS_NUM_KEYS
} KisKeyColumn;

/* The key columns whose values are lists (date conditions make a range) */
#define KIS_NUM_LIST_KEYS	KIS_KEY_DATE


/* The comparison of a pushed-down condition */
typedef enum KisQualOp
{
	KIS_OP_EQ,					/* key = expr */
	KIS_OP_IN,					/* key IN (...), key = ANY(expr); dates too */
	KIS_OP_LT,					/* date comparisons, key on the left */
	KIS_OP_LE,
	KIS_OP_GT,
	KIS_OP_GE
} KisQualOp;

/* One pushed-down condition: "key op expr" */
typedef struct KisKeyQual
{
	KisKeyColumn key;
	KisQualOp	op;
	bool		loose;			/* bounds from outside; stays a local filter too */
	Expr	   *expr;			/* evaluated at scan start */
	int			nconst;			/* values known at plan time, or -1 */
} KisKeyQual;

struct KisEndpoint;
struct PlannerInfo;
struct RelOptInfo;
struct RestrictInfo;
extern void kis_key_attnums(Oid relid, const struct KisEndpoint *ep, AttrNumber *attnums);
extern bool kis_match_key_clause(struct RelOptInfo *baserel, struct RestrictInfo *rinfo,
								 const AttrNumber *key_attnums, KisKeyQual *out);
extern List *kis_symbol_join_clauses(struct PlannerInfo *root, struct RelOptInfo *baserel,
									 AttrNumber symbol_attnum);
extern bool kis_depends_on_rows(Node *expr);

#endif							/* KIS_QUALS_H */
