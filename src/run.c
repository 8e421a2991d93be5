/*-------------------------------------------------------------------------
 *
 * run.c
 *	  One run of requests, from keys to tuples: check the keys, queue their
 *	  requests on a fetcher, turn each completed answer into tuples of the
 *	  foreign table (values through each column type's input function),
 *	  and apply on_error to keys that failed.
 *
 * Both executor nodes of kis_fdw use it: the foreign scan (scan.c), whose
 * keys come from pushed-down conditions, and the batched join (join.c),
 * whose keys come from the other side of the join.  It knows nothing of
 * plans or expressions.
 *
 * Answers complete in no set order.  Under on_error 'skip' and 'row' rows
 * go out as answers arrive.  Under 'error' the outcome must not depend on
 * that order, or a consumer that stops early (LIMIT, EXISTS, SELECT INTO
 * in PL/pgSQL, a cursor closed early) would get a row in one call and the
 * error in the next.  So rows go out in waves: every request in flight is
 * answered before any row of those answers goes out, and if a key failed
 * the error (for the least failing key, so its text is stable too) comes
 * instead of any row.  The next pages of paged endpoints form the next
 * wave.  Whether a query errors then depends only on KIS's answers, not on
 * their order; the price is that under 'error' the first row waits for the
 * slowest request of its wave.
 *
 * Memory and resources:
 *	  parent (the node's context)
 *	    "kis_fdw runner"  the column map, counters over all runs
 *	      "kis_fdw run"   one run's keys and fetcher; its reset callback
 *	                      frees every libcurl handle (fetch.c).  Ending a
 *	                      run deletes it.
 *	      "kis_fdw row"   the current tuple's values, reset per tuple
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "commands/explain.h"
#include "executor/tuptable.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "kis_fdw.h"

#define KIS_MAX_SKIPPED_LISTED	10	/* symbols named in the skip WARNING */

/* What a tuple column is filled from */
typedef enum KisColumnSource
{
	KIS_COL_UNUSED,				/* dropped, or not needed by the query */
	KIS_COL_SYMBOL,
	KIS_COL_VENUE,				/* market or exchange */
	KIS_COL_FETCHED_AT,
	KIS_COL_ERROR,
	KIS_COL_RAW,
	KIS_COL_FIELD
} KisColumnSource;

typedef struct KisColumn
{
	KisColumnSource source;
	const char *name;
	const char *field;			/* KIS_COL_FIELD */
	FmgrInfo	input;
	Oid			ioparam;
	int32		typmod;
} KisColumn;

struct KisRunner
{
	MemoryContext cxt;
	MemoryContext row_cxt;
	MemoryContext run_cxt;		/* NULL between runs */
	const KisConfig *config;
	Relation	rel;

	int			ncolumns;
	KisColumn  *columns;
	bool		has_error_column;
	KisPartitionFilter *partition;	/* NULL unless rel is a partition */

	/* the current run */
	KisFetcher *fetcher;
	int			nkeys;
	List	   *skipped;		/* "symbol: reason" of skipped keys */
	List	   *invalid;		/* KisRow *s of keys not sent (bad values) */
	KisCompletion *current;		/* the answer whose rows are being returned */
	List	   *rows;			/* its KisRow *s */
	int			next_row;
	List	   *wave;			/* on_error 'error': KisHeldAnswer *s */
	bool		wave_ready;		/* r->wave is whole and checked */

	/* over all runs, for EXPLAIN ANALYZE */
	KisFetchStats stats;
	int64		keys_requested;
};

/* One answer of a wave held back under on_error 'error', and its rows */
typedef struct KisHeldAnswer
{
	KisCompletion *completion;
	List	   *rows;
} KisHeldAnswer;

/* What the error context callback needs to name a failing conversion */
typedef struct KisConvContext
{
	Relation	rel;
	const KisColumn *column;
	const KisRow *row;
} KisConvContext;

static int
compare_strings(const ListCell *a, const ListCell *b)
{
	return strcmp(lfirst(a), lfirst(b));
}

