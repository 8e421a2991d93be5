/*-------------------------------------------------------------------------
 *
 * partition.c
 *	  A kis foreign table that is a partition holds only the rows its
 *	  partition bound allows, which PostgreSQL does not check for a foreign
 *	  table: the parts of the bound that read only key columns are checked
 *	  on each key before anything is sent (a key of another partition is
 *	  neither requested nor returned), the other parts on each row.  The
 *	  scan (through run.c) and the batched join use it alike; plan.c also
 *	  narrows a partition's date range and venues by its bound.  Why and
 *	  how: docs/partitions.md.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/sysattr.h"
#include "access/table.h"
#include "access/tupdesc.h"
#include "executor/executor.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "rewrite/rewriteManip.h"
#include "utils/lsyscache.h"
#include "utils/partcache.h"
#include "utils/rel.h"

#include "endpoints.h"
#include "partition.h"
#include "quals.h"
#include "requests.h"

/* A key column of the check slot: where it is and how its text is read */
typedef struct KisPartitionColumn
{
	AttrNumber	attnum;			/* InvalidAttrNumber: the table has none */
	FmgrInfo	input;
	Oid			ioparam;
} KisPartitionColumn;

struct KisPartitionFilter
{
	Bitmapset  *row_attnums;	/* columns row_check reads (as pull_varattnos) */
	ExprState  *key_check;		/* the bound's key-column parts, or NULL */
	ExprState  *row_check;		/* its other parts, or NULL */
	ExprContext *econtext;
	TupleTableSlot *key_slot;	/* a row with only the key columns set */
	KisPartitionColumn symbol;
	KisPartitionColumn venue;
};

/* The bound as a flat list of ANDed clauses */
static List *
flatten_ands(List *clauses)
{
	List	   *result = NIL;
	ListCell   *lc;

	foreach(lc, clauses)
	{
		Node	   *clause = lfirst(lc);

		if (is_andclause(clause))
			result = list_concat(result, flatten_ands(((BoolExpr *) clause)->args));
		else
			result = lappend(result, clause);
	}
	return result;
}

/*
 * The ANDed parts of the partition bound of foreign table relid (none if
 * it is not a partition), as conditions on range table entry varno, for
 * the planner to match against the key columns.  The caller holds a lock
 * on the table.
 */
List *
kis_partition_bound_clauses(Oid relid, Index varno)
{
	Relation	rel = table_open(relid, NoLock);
	List	   *clauses = NIL;

	if (rel->rd_rel->relispartition)
	{
		clauses = flatten_ands(RelationGetPartitionQual(rel));
		if (varno != 1)
			ChangeVarNodes((Node *) clauses, 1, varno, 0);
	}
	table_close(rel, NoLock);
	return clauses;
}

static void
init_column(KisPartitionColumn *col, TupleDesc tupdesc, AttrNumber attnum)
{
	Oid			infunc;

	col->attnum = attnum;
	if (attnum == InvalidAttrNumber)
		return;
	getTypeInputInfo(TupleDescAttr(tupdesc, attnum - 1)->atttypid, &infunc, &col->ioparam);
	fmgr_info(infunc, &col->input);
}

static void
add_attnum(Bitmapset **set, AttrNumber attnum)
{
	if (attnum != InvalidAttrNumber)
		*set = bms_add_member(*set, attnum - FirstLowInvalidHeapAttributeNumber);
}

/*
 * The filter of foreign table rel for endpoint ep, in the current memory
 * context; NULL when rel is not a partition.  It holds no resources but
 * memory.
 */
KisPartitionFilter *
kis_partition_filter_create(Relation rel, const KisEndpoint *ep)
{
	KisPartitionFilter *f;
	AttrNumber	attnums[KIS_NUM_KEYS];
	Bitmapset  *key_columns = NULL;
	TupleDesc	tupdesc;
	List	   *bound;
	List	   *key_parts = NIL;
	List	   *row_parts = NIL;
	ListCell   *lc;

	if (!rel->rd_rel->relispartition)
		return NULL;
	bound = flatten_ands(RelationGetPartitionQual(rel));
	if (bound == NIL)
		return NULL;

	f = palloc0(sizeof(KisPartitionFilter));
	kis_key_attnums(RelationGetRelid(rel), ep, attnums);
	/* a copy: a slot on it pins nothing with the resource owner */
	tupdesc = CreateTupleDescCopy(RelationGetDescr(rel));
	init_column(&f->symbol, tupdesc, attnums[KIS_KEY_SYMBOL]);
	init_column(&f->venue, tupdesc, attnums[kis_endpoint_venue_key(ep)]);
	add_attnum(&key_columns, f->symbol.attnum);
	add_attnum(&key_columns, f->venue.attnum);

	/*
	 * The parts that read nothing but key columns decide about keys (a row
	 * carries its key's symbol and venue); the others are checked on rows.
	 */
	foreach(lc, bound)
	{
		Bitmapset  *reads = NULL;

		pull_varattnos(lfirst(lc), 1, &reads);
		if (!bms_is_empty(reads) && bms_is_subset(reads, key_columns))
			key_parts = lappend(key_parts, lfirst(lc));
		else
		{
			row_parts = lappend(row_parts, lfirst(lc));
			f->row_attnums = bms_add_members(f->row_attnums, reads);
		}
	}

	f->econtext = CreateStandaloneExprContext();
	if (row_parts != NIL)
		f->row_check = ExecInitCheck((List *) expression_planner((Expr *) row_parts), NULL);
	if (key_parts != NIL)
	{
		f->key_check = ExecInitCheck((List *) expression_planner((Expr *) key_parts), NULL);
		f->key_slot = MakeSingleTupleTableSlot(tupdesc, &TTSOpsVirtual);
	}
	return f;
}

