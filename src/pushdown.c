/*-------------------------------------------------------------------------
 *
 * pushdown.c
 *	  The planner's pushed-down conditions (a KisPushdown), and their form
 *	  in a plan.  A plan must survive copyObject, outfuncs and readfuncs
 *	  (prepared statements, parallel workers, plan caching), so a scan's
 *	  fdw_private and the batched join's custom_private hold them as Lists
 *	  of integers:
 *
 *	    keys    per list key (symbol, market, exchange), KEY_NFIELDS each:
 *	            the position of its expression or -1, whether it is an
 *	            array, and how many values it has at plan time or -1
 *	    dates   per date condition, DATE_NFIELDS each: its operator, the
 *	            position of its expression, and where it comes from
 *
 *	  The expressions are the plan's own list (fdw_exprs, or a part of the
 *	  join's custom_exprs), so that setrefs.c fixes them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "pushdown.h"

/* The slots of the list form */
enum
{
	PUSHDOWN_KEYS,
	PUSHDOWN_DATES,
	PUSHDOWN_ALSO
};

/* The fields of one key in the keys list */
enum
{
	KEY_POS,
	KEY_IS_ARRAY,
	KEY_NPLANNED,
	KEY_NFIELDS
};

/* The fields of one narrowing condition in the also list */
enum
{
	ALSO_KEY,
	ALSO_POS,
	ALSO_IS_ARRAY,
	ALSO_NFIELDS
};

/* The fields of one date condition in the dates list */
enum
{
	DATE_OP,
	DATE_POS,
	DATE_ORIGIN,
	DATE_NFIELDS
};

/* Nothing pushed down */
void
kis_pushdown_init(KisPushdown *pd)
{
	memset(pd, 0, sizeof(KisPushdown));
	for (int k = 0; k < KIS_NUM_LIST_KEYS; k++)
	{
		pd->keys[k].pos = -1;
		pd->keys[k].is_array = false;
		pd->keys[k].nplanned = -1;
	}
}

/* The condition of list key key: "key = expr", or "key IN expr" */
void
kis_pushdown_set_key(KisPushdown *pd, KisKeyColumn key, Expr *expr, bool is_array,
					 int nplanned)
{
	Assert(key < KIS_NUM_LIST_KEYS);
	pd->keys[key].pos = list_length(pd->exprs);
	pd->keys[key].is_array = is_array;
	pd->keys[key].nplanned = nplanned;
	pd->exprs = lappend(pd->exprs, expr);
}

/* One more date condition: "date op expr" */
void
kis_pushdown_add_date(KisPushdown *pd, KisQualOp op, Expr *expr, KisDateOrigin origin)
{
	if (pd->ndates == 0)
		pd->dates = palloc(sizeof(KisDatePushdown));
	else
		pd->dates = repalloc(pd->dates, sizeof(KisDatePushdown) * (pd->ndates + 1));
	pd->dates[pd->ndates].op = op;
	pd->dates[pd->ndates].pos = list_length(pd->exprs);
	pd->dates[pd->ndates].origin = origin;
	pd->ndates++;
	pd->exprs = lappend(pd->exprs, expr);
}

/* Another condition on a key that has one: its values narrow the key's */
void
kis_pushdown_add_also(KisPushdown *pd, KisKeyColumn key, Expr *expr, bool is_array)
{
	Assert(key < KIS_NUM_LIST_KEYS && pd->keys[key].pos >= 0);
	if (pd->nalso == 0)
		pd->also = palloc(sizeof(KisAlsoPushdown));
	else
		pd->also = repalloc(pd->also, sizeof(KisAlsoPushdown) * (pd->nalso + 1));
	pd->also[pd->nalso].key = key;
	pd->also[pd->nalso].pos = list_length(pd->exprs);
	pd->also[pd->nalso].is_array = is_array;
	pd->nalso++;
	pd->exprs = lappend(pd->exprs, expr);
}

bool
kis_pushdown_has_key(const KisPushdown *pd, KisKeyColumn key)
{
	return key < KIS_NUM_LIST_KEYS && pd->keys[key].pos >= 0;
}

