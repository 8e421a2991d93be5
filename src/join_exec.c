/*-------------------------------------------------------------------------
 *
 * join_exec.c
 *	  Executing the batched join (join.c).  The first call reads the child
 *	  plan (the other side) into a tuplestore and its distinct keys into a
 *	  hash table, fetches them as one batch (a run per kis table or leaf
 *	  partition, driven together) and keeps the fetched rows by symbol;
 *	  then each stored child row is tried against the rows of its symbol,
 *	  with every join condition checked on each pair.  Rescans, the reuse
 *	  of a batch, and what this relies on in the executor:
 *	  docs/batched-join.md.
 *
 * Memory of a join node (es_query_cxt, which itself holds the node's slots
 * and their descriptors: the executor's tuple table outlives the node):
 *	  "kis_fdw join"        config, expressions, a runner (run.c) per
 *	                        kis table or leaf partition, tuplestore
 *	    "kis_fdw join outer keys"  a batch's outer keys: kept as the last
 *	                        batch's while its rows are, else gone at its start
 *	    "kis_fdw join row"  one fetched row's making
 * and, lent to the node from its first batch until "kis_fdw join" goes
 * (arena.c; "kis_fdw join rows" under it when another node has it):
 *	  "kis_fdw join arena"  the current batch's fetched rows;
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
#include "miscadmin.h"
#include "nodes/extensible.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/ruleutils.h"
#include "utils/tuplestore.h"

#include "arena.h"
#include "compat.h"
#include "endpoints.h"
#include "join.h"
#include "join_exec.h"
#include "join_plan.h"
#include "keys.h"
#include "options.h"
#include "quals.h"
#include "requests.h"
#include "run.h"
#include "util.h"

/* A fetched row, in its symbol's chain; its MinimalTuple follows it */
typedef struct KisJoinRow
{
	struct KisJoinRow *next;
	const char *symbol;			/* the chain's, shared by its rows */
} KisJoinRow;

#define ROW_TUPLE(row)	((MinimalTuple) ((char *) (row) + MAXALIGN(sizeof(KisJoinRow))))

/*
 * The fetched rows of one symbol: the first of their chain, which is also
 * the hash key (16 bytes an entry: a cold backend pays for every page of
 * the index it touches first)
 */
typedef struct KisJoinRows
{
	KisJoinRow *first;
	uint32		hash;
	char		status;
} KisJoinRows;

/* Fetched rows hashed by their symbol string: rows_create(), rows_insert() */
#define SH_PREFIX		rows
#define SH_ELEMENT_TYPE	KisJoinRows
#define SH_KEY_TYPE		KisJoinRow *
#define SH_KEY			first
#define SH_HASH_KEY(tb, key)	hash_bytes((const unsigned char *) (key)->symbol, strlen((key)->symbol))
#define SH_EQUAL(tb, a, b)		(strcmp((a)->symbol, (b)->symbol) == 0)
#define SH_STORE_HASH
#define SH_GET_HASH(tb, a)		((a)->hash)
#define SH_SCOPE		static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

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
	MemoryContext last_cxt;		/* where those are: the fetching batch's keys */
	rows_hash  *rows_by_symbol;
	KisCarve	rows_carve;		/* the rows, their links and symbols */
	MemoryContext row_cxt;		/* one fetched row's making, reset each */

	/* the join */
	bool		have_outer;
	bool		matched;
	KisJoinRow *next_candidate; /* the outer row's next to try, or NULL */

	/* EXPLAIN ANALYZE */
	int64		batches;
	int64		batches_reused;
	int64		outer_total;
	int64		keys_total;
} KisJoinState;

