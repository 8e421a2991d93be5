/*-------------------------------------------------------------------------
 *
 * keys.c
 *	  Evaluating pushed-down key conditions at execution: the distinct
 *	  symbols and markets or exchanges a run asks for, and the date range
 *	  of a daily table.  The foreign scan (scan.c) and the batched join
 *	  (join_exec.c) both use it; plan.c decides which conditions these are
 *	  (kis_plan_keys), and pushdown.c keeps them in the plan.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "nodes/nodeFuncs.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "endpoints.h"
#include "keys.h"
#include "options.h"
#include "pushdown.h"
#include "quals.h"
#include "requests.h"
#include "run.h"
#include "util.h"

/*
 * Prepare the key conditions of a plan: pushdown is the list form of its
 * KisPushdown (pushdown.c), exprs the expressions it points into.
 */
void
kis_keys_init(KisKeyExprs *ke, List *pushdown, List *exprs, PlanState *parent)
{
	kis_pushdown_from_list(&ke->pushdown, pushdown);
	for (int k = 0; k < KIS_NUM_LIST_KEYS; k++)
	{
		int			pos = ke->pushdown.keys[k].pos;

		ke->from_rows[k] = pos >= 0 && kis_depends_on_rows(list_nth(exprs, pos));
	}
	ke->exprs = parent ? ExecInitExprList(exprs, parent) : NIL;
}

/* Text of one key value, as the user wrote it (char(n) padding removed) */
char *
kis_key_text(Datum value, Oid type)
{
	char	   *s = TextDatumGetCString(value);

	if (type == BPCHAROID)
	{
		int			len = strlen(s);

		while (len > 0 && s[len - 1] == ' ')
			s[--len] = '\0';
	}
	return s;
}

static Datum
eval_key_expr(const KisKeyExprs *ke, ExprContext *econtext, int pos,
			  bool *isnull, Oid *type)
{
	ExprState  *es = (ExprState *) list_nth(ke->exprs, pos);

	*type = exprType((Node *) es->expr);
	return ExecEvalExprSwitchContext(es, econtext, isnull);
}

/*
 * The distinct values of one list key, from its pushed-down condition, or
 * the table's default when there is none.  NULLs match nothing.
 */
static List *
key_values(const KisKeyExprs *ke, ExprContext *econtext, KisKeyColumn key,
		   const char *default_value)
{
	const KisKeyPushdown *kp = &ke->pushdown.keys[key];
	Datum		d;
	bool		isnull;
	Oid			type;
	List	   *values;

	if (kp->pos < 0)
		return default_value ? list_make1(pstrdup(default_value)) : NIL;

	d = eval_key_expr(ke, econtext, kp->pos, &isnull, &type);
	if (isnull)
		return NIL;
	values = kis_key_strings(d, type, kp->is_array);

	/* every other condition on the key narrows its values (both sorted) */
	for (int i = 0; i < ke->pushdown.nalso && values != NIL; i++)
	{
		const KisAlsoPushdown *ap = &ke->pushdown.also[i];
		List	   *also = NIL;
		List	   *kept = NIL;
		int			a = 0;
		int			b = 0;

		if (ap->key != key)
			continue;
		d = eval_key_expr(ke, econtext, ap->pos, &isnull, &type);
		if (!isnull)
			also = kis_key_strings(d, type, ap->is_array);
		while (a < list_length(values) && b < list_length(also))
		{
			int			cmp = strcmp(list_nth(values, a), list_nth(also, b));

			if (cmp == 0)
				kept = lappend(kept, list_nth(values, a));
			a += cmp <= 0;
			b += cmp >= 0;
		}
		values = kept;
	}
	return values;
}

/*
 * The distinct texts of a key value of type type, or of the elements of
 * an array value; NULL elements match nothing.
 */
List *
kis_key_strings(Datum d, Oid type, bool is_array)
{
	List	   *values = NIL;

	if (!is_array)
		values = list_make1(kis_key_text(d, type));
	else
	{
		ArrayType  *arr = DatumGetArrayTypeP(d);
		Oid			elemtype = ARR_ELEMTYPE(arr);
		int16		typlen;
		bool		typbyval;
		char		typalign;
		Datum	   *elems;
		bool	   *nulls;
		int			n;

		get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
		deconstruct_array(arr, elemtype, typlen, typbyval, typalign, &elems, &nulls, &n);
		for (int i = 0; i < n; i++)
		{
			if (!nulls[i])
				values = lappend(values, kis_key_text(elems[i], elemtype));
		}
	}
	return kis_sort_unique_strings(values);
}

static int
compare_ints(const void *a, const void *b)
{
	int			x = *(const int *) a;
	int			y = *(const int *) b;

	return (x > y) - (x < y);
}