/*
 * Add the columns the bound reads to a list of needed attnums (0: all),
 * so that the row check sees their values
 */
List *
kis_partition_needed(const KisPartitionFilter *f, List *needed)
{
	int			x = -1;

	if (f == NULL || list_member_int(needed, 0))
		return needed;
	while ((x = bms_next_member(f->row_attnums, x)) >= 0)
	{
		AttrNumber	attnum = x + FirstLowInvalidHeapAttributeNumber;

		if (attnum > 0 && !list_member_int(needed, attnum))
			needed = lappend_int(needed, attnum);
	}
	return needed;
}

static void
set_column(TupleTableSlot *slot, const KisPartitionColumn *col, const char *text)
{
	if (col->attnum == InvalidAttrNumber || text == NULL)
		return;
	slot->tts_values[col->attnum - 1] =
		InputFunctionCall((FmgrInfo *) &col->input, (char *) text, col->ioparam, -1);
	slot->tts_isnull[col->attnum - 1] = false;
}

/* Does the bound allow a row with this symbol and venue? */
static bool
key_allowed(KisPartitionFilter *f, const KisKey *key)
{
	TupleTableSlot *slot = f->key_slot;
	MemoryContext old;

	ResetExprContext(f->econtext);
	ExecClearTuple(slot);
	memset(slot->tts_isnull, true, sizeof(bool) * slot->tts_tupleDescriptor->natts);
	old = MemoryContextSwitchTo(f->econtext->ecxt_per_tuple_memory);
	set_column(slot, &f->symbol, key->symbol);
	set_column(slot, &f->venue, key->venue);
	MemoryContextSwitchTo(old);
	ExecStoreVirtualTuple(slot);
	f->econtext->ecxt_scantuple = slot;
	return ExecCheck(f->key_check, f->econtext);
}

/*
 * The keys (KisKey *) whose rows may belong to this partition, in their
 * order: a new list (keys itself when nothing is filtered out by it).
 */
List *
kis_partition_keys(KisPartitionFilter *f, List *keys)
{
	List	   *kept = NIL;
	ListCell   *lc;

	if (f == NULL || f->key_check == NULL)
		return keys;
	foreach(lc, keys)
	{
		if (key_allowed(f, lfirst(lc)))
			kept = lappend(kept, lfirst(lc));
	}
	return kept;
}

/*
 * Does the bound let in rows of this venue (market or exchange), as far as
 * its parts that read nothing but the venue column can tell?  For the
 * planner (plan.c): a partition whose bound excludes the venue its
 * requests use could never hold a row.
 */
bool
kis_partition_venue_allowed(Relation rel, const KisEndpoint *ep, const char *venue)
{
	AttrNumber	attnums[KIS_NUM_KEYS];
	KisPartitionColumn col;
	List	   *parts = NIL;
	TupleDesc	tupdesc;
	TupleTableSlot *slot;
	ExprContext *econtext;
	ExprState  *check;
	ListCell   *lc;
	bool		ok;

	kis_key_attnums(RelationGetRelid(rel), ep, attnums);
	col.attnum = attnums[kis_endpoint_venue_key(ep)];
	if (col.attnum == InvalidAttrNumber || !rel->rd_rel->relispartition)
		return true;
	foreach(lc, flatten_ands(RelationGetPartitionQual(rel)))
	{
		Bitmapset  *reads = NULL;

		pull_varattnos(lfirst(lc), 1, &reads);
		if (bms_membership(reads) == BMS_SINGLETON &&
			bms_is_member(col.attnum - FirstLowInvalidHeapAttributeNumber, reads))
			parts = lappend(parts, lfirst(lc));
	}
	if (parts == NIL)
		return true;

	tupdesc = CreateTupleDescCopy(RelationGetDescr(rel));
	init_column(&col, tupdesc, col.attnum);
	slot = MakeSingleTupleTableSlot(tupdesc, &TTSOpsVirtual);
	econtext = CreateStandaloneExprContext();
	check = ExecInitCheck((List *) expression_planner((Expr *) parts), NULL);
	ExecClearTuple(slot);
	memset(slot->tts_isnull, true, sizeof(bool) * tupdesc->natts);
	set_column(slot, &col, venue);
	ExecStoreVirtualTuple(slot);
	econtext->ecxt_scantuple = slot;
	ok = ExecCheck(check, econtext);
	ExecDropSingleTupleTableSlot(slot);
	FreeExprContext(econtext, true);
	return ok;
}

/* Does the row in slot (a tuple of the partition) satisfy the bound? */
bool
kis_partition_row_ok(KisPartitionFilter *f, TupleTableSlot *slot)
{
	if (f == NULL || f->row_check == NULL)
		return true;
	ResetExprContext(f->econtext);
	f->econtext->ecxt_scantuple = slot;
	return ExecCheck(f->row_check, f->econtext);
}