/* Sort a list of strings and drop repeats, in place */
List *
kis_sort_unique_strings(List *values)
{
	List	   *unique = NIL;
	ListCell   *lc;

	list_sort(values, compare_strings);
	foreach(lc, values)
	{
		if (unique == NIL || strcmp(llast(unique), lfirst(lc)) != 0)
			unique = lappend(unique, lfirst(lc));
	}
	list_free(values);
	return unique;
}

/* Decide what fills each column, and look up its input function */
static void
build_column_map(KisRunner *r, List *needed)
{
	const KisEndpoint *ep = r->config->endpoint;
	TupleDesc	tupdesc = RelationGetDescr(r->rel);
	Oid			relid = RelationGetRelid(r->rel);
	bool		whole_row = list_member_int(needed, 0);

	r->ncolumns = tupdesc->natts;
	r->columns = palloc0(sizeof(KisColumn) * tupdesc->natts);
	for (int i = 0; i < tupdesc->natts; i++)
	{
		Form_pg_attribute attr = TupleDescAttr(tupdesc, i);
		KisColumn  *col = &r->columns[i];
		const char *name = NameStr(attr->attname);
		char	   *field_opt;
		Oid			infunc;

		if (attr->attisdropped)
			continue;
		/* known even if not read: on_error 'row' needs it */
		if (strcmp(name, "error") == 0)
			r->has_error_column = true;
		if (!whole_row && !list_member_int(needed, attr->attnum))
			continue;

		col->name = pstrdup(name);
		field_opt = kis_column_field_option(relid, attr->attnum);
		if (field_opt != NULL)
		{
			col->source = KIS_COL_FIELD;
			col->field = field_opt;
		}
		else if (strcmp(name, "symbol") == 0 && ep->symbol_kind != KIS_SYMBOL_NONE)
			col->source = KIS_COL_SYMBOL;
		else if ((strcmp(name, "market") == 0 && ep->has_market) ||
				 (strcmp(name, "exchange") == 0 && ep->has_exchange))
			col->source = KIS_COL_VENUE;
		else if (strcmp(name, "fetched_at") == 0)
			col->source = KIS_COL_FETCHED_AT;
		else if (strcmp(name, "error") == 0)
			col->source = KIS_COL_ERROR;
		else if (strcmp(name, "raw") == 0)
			col->source = KIS_COL_RAW;
		else
		{
			col->source = KIS_COL_FIELD;
			col->field = kis_endpoint_field(ep, name);
			if (col->field == NULL)
				col->field = col->name;
		}

		getTypeInputInfo(attr->atttypid, &infunc, &col->ioparam);
		fmgr_info_cxt(infunc, &col->input, r->cxt);
		col->typmod = attr->atttypmod;
	}
}

/*
 * A runner for the foreign table rel, filling the columns whose attnums
 * are in needed (0: all).  config must have its credentials and live as
 * long as the runner.
 */
KisRunner *
kis_runner_create(Relation rel, const KisConfig *config, List *needed,
				  MemoryContext parent)
{
	MemoryContext cxt = AllocSetContextCreate(parent, "kis_fdw runner",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	KisRunner  *r = palloc0(sizeof(KisRunner));

	r->cxt = cxt;
	r->rel = rel;
	r->config = config;
	r->partition = kis_partition_filter_create(rel, config->endpoint);
	build_column_map(r, kis_partition_needed(r->partition, list_copy(needed)));
	r->row_cxt = AllocSetContextCreate(cxt, "kis_fdw row", ALLOCSET_SMALL_SIZES);
	MemoryContextSwitchTo(old);

	if (config->on_error == KIS_ON_ERROR_ROW && !r->has_error_column)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_ERROR),
				 errmsg("on_error 'row' needs a column named \"error\" in foreign table \"%s\"",
						RelationGetRelationName(rel)),
				 errhint("ALTER FOREIGN TABLE %s ADD COLUMN error text;",
						 RelationGetRelationName(rel))));
	return r;
}