/*
 * The days of a "date IN (...)" array, sorted and without repeats, kept
 * only if also in the previous set (several IN conditions must all hold).
 * NULL and infinite elements match no row.  Returns how many are left.
 */
static int
date_set(Datum value, int **dates, int ndates, bool have_set)
{
	ArrayType  *arr = DatumGetArrayTypeP(value);
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int		   *set;
	int			nset = 0;
	int			kept = 0;

	deconstruct_array(arr, DATEOID, sizeof(DateADT), true, TYPALIGN_INT,
					  &elems, &nulls, &n);
	set = palloc(sizeof(int) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		if (!nulls[i] && !DATE_NOT_FINITE(DatumGetDateADT(elems[i])))
			set[nset++] = DatumGetDateADT(elems[i]) + POSTGRES_EPOCH_JDATE;
	}
	qsort(set, nset, sizeof(int), compare_ints);
	for (int i = 0; i < nset; i++)
	{
		if (kept > 0 && set[kept - 1] == set[i])
			continue;
		if (have_set && bsearch(&set[i], *dates, ndates, sizeof(int), compare_ints) == NULL)
			continue;
		set[kept++] = set[i];
	}
	*dates = set;
	return kept;
}

/* Narrow a range by "date op jd" (op one of =, <, <=, >, >=) */
static void
narrow_range(KisRange *r, KisQualOp op, int jd)
{
	if (op == KIS_OP_EQ || op == KIS_OP_GT || op == KIS_OP_GE)
	{
		r->from = r->has_from ? Max(r->from, jd) : jd;
		r->has_from = true;
	}
	if (op == KIS_OP_EQ || op == KIS_OP_LT || op == KIS_OP_LE)
	{
		r->to = r->has_to ? Min(r->to, jd) : jd;
		r->has_to = true;
	}
}

/*
 * The date range of the date conditions: each one narrows it.  Returns
 * false when no row can match: a comparison with NULL, or bounds that
 * cross.  An empty range matches nothing, as in any SQL, wherever its
 * bounds come from (constants, parameters, other rows, the partition's
 * bound): no request and no error (docs/daily.md).
 * A timestamp or timestamptz value bounds by its day, from outside (its
 * condition is also a local filter).  "date IN (...)" gives a set of days
 * (range->dates); bounds given elsewhere that exclude every one of them
 * just match nothing.
 */
static bool
date_range(const KisKeyExprs *ke, ExprContext *econtext, KisRange *range)
{
	bool		have_set = false;
	int		   *dates = NULL;
	int			ndates = 0;
	KisRange	bound;			/* the partition bound's */

	memset(range, 0, sizeof(KisRange));
	memset(&bound, 0, sizeof(KisRange));
	for (int i = 0; i < ke->pushdown.ndates; i++)
	{
		const KisDatePushdown *dq = &ke->pushdown.dates[i];
		KisQualOp	op = dq->op;
		bool		isnull;
		Oid			type;
		Datum		value;
		DateADT		d;
		int			jd;
		KisRange   *r = dq->origin == KIS_DATE_PARTITION_BOUND ? &bound : range;

		value = eval_key_expr(ke, econtext, dq->pos, &isnull, &type);
		if (isnull)
			return false;
		if (op == KIS_OP_IN)
		{
			ndates = date_set(value, &dates, ndates, have_set);
			have_set = true;
			continue;
		}
		if (type == INT8OID || type == INT4OID)
		{
			/* the tick ring's seq: a lower bound, the rest stays local */
			int64		seq = type == INT8OID ? DatumGetInt64(value) : DatumGetInt32(value);

			if (op == KIS_OP_GT || op == KIS_OP_GE || op == KIS_OP_EQ)
			{
				int64		after = op == KIS_OP_GT ? seq : seq - 1;

				r->after = r->has_after ? Max(r->after, after) : after;
				r->has_after = true;
			}
			continue;
		}
		if (type == TIMESTAMPOID || type == TIMESTAMPTZOID)
		{
			d = DatumGetDateADT(DirectFunctionCall1(type == TIMESTAMPOID ? timestamp_date :
													timestamptz_date, value));
			if (op == KIS_OP_GT)
				op = KIS_OP_GE;
			else if (op == KIS_OP_LT)
				op = KIS_OP_LE;
		}
		else
			d = DatumGetDateADT(value);
		if (DATE_NOT_FINITE(d))
		{
			/* -infinity as a lower bound, infinity as an upper: no bound */
			if ((DATE_IS_NOBEGIN(d) && (op == KIS_OP_GT || op == KIS_OP_GE)) ||
				(DATE_IS_NOEND(d) && (op == KIS_OP_LT || op == KIS_OP_LE)))
				continue;
			return false;
		}
		jd = d + POSTGRES_EPOCH_JDATE;
		if (op == KIS_OP_GT)
			jd++;
		else if (op == KIS_OP_LT)
			jd--;
		narrow_range(r, op, jd);
	}
	/* a partition reads only the dates of its bound */
	if (bound.has_from)
	{
		range->from = range->has_from ? Max(range->from, bound.from) : bound.from;
		range->has_from = true;
	}
	if (bound.has_to)
	{
		range->to = range->has_to ? Min(range->to, bound.to) : bound.to;
		range->has_to = true;
	}
	if (range->has_from && range->has_to && range->from > range->to)
		return false;

	/* the days of IN lists within the range; the range hugs them */
	if (have_set)
	{
		int			kept = 0;

		for (int i = 0; i < ndates; i++)
		{
			if ((!range->has_from || dates[i] >= range->from) &&
				(!range->has_to || dates[i] <= range->to))
				dates[kept++] = dates[i];
		}
		if (kept == 0)
			return false;
		range->has_from = range->has_to = true;
		range->from = dates[0];
		range->to = dates[kept - 1];
		range->ndates = kept;
		range->dates = dates;
	}
	return true;
}

