/*-------------------------------------------------------------------------
 *
 * keys.h
 *	  The pushed-down key conditions of a plan, evaluated at run time into
 *	  the symbols, venues and date range one run asks for (keys.c; used by
 *	  the scan and the batched join).
 *
 * src/keys.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef KIS_KEYS_H
#define KIS_KEYS_H

#include "nodes/pg_list.h"

#include "pushdown.h"
#include "quals.h"
#include "requests.h"

struct KisConfig;
struct PlanState;
struct ExprContext;
struct RelationData;

/* The key conditions of a plan, ready to evaluate */
typedef struct KisKeyExprs
{
	KisPushdown pushdown;		/* what the plan pushed down */
	bool		from_rows[KIS_NUM_LIST_KEYS];	/* values come from table data */
	List	   *exprs;			/* ExprState per pushed-down condition */
} KisKeyExprs;

/* What one run asks for: every (symbol, venue) pair, in one date range */
typedef struct KisRunKeys
{
	List	   *symbols;		/* distinct, sorted */
	List	   *venues;			/* distinct, sorted */
	KisRange	range;
	bool		can_match;		/* false: nothing to ask (empty range) */
	bool		from_rows;		/* values come from table data, not the query */
} KisRunKeys;

extern void kis_keys_init(KisKeyExprs *ke, List *pushdown, List *exprs,
						  struct PlanState *parent);
extern char *kis_key_text(Datum value, Oid type);
extern List *kis_key_strings(Datum value, Oid type, bool is_array);
extern void kis_keys_eval(const KisKeyExprs *ke, struct ExprContext *econtext,
						  struct RelationData *rel, const struct KisConfig *config,
						  bool with_symbols, KisRunKeys *out);
extern bool kis_run_keys_equal(const KisRunKeys *a, const KisRunKeys *b);
extern bool kis_lists_equal(List *a, List *b, list_sort_comparator cmp);
extern void kis_run_keys_copy(KisRunKeys *dst, const KisRunKeys *src);

#endif							/* KIS_KEYS_H */