/*
 * Start a run over every (symbol, venue) pair of keys (symbols is ignored
 * by account endpoints); the run keeps copies.
 */
void
kis_runner_start(KisRunner *r, const KisRunKeys *keys)
{
	List	   *pairs = NIL;
	ListCell   *ls;
	ListCell   *lv;

	if (r->config->endpoint->symbol_kind != KIS_SYMBOL_NONE)
	{
		foreach(ls, keys->symbols)
		{
			foreach(lv, keys->venues)
			{
				KisKey	   *key = palloc(sizeof(KisKey));

				key->symbol = lfirst(ls);
				key->venue = lfirst(lv);
				pairs = lappend(pairs, key);
			}
		}
	}
	kis_runner_start_keys(r, pairs, &keys->range, keys->can_match, keys->from_rows);
}

/* Why a key cannot be sent, or NULL */
static const char *
invalid_key_problem(const KisEndpoint *ep, const KisKey *key)
{
	if (!kis_symbol_is_valid(ep->symbol_kind, key->symbol))
		return "invalid symbol";
	if (ep->has_exchange ? !kis_exchange_is_valid(key->venue) :
		!kis_market_is_valid(key->venue))
		return ep->has_exchange ? "invalid exchange" : "invalid market";
	return NULL;
}

/* The ERROR for a key that cannot be sent */
static void
report_invalid_key(const KisEndpoint *ep, const KisKey *key)
{
	if (!kis_symbol_is_valid(ep->symbol_kind, key->symbol))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid symbol \"%s\"", key->symbol),
				 errhint("%s", kis_symbol_hint(ep->symbol_kind))));
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid %s \"%s\"", ep->has_exchange ? "exchange" : "market",
					key->venue),
			 ep->has_exchange ?
			 errhint("Valid exchanges are NAS, NYS, AMS (and their daytime codes BAQ, BAY, BAA), HKS, TSE, SHS, SZS, SHI, SZI, HSX, HNX.") :
			 errhint("Valid markets are: J (KRX), NX (Nextrade), UN (both).")));
}

/*
 * Start a run over a list of KisKey (distinct; NIL for account
 * endpoints); the run keeps copies.  A bad symbol or venue is an ERROR
 * naming it, before anything is sent, unless it comes from table data
 * (from_rows) and on_error is 'skip' or 'row': then it is a failed key
 * like one KIS refused, and the others are asked for.  With can_match
 * false (an empty date range) nothing is sent and the run returns no rows.
 */