/*
 * Evaluate the key conditions into out, in the current memory context.
 * With with_symbols false (the join, whose symbols come from its other
 * side) the symbol condition is not read.
 */
void
kis_keys_eval(const KisKeyExprs *ke, ExprContext *econtext, Relation rel,
			  const KisConfig *config, bool with_symbols, KisRunKeys *out)
{
	const KisEndpoint *ep = config->endpoint;
	KisKeyColumn venue_key = kis_endpoint_venue_key(ep);

	memset(out, 0, sizeof(KisRunKeys));
	out->can_match = date_range(ke, econtext, &out->range);
	if (kis_endpoint_per_symbol(ep))
	{
		if (with_symbols)
			out->symbols = key_values(ke, econtext, KIS_KEY_SYMBOL,
									  kis_endpoint_key_default(ep, KIS_KEY_SYMBOL));
		out->venues = key_values(ke, econtext, venue_key,
								 kis_endpoint_default_venue(ep, config));
	}
	else if (kis_endpoint_keying(ep) == KIS_KEYING_MARKET)
	{
		/* a listing per market: those asked for, else all */
		out->venues = key_values(ke, econtext, KIS_KEY_MARKET, NULL);
		if (!kis_pushdown_has_key(&ke->pushdown, KIS_KEY_MARKET))
			for (int i = 0; i < kis_endpoint_nmarkets(ep); i++)
				out->venues = lappend(out->venues, pstrdup(kis_endpoint_market(ep, i)));
	}
	out->from_rows = ke->from_rows[KIS_KEY_SYMBOL] || ke->from_rows[venue_key];
}

/* Do two lists hold equal elements in the same order? */
bool
kis_lists_equal(List *a, List *b, list_sort_comparator cmp)
{
	ListCell   *la;
	ListCell   *lb;

	if (list_length(a) != list_length(b))
		return false;
	forboth(la, a, lb, b)
	{
		if (cmp(la, lb) != 0)
			return false;
	}
	return true;
}

/* Would two runs ask for the same? (both lists sorted and unique) */
bool
kis_run_keys_equal(const KisRunKeys *a, const KisRunKeys *b)
{
	if (a->can_match != b->can_match)
		return false;
	if (!a->can_match)
		return true;
	return kis_lists_equal(a->symbols, b->symbols, kis_compare_strings) &&
		kis_lists_equal(a->venues, b->venues, kis_compare_strings) &&
		a->range.has_from == b->range.has_from &&
		a->range.has_to == b->range.has_to &&
		(!a->range.has_from || a->range.from == b->range.from) &&
		(!a->range.has_to || a->range.to == b->range.to) &&
		a->range.has_after == b->range.has_after &&
		(!a->range.has_after || a->range.after == b->range.after) &&
		a->range.ndates == b->range.ndates &&
		(a->range.ndates == 0 ||
		 memcmp(a->range.dates, b->range.dates, sizeof(int) * a->range.ndates) == 0);
}

static List *
copy_strings(List *values)
{
	List	   *copy = NIL;
	ListCell   *lc;

	foreach(lc, values)
		copy = lappend(copy, pstrdup(lfirst(lc)));
	return copy;
}

/* A copy of keys in the current memory context */
void
kis_run_keys_copy(KisRunKeys *dst, const KisRunKeys *src)
{
	*dst = *src;
	dst->symbols = copy_strings(src->symbols);
	dst->venues = copy_strings(src->venues);
	if (src->range.ndates > 0)
	{
		dst->range.dates = palloc(sizeof(int) * src->range.ndates);
		memcpy(dst->range.dates, src->range.dates, sizeof(int) * src->range.ndates);
	}
}