/* The list form, for the plan (without the expressions) */
List *
kis_pushdown_to_list(const KisPushdown *pd)
{
	List	   *keys = NIL;
	List	   *dates = NIL;
	List	   *also = NIL;

	for (int k = 0; k < KIS_NUM_LIST_KEYS; k++)
	{
		const KisKeyPushdown *kp = &pd->keys[k];
		int			fields[KEY_NFIELDS];

		fields[KEY_POS] = kp->pos;
		fields[KEY_IS_ARRAY] = kp->pos >= 0 && kp->is_array;
		fields[KEY_NPLANNED] = kp->pos >= 0 ? kp->nplanned : -1;
		for (int f = 0; f < KEY_NFIELDS; f++)
			keys = lappend_int(keys, fields[f]);
	}
	for (int i = 0; i < pd->ndates; i++)
	{
		int			fields[DATE_NFIELDS];

		fields[DATE_OP] = pd->dates[i].op;
		fields[DATE_POS] = pd->dates[i].pos;
		fields[DATE_ORIGIN] = pd->dates[i].origin;
		for (int f = 0; f < DATE_NFIELDS; f++)
			dates = lappend_int(dates, fields[f]);
	}
	for (int i = 0; i < pd->nalso; i++)
	{
		int			fields[ALSO_NFIELDS];

		fields[ALSO_KEY] = pd->also[i].key;
		fields[ALSO_POS] = pd->also[i].pos;
		fields[ALSO_IS_ARRAY] = pd->also[i].is_array;
		for (int f = 0; f < ALSO_NFIELDS; f++)
			also = lappend_int(also, fields[f]);
	}
	return list_make3(keys, dates, also);
}

/* Read the list form back, in the current memory context (exprs NIL) */
void
kis_pushdown_from_list(KisPushdown *pd, List *list)
{
	List	   *keys = list_nth(list, PUSHDOWN_KEYS);
	List	   *dates = list_nth(list, PUSHDOWN_DATES);
	List	   *also = list_nth(list, PUSHDOWN_ALSO);

	kis_pushdown_init(pd);
	Assert(list_length(keys) == KIS_NUM_LIST_KEYS * KEY_NFIELDS);
	for (int k = 0; k < KIS_NUM_LIST_KEYS; k++)
	{
		pd->keys[k].pos = list_nth_int(keys, k * KEY_NFIELDS + KEY_POS);
		pd->keys[k].is_array = list_nth_int(keys, k * KEY_NFIELDS + KEY_IS_ARRAY);
		pd->keys[k].nplanned = list_nth_int(keys, k * KEY_NFIELDS + KEY_NPLANNED);
	}
	Assert(list_length(dates) % DATE_NFIELDS == 0);
	pd->ndates = list_length(dates) / DATE_NFIELDS;
	if (pd->ndates > 0)
		pd->dates = palloc(sizeof(KisDatePushdown) * pd->ndates);
	for (int i = 0; i < pd->ndates; i++)
	{
		pd->dates[i].op = list_nth_int(dates, i * DATE_NFIELDS + DATE_OP);
		pd->dates[i].pos = list_nth_int(dates, i * DATE_NFIELDS + DATE_POS);
		pd->dates[i].origin = list_nth_int(dates, i * DATE_NFIELDS + DATE_ORIGIN);
	}
	Assert(list_length(also) % ALSO_NFIELDS == 0);
	pd->nalso = list_length(also) / ALSO_NFIELDS;
	if (pd->nalso > 0)
		pd->also = palloc(sizeof(KisAlsoPushdown) * pd->nalso);
	for (int i = 0; i < pd->nalso; i++)
	{
		pd->also[i].key = list_nth_int(also, i * ALSO_NFIELDS + ALSO_KEY);
		pd->also[i].pos = list_nth_int(also, i * ALSO_NFIELDS + ALSO_POS);
		pd->also[i].is_array = list_nth_int(also, i * ALSO_NFIELDS + ALSO_IS_ARRAY);
	}
}