void
kis_runner_start_keys(KisRunner *r, List *keys, const KisRange *range,
					  bool can_match, bool from_rows)
{
	const KisEndpoint *ep = r->config->endpoint;
	List	   *valid = NIL;
	ListCell   *lc;
	MemoryContext old;

	Assert(r->run_cxt == NULL);
	r->run_cxt = AllocSetContextCreate(r->cxt, "kis_fdw run",
									   ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(r->run_cxt);
	r->nkeys = 0;
	r->skipped = NIL;
	r->next_row = 0;
	r->wave = NIL;
	r->wave_ready = false;
	r->invalid = NIL;

	/*
	 * A bad key is an ERROR unless it comes from table data and on_error
	 * says otherwise; symbols first, then venues: the first bad one is
	 * named.
	 */
	if (!from_rows || r->config->on_error == KIS_ON_ERROR_ERROR)
	{
		foreach(lc, keys)
		{
			if (!kis_symbol_is_valid(ep->symbol_kind, ((KisKey *) lfirst(lc))->symbol))
				report_invalid_key(ep, lfirst(lc));
		}
		foreach(lc, keys)
		{
			if (invalid_key_problem(ep, lfirst(lc)) != NULL)
				report_invalid_key(ep, lfirst(lc));
		}
	}

	/* a partition asks only for the keys of its bound (partition.c) */
	keys = kis_partition_keys(r->partition, keys);
	foreach(lc, keys)
	{
		KisKey	   *key = lfirst(lc);
		KisKey	   *copy = palloc(sizeof(KisKey));
		const char *problem = invalid_key_problem(ep, key);

		copy->symbol = pstrdup(key->symbol);
		copy->venue = pstrdup(key->venue);
		if (problem == NULL)
			valid = lappend(valid, copy);
		else
		{
			KisRow	   *row = palloc0(sizeof(KisRow));

			row->key = copy;
			row->problem = pstrdup(problem);
			r->invalid = lappend(r->invalid, row);
		}
	}

	r->nkeys = ep->symbol_kind == KIS_SYMBOL_NONE ? 1 : list_length(keys);
	if (!can_match)
		r->invalid = NIL;
	if (can_match && r->nkeys > 0 && (valid != NIL || ep->symbol_kind == KIS_SYMBOL_NONE))
	{
		r->fetcher = kis_fetch_begin(r->run_cxt, r->config, &r->stats);
		if (kis_requests_start(r->fetcher, r->config, valid, range) == 0 &&
			r->invalid == NIL)
			r->nkeys = 0;
	}
	r->keys_requested += ep->symbol_kind == KIS_SYMBOL_NONE ? 0 : list_length(valid);
	MemoryContextSwitchTo(old);
}

bool
kis_runner_started(const KisRunner *r)
{
	return r->run_cxt != NULL;
}

static void warn_skipped(KisRunner *r);

/*
 * Drop the current run: its context's callback frees the handles.  A run
 * ended early (LIMIT, a semi-join's rescan) still reports what it skipped.
 */
void
kis_runner_end(KisRunner *r)
{
	if (r->skipped != NIL)
		warn_skipped(r);
	if (r->fetcher != NULL)
		kis_fetch_end(r->fetcher);
	if (r->run_cxt != NULL)
		MemoryContextDelete(r->run_cxt);
	r->fetcher = NULL;
	r->run_cxt = NULL;
	r->current = NULL;
	r->rows = NIL;
	r->invalid = NIL;
	r->next_row = 0;
	r->wave = NIL;
	r->wave_ready = false;
}

/*
 * A key as the skip WARNING names it: the symbol, with its market or
 * exchange unless it is the table's default market; the endpoint for
 * account rows.
 */
static char *
key_label(const KisRunner *r, const KisKey *key)
{
	const KisEndpoint *ep = r->config->endpoint;

	if (key == NULL)
		return pstrdup(ep->name);
	if (ep->has_market && strcmp(key->venue, r->config->market) == 0)
		return pstrdup(key->symbol);
	return psprintf("%s (%s)", key->symbol, key->venue);
}

/* What a failing row is about: its symbol, or the endpoint */
static const char *
row_subject(const KisRunner *r, const KisRow *row)
{
	if (row->key != NULL)
		return psprintf("symbol \"%s\"", row->key->symbol);
	return psprintf("endpoint %s", r->config->endpoint->name);
}

static void
conversion_error_callback(void *arg)
{
	KisConvContext *cc = (KisConvContext *) arg;
	const char *subject = cc->row->key ? cc->row->key->symbol : "(account)";

	if (cc->column == NULL)
		return;
	if (cc->column->source == KIS_COL_FIELD)
		errcontext("column \"%s\" of foreign table \"%s\", KIS field \"%s\", symbol \"%s\"",
				   cc->column->name, RelationGetRelationName(cc->rel),
				   cc->column->field, subject);
	else
		errcontext("column \"%s\" of foreign table \"%s\", symbol \"%s\"",
				   cc->column->name, RelationGetRelationName(cc->rel), subject);
}

/* The KIS text of one column, in the server encoding, or NULL */
static char *
column_text(const KisColumn *col, const KisRow *row, const KisCompletion *c)
{
	char	   *text = NULL;

	switch (col->source)
	{
		case KIS_COL_UNUSED:
			return NULL;
		case KIS_COL_SYMBOL:
			return row->key ? row->key->symbol : NULL;
		case KIS_COL_VENUE:
			return row->key ? row->key->venue : NULL;
		case KIS_COL_FETCHED_AT:
			if (c == NULL)		/* a key never sent */
				return NULL;
			return DatumGetCString(DirectFunctionCall1(timestamptz_out,
													   TimestampTzGetDatum(c->completed_at)));
		case KIS_COL_ERROR:
			return kis_server_message(row->problem);
		case KIS_COL_RAW:
			/* JSON: what the encoding lacks stays a valid \u escape */
			text = row->row ? kis_row_raw_text(row->row) : NULL;
			return kis_server_message(text);
		case KIS_COL_FIELD:
			text = row->row ? kis_row_value(row, col->field) : NULL;
			break;
	}
	return kis_server_text(text);
}

/* Fill the slot from one row (a failed key under on_error 'row' has no data) */
static void
store_row(KisRunner *r, TupleTableSlot *slot, const KisRow *row,
		  const KisCompletion *c)
{
	KisConvContext cc;
	ErrorContextCallback errcb;
	MemoryContext old = MemoryContextSwitchTo(r->row_cxt);

	cc.rel = r->rel;
	cc.row = row;
	cc.column = NULL;
	errcb.callback = conversion_error_callback;
	errcb.arg = &cc;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	for (int i = 0; i < r->ncolumns; i++)
	{
		const KisColumn *col = &r->columns[i];
		char	   *text;

		cc.column = col;		/* before anything that can fail */
		text = column_text(col, row, c);

		/*
		 * NULL goes through the input function too, as in COPY: a domain's
		 * input function checks its NOT NULL and CHECK constraints there.
		 * Unused columns stay NULL without a check: the query reads none.
		 */
		slot->tts_isnull[i] = (text == NULL);
		slot->tts_values[i] = col->source == KIS_COL_UNUSED ? (Datum) 0 :
			InputFunctionCall((FmgrInfo *) &col->input, text, col->ioparam, col->typmod);
	}

	error_context_stack = errcb.previous;
	MemoryContextSwitchTo(old);
	ExecStoreVirtualTuple(slot);
}

/* on_error 'error': the ERROR for a failed key */
static void
raise_failure(KisRunner *r, const KisRow *row)
{
	const KisEndpoint *ep = r->config->endpoint;

	if (strcmp(row->problem, KIS_NOT_LISTED) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_ERROR),
				 errmsg("symbol \"%s\" is not listed on %s %s", row->key->symbol,
						ep->has_exchange ? "exchange" : "market", row->key->venue),
				 errdetail("KIS answered without a price for it."),
				 errhint("Check the symbol%s, or set the table's on_error option to 'skip' or 'row'.",
						 ep->has_exchange ? " and the exchange" : "")));
	ereport(ERROR,
			(errcode(ERRCODE_FDW_ERROR),
			 errmsg("KIS request for %s failed", row_subject(r, row)),
			 errdetail("%s", kis_server_message(row->problem)),
			 row->hint ? errhint("%s", row->hint) :
			 errhint("Set the table's on_error option to 'skip' or 'row' to keep the other rows.")));
}