static void
kis_join_begin(CustomScanState *node, EState *estate, int eflags)
{
	KisJoinState *st = (KisJoinState *) node;
	CustomScan *cscan = (CustomScan *) node->ss.ps.plan;
	List	   *priv = cscan->custom_private;
	List	   *exprs = cscan->custom_exprs;
	Oid			relid = intVal(list_nth(priv, KIS_JOIN_PRIV_RELID));
	Oid			userid = intVal(list_nth(priv, KIS_JOIN_PRIV_USERID));
	List	   *parts = list_nth(priv, KIS_JOIN_PRIV_PARTS);
	List	   *part_exprs = list_nth(exprs, KIS_JOIN_EXPRS_PARTS);
	TupleDesc	scan_desc = node->ss.ss_ScanTupleSlot->tts_tupleDescriptor;
	TupleDesc	inner_desc;
	PlanState  *outer;
	MemoryContext old;
	ListCell   *lc;
	ListCell   *le;
	int			n = 0;

	st->jointype = intVal(list_nth(priv, KIS_JOIN_PRIV_JOINTYPE));
	st->nouter = intVal(list_nth(priv, KIS_JOIN_PRIV_NOUTER));
	st->ninner = intVal(list_nth(priv, KIS_JOIN_PRIV_NINNER));
	st->key_names = list_nth(priv, KIS_JOIN_PRIV_KEY_NAMES);
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
		Oid			part_relid = intVal(list_nth(part, KIS_JOIN_PART_RELID));
		AttrNumber	key_attnums[KIS_NUM_KEYS];
		int			i = 0;
		ListCell   *la;

		/* locked already as the query's relation; closed at the node's end */
		p->rel = table_open(part_relid, AccessShareLock);
		old = MemoryContextSwitchTo(st->cxt);
		kis_config_for_table(part_relid, &p->config);
		p->attnos = palloc(sizeof(AttrNumber) * Max(st->ninner, 1));
		foreach(la, list_nth(part, KIS_JOIN_PART_ATTNOS))
			p->attnos[i++] = lfirst_int(la);
		MemoryContextSwitchTo(old);
		kis_key_attnums(part_relid, p->config.endpoint, key_attnums);
		p->symbol_attno = key_attnums[KIS_KEY_SYMBOL];
		p->symbol_type = getBaseType(TupleDescAttr(RelationGetDescr(p->rel),
												   p->symbol_attno - 1)->atttypid);
		kis_keys_init(&p->keys, list_nth(part, KIS_JOIN_PART_PUSHDOWN), lfirst(le),
					  (eflags & EXEC_FLAG_EXPLAIN_ONLY) ? NULL : (PlanState *) node);
	}
	if (eflags & EXEC_FLAG_EXPLAIN_ONLY)
		return;

	st->join_qual = ExecInitQual(list_nth(exprs, KIS_JOIN_EXPRS_JOIN_QUALS), (PlanState *) node);
	st->other_qual = ExecInitQual(list_nth(exprs, KIS_JOIN_EXPRS_OTHER_QUALS),
								  (PlanState *) node);
	st->symbol_expr = ExecInitExpr(list_nth(exprs, KIS_JOIN_EXPRS_SYMBOL), (PlanState *) node);
	st->symbol_type = getBaseType(exprType(list_nth(exprs, KIS_JOIN_EXPRS_SYMBOL)));
	st->gate = ExecInitQual(list_nth(exprs, KIS_JOIN_EXPRS_GATE), (PlanState *) node);
	if (list_nth(exprs, KIS_JOIN_EXPRS_VENUE) != NULL)
	{
		st->venue_expr = ExecInitExpr(list_nth(exprs, KIS_JOIN_EXPRS_VENUE), (PlanState *) node);
		st->venue_type = getBaseType(exprType(list_nth(exprs, KIS_JOIN_EXPRS_VENUE)));
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
		/* a run ends in fetch_rows, before its batch's keys (last_cxt) go */
		kis_runner_borrow_keys(p->runner);
	}
	st->outer_rows = tuplestore_begin_heap(false, false, work_mem);
	MemoryContextSwitchTo(old);
	st->row_cxt = AllocSetContextCreate(st->cxt, "kis_fdw join row",
										ALLOCSET_SMALL_SIZES);

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
	KisCarve	carve;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(KisKey *);
	ctl.entrysize = sizeof(KisKey *);
	ctl.hash = join_key_hash;
	ctl.match = join_key_match;
	ctl.hcxt = keys_cxt;
	if (keys_cxt != NULL)
	{
		seen = hash_create("kis_fdw join keys", 256, &ctl,
						   HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
		kis_carve_init(&carve, keys_cxt);
	}

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
			KisKey	   *key = kis_key_copy_to(kis_carve(&carve, kis_key_size(&probe)),
											  &probe);

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

/*
 * Keep the fetched row of part p in batch_cxt, under its symbol: the row,
 * its link and its symbol carved from the arena's blocks (a cold backend
 * pays for every page it touches first; docs/batched-join.md, "Memory").
 */
static void
keep_row(KisJoinState *st, KisJoinPart *p)
{
	MemoryContext old;
	TupleTableSlot *slot = p->fetch_slot;
	TupleTableSlot *row = st->build_slot;
	bool		isnull;
	Datum		d = slot_getattr(slot, p->symbol_attno, &isnull);
	char	   *symbol;
	MinimalTuple tuple;
	KisJoinRows *entry;
	KisJoinRow *link;
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

	MemoryContextReset(st->row_cxt);
	old = MemoryContextSwitchTo(st->row_cxt);
	/* as the outer keys are: a char(n) value without its padding */
	symbol = kis_key_text(d, p->symbol_type);
	tuple = ExecCopySlotMinimalTuple(row);
	MemoryContextSwitchTo(old);

	link = kis_carve(&st->rows_carve, MAXALIGN(sizeof(KisJoinRow)) + tuple->t_len);
	link->next = NULL;
	link->symbol = symbol;		/* the row's scratch copy: the probe */
	memcpy(ROW_TUPLE(link), tuple, tuple->t_len);
	entry = rows_insert(st->rows_by_symbol, link, &found);
	if (!found)
	{
		/* the key is this row: it keeps its own symbol */
		link->symbol = strcpy(kis_carve(&st->rows_carve, strlen(symbol) + 1), symbol);
	}
	else
	{
		/* second in the chain, reversed back in order by order_chains() */
		link->symbol = entry->first->symbol;
		link->next = entry->first->next;
		entry->first->next = link;
	}
}

/*
 * keep_row puts each row of a symbol after its first: turn each chain's
 * rest around, so that rows are tried in the order they were fetched.
 */
static void
order_chains(rows_hash *rows)
{
	rows_iterator it;
	KisJoinRows *entry;

	rows_start_iterate(rows, &it);
	while ((entry = rows_iterate(rows, &it)) != NULL)
	{
		KisJoinRow *rest = entry->first->next;
		KisJoinRow *done = NULL;

		while (rest != NULL)
		{
			KisJoinRow *next = rest->next;

			rest->next = done;
			done = rest;
			rest = next;
		}
		entry->first->next = done;
	}
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
	KisRunner **waiting = palloc(sizeof(KisRunner *) * st->nparts);
	int			nrunning = st->nparts;

	st->rows_by_symbol = rows_create(st->batch_cxt, Max(list_length(run[0].symbols), 16), NULL);

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
	order_chains(st->rows_by_symbol);
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
		/* sized at once: a list grown cell by cell leaves its old arrays */
		symbols = list_copy(keys);
		foreach(lc, symbols)
			lfirst(lc) = ((KisKey *) lfirst(lc))->symbol;
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
		/* lent from the first batch on, not to a node that never runs */
		if (st->batch_cxt == NULL)
			st->batch_cxt = kis_arena_take(st->cxt);
		MemoryContextReset(st->batch_cxt);
		kis_carve_init(&st->rows_carve, st->batch_cxt);

		/* these keys become the last ones where they are: no copy made */
		if (st->last_cxt != NULL)
			MemoryContextDelete(st->last_cxt);
		st->last_cxt = tmp;
		tmp = NULL;
		for (int i = 0; i < st->nparts; i++)
			st->parts[i].last = run[i];
		st->last_pairs = pairs;
		st->have_last = false;
		fetch_rows(st, run, pairs);
		st->have_last = true;
	}
	MemoryContextSwitchTo(old);
	if (tmp != NULL)
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
			KisJoinRow	probe;
			KisJoinRows *entry = NULL;

			if (!tuplestore_gettupleslot(st->outer_rows, true, false, st->outer_slot))
				return NULL;
			st->have_outer = true;
			st->matched = false;
			pair_tuple(st, st->outer_slot, NULL);
			probe.symbol = outer_key(st, st->symbol_expr, st->symbol_type);
			if (probe.symbol != NULL && st->gate_open)
				entry = rows_lookup(st->rows_by_symbol, &probe);
			st->next_candidate = entry ? entry->first : NULL;
		}

		while (st->next_candidate != NULL)
		{
			MinimalTuple row = ROW_TUPLE(st->next_candidate);

			st->next_candidate = st->next_candidate->next;
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
	List	   *join_quals = list_nth(cscan->custom_exprs, KIS_JOIN_EXPRS_JOIN_QUALS);
	List	   *other_quals = list_nth(cscan->custom_exprs, KIS_JOIN_EXPRS_OTHER_QUALS);
	List	   *gate_quals = list_nth(cscan->custom_exprs, KIS_JOIN_EXPRS_GATE);
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

static const CustomExecMethods kis_join_exec_methods = {
	.CustomName = KIS_JOIN_NAME,
	.BeginCustomScan = kis_join_begin,
	.ExecCustomScan = kis_join_exec,
	.EndCustomScan = kis_join_end,
	.ReScanCustomScan = kis_join_rescan,
	.ExplainCustomScan = kis_join_explain,
};

Node *
kis_join_create_state(CustomScan *cscan)
{
	KisJoinState *st = palloc0(sizeof(KisJoinState));

	NodeSetTag(st, T_CustomScanState);
	st->css.methods = &kis_join_exec_methods;
	return (Node *) st;
}