/*
 * Apply on_error to a failed key.  Returns true when a row was stored
 * (mode 'row'); 'skip' remembers the key for the closing WARNING.
 */
static bool
handle_failure(KisRunner *r, TupleTableSlot *slot, const KisRow *row,
			   const KisCompletion *c)
{
	switch (r->config->on_error)
	{
		case KIS_ON_ERROR_ERROR:
			raise_failure(r, row);
			break;
		case KIS_ON_ERROR_SKIP:
			{
				/* the list outlives this tuple: it lives in the run context */
				MemoryContext old = MemoryContextSwitchTo(r->run_cxt);

				r->skipped = lappend(r->skipped,
									 psprintf("%s: %s", key_label(r, row->key),
											  kis_server_message(row->problem)));
				MemoryContextSwitchTo(old);
			}
			return false;
		case KIS_ON_ERROR_ROW:
			store_row(r, slot, row, c);
			return true;
	}
	return false;
}

/* The one WARNING of on_error 'skip': how many, and which (sorted) */
static void
warn_skipped(KisRunner *r)
{
	StringInfoData detail;
	int			n = 0;
	ListCell   *lc;

	list_sort(r->skipped, compare_strings);
	initStringInfo(&detail);
	foreach(lc, r->skipped)
	{
		if (n++ == KIS_MAX_SKIPPED_LISTED)
		{
			appendStringInfoString(&detail, "; ...");
			break;
		}
		appendStringInfo(&detail, "%s%s", n > 1 ? "; " : "", (char *) lfirst(lc));
	}
	ereport(WARNING,
			(errcode(ERRCODE_WARNING),
			 errmsg("kis_fdw skipped %d of %d symbols of foreign table \"%s\"",
					list_length(r->skipped), r->nkeys, RelationGetRelationName(r->rel)),
			 errdetail("%s", detail.data)));
	r->skipped = NIL;
}

/* Order of failed rows for the error of a wave: by symbol, then venue */
static int
compare_failed_rows(const KisRow *a, const KisRow *b)
{
	int			c;

	if (a->key == NULL || b->key == NULL)
		return (a->key != NULL) - (b->key != NULL);
	c = strcmp(a->key->symbol, b->key->symbol);
	return c != 0 ? c : strcmp(a->key->venue, b->key->venue);
}

/*
 * on_error 'error': gather the answers of the requests in flight until the
 * last is in (without wait, KIS_POLL_WAIT while one is still out), then
 * read them all, which queues the next pages (the next wave), and raise the
 * error of the least failed key, if any.  The answers go to r->wave;
 * KIS_POLL_END when there were none (the run is complete).
 */
static KisPoll
take_wave(KisRunner *r, bool wait)
{
	KisCompletion *c;
	const KisRow *failed = NULL;
	ListCell   *lc;

	/* no answer is read before the last one is in: no new request joins */
	for (;;)
	{
		MemoryContext old;
		KisHeldAnswer *held;

		if (wait)
			c = kis_fetch_next(r->fetcher);
		else if (kis_fetch_poll(r->fetcher, &c) == KIS_POLL_WAIT)
			return KIS_POLL_WAIT;
		if (c == NULL)
			break;
		old = MemoryContextSwitchTo(r->run_cxt);
		held = palloc(sizeof(KisHeldAnswer));
		held->completion = c;
		held->rows = NIL;
		r->wave = lappend(r->wave, held);
		MemoryContextSwitchTo(old);
	}

	r->wave_ready = true;
	foreach(lc, r->wave)
	{
		KisHeldAnswer *held = lfirst(lc);
		ListCell   *lr;

		held->rows = kis_requests_answer(r->fetcher, held->completion);
		foreach(lr, held->rows)
		{
			const KisRow *row = lfirst(lr);

			if (row->problem != NULL &&
				(failed == NULL || compare_failed_rows(row, failed) < 0))
				failed = row;
		}
	}
	if (failed != NULL)
		raise_failure(r, failed);
	return r->wave == NIL ? KIS_POLL_END : KIS_POLL_ROW;
}

/*
 * The next answer of the run into r->current and r->rows: KIS_POLL_ROW, or
 * KIS_POLL_END when the run has no more; without wait, KIS_POLL_WAIT when
 * it is not there yet.
 */
static KisPoll
next_answer(KisRunner *r, bool wait)
{
	KisHeldAnswer *held;

	if (r->config->on_error != KIS_ON_ERROR_ERROR)
	{
		if (wait)
			r->current = kis_fetch_next(r->fetcher);
		else if (kis_fetch_poll(r->fetcher, &r->current) == KIS_POLL_WAIT)
			return KIS_POLL_WAIT;
		if (r->current == NULL)
			return KIS_POLL_END;
		r->rows = kis_requests_answer(r->fetcher, r->current);
		return KIS_POLL_ROW;
	}

	if (!r->wave_ready)
	{
		KisPoll		p = take_wave(r, wait);

		if (p != KIS_POLL_ROW)
			return p;
	}
	held = linitial(r->wave);
	r->wave = list_delete_first(r->wave);
	if (r->wave == NIL)
		r->wave_ready = false;	/* the next call gathers the next wave */
	r->current = held->completion;
	r->rows = held->rows;
	pfree(held);
	return KIS_POLL_ROW;
}

/*
 * The next tuple of the run into slot: KIS_POLL_ROW, or KIS_POLL_END (slot
 * cleared) when the run has no more.  Rows come from answers in completion
 * order (in waves under on_error 'error', see the file header); an answer
 * may hold several rows (batches, pages), returned one per call before the
 * next answer is taken.  Without wait, an answer not yet there is
 * KIS_POLL_WAIT instead of a wait.
 */
static KisPoll
runner_step(KisRunner *r, TupleTableSlot *slot, bool wait)
{
	ExecClearTuple(slot);
	MemoryContextReset(r->row_cxt);

	/* keys from table data that could not be sent fail first */
	while (r->invalid != NIL)
	{
		KisRow	   *row = linitial(r->invalid);

		r->invalid = list_delete_first(r->invalid);
		if (handle_failure(r, slot, row, NULL))
			return KIS_POLL_ROW;
	}

	while (r->fetcher != NULL)
	{
		if (r->next_row < list_length(r->rows))
		{
			KisRow	   *row = list_nth(r->rows, r->next_row++);

			if (row->problem == NULL)
			{
				store_row(r, slot, row, r->current);
				if (kis_partition_row_ok(r->partition, slot))
					return KIS_POLL_ROW;
				/* another partition's row */
				ExecClearTuple(slot);
				MemoryContextReset(r->row_cxt);
				continue;
			}
			if (handle_failure(r, slot, row, r->current))
				return KIS_POLL_ROW;
			continue;
		}
		if (r->current != NULL)
			kis_fetch_forget(r->current);
		r->current = NULL;
		r->rows = NIL;
		r->next_row = 0;
		switch (next_answer(r, wait))
		{
			case KIS_POLL_ROW:
				continue;
			case KIS_POLL_WAIT:
				return KIS_POLL_WAIT;
			case KIS_POLL_END:
				break;
		}
		break;
	}

	if (r->skipped != NIL)
		warn_skipped(r);
	return KIS_POLL_END;
}

/* The next tuple, waiting for it; false at the end of the run */
bool
kis_runner_next(KisRunner *r, TupleTableSlot *slot)
{
	return runner_step(r, slot, true) == KIS_POLL_ROW;
}

/* The next tuple if one is ready; never waits (async scans) */
KisPoll
kis_runner_poll(KisRunner *r, TupleTableSlot *slot)
{
	return runner_step(r, slot, false);
}

/* What to wait on after kis_runner_poll said KIS_POLL_WAIT */
int
kis_runner_wait_fd(KisRunner *r)
{
	Assert(r->fetcher != NULL);
	return kis_fetch_wait_fd(r->fetcher);
}

/* EXPLAIN ANALYZE: what the runs did, over all runs */
void
kis_runner_explain(const KisRunner *r, ExplainState *es)
{
	if (r->config->endpoint->symbol_kind != KIS_SYMBOL_NONE)
		ExplainPropertyInteger("KIS Keys Requested", NULL, r->keys_requested, es);
	ExplainPropertyInteger("KIS Requests", NULL, r->stats.requests, es);
	ExplainPropertyInteger("KIS Retries", NULL, r->stats.retries, es);
	ExplainPropertyInteger("KIS Failures", NULL, r->stats.failures, es);
	ExplainPropertyInteger("KIS Tokens Issued", NULL, r->stats.tokens_issued, es);
	if (es->timing)
	{
		ExplainPropertyFloat("KIS Rate Wait", "ms", r->stats.rate_wait_ms, 1, es);
		ExplainPropertyFloat("KIS HTTP Time", "ms", r->stats.http_ms, 1, es);
	}
}
