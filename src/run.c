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
 * go out as answers arrive.  Under 'error' they go out in waves, so that
 * a query that stops early (LIMIT, EXISTS) errors or not whatever that
 * order: every request in flight is answered, then the least failing
 * key's error comes instead of any row, else the wave's rows (converted,
 * in a tuplestore).  Meanwhile each answer is read as it comes and held as
 * its rows' column texts (KisHeldRow), not whole.  The next pages form the
 * next wave (README, "Endpoints and columns").
 *
 * Memory and resources:
 *	  parent (the node's context)
 *	    "kis_fdw runner"  the column map, counters over all runs
 *	      "kis_fdw run"   one run's keys and fetcher; its reset callback
 *	                      frees every libcurl handle (fetch.c).  Ending a
 *	                      run deletes it.  Also the wave's held rows and
 *	                      its tuplestore, whose temporary file the
 *	                      resource owner closes if the run does not end
 *	                      normally.
 *	      "kis_fdw row"   the current tuple's values, reset per tuple
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "commands/explain.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "mb/pg_wchar.h"
#include "pgtime.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "compat.h"
#include "endpoints.h"
#include "fetch.h"
#include "json_pick.h"
#include "keys.h"
#include "live_scan.h"
#include "options.h"
#include "partition.h"
#include "requests.h"
#include "response.h"
#include "run.h"
#include "text.h"
#include "util.h"

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

/* The settings a view's rows were made under (view_describe) */
typedef struct KisViewSettings
{
	int			date_style;
	int			date_order;
	int			interval_style;
	pg_tz	   *time_zone;
	char		abbreviations[64];
} KisViewSettings;

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
	List	   *fields;			/* a live table's fields to copy (NIL: all) */
	KisJsonPick *pick;			/* a REST table's: its answers' row fields
								 * to keep (NULL: all) */
	KisPartitionFilter *partition;	/* NULL unless rel is a partition */
	bool		borrow_keys;	/* a run's keys outlive it: not copied */

	/* the current run */
	KisFetcher *fetcher;
	int			nkeys;
	List	   *skipped;		/* "symbol: reason" of skipped keys */
	List	   *invalid;		/* KisRow *s of keys not sent (bad values) */
	KisCompletion *current;		/* the answer whose rows are being returned */
	List	   *rows;			/* its KisRow *s */
	int			next_row;
	const char *view_next;		/* or its view's next tuple (current->view) */
	StringInfoData view_made;	/* its view as its rows are made */
	bool		view_making;	/* every row so far went into view_made */
	List	   *gathered;		/* on_error 'error': the wave's answers so far,
								 * KisHeldAnswer *s */
	const KisRow *wave_failed;	/* the least failed key of those, or NULL */
	ErrorData  *wave_error;		/* the first ERROR reading them, or NULL */
	List	   *later;			/* their calls' next requests (requests.c) */
	Tuplestorestate *wave;		/* the rows of the wave going out, or NULL */
	TupleTableSlot *wave_slot;	/* reads r->wave */
	List	   *wave_views;		/* the wave's answers served as views: their
								 * rows go out as they are, before r->wave's */

	/* views of shared answers (docs/cache.md): the run's, when its columns allow */
	bool		view_able;
	uint8		view[KIS_VIEW_LEN];
	KisViewSettings view_settings;	/* as the run's view describes them */

	/* over all runs, for EXPLAIN ANALYZE */
	KisFetchStats stats;
	int64		keys_requested;
};

/* What the error context callback needs to name a failing conversion */
typedef struct KisConvContext
{
	Relation	rel;
	const KisColumn *column;
	const KisRow *row;			/* the row, or NULL for a held one */
	const KisKey *key;
	const char *own_symbol;		/* a held listing row's own symbol, or NULL */
} KisConvContext;

/*
 * on_error 'error': a row of the wave being gathered, held as the texts its
 * answer gave its columns (UTF-8, NULL for the other columns), so that
 * the wave holds no parsed answer (take_wave).  The key is the run's.
 */
typedef struct KisHeldRow
{
	const KisKey *key;
	const char *own_symbol;		/* a listing row's own symbol, or NULL */
	char	   *texts[FLEXIBLE_ARRAY_MEMBER];	/* one per column */
} KisHeldRow;

/* An answer of the wave: its rows held, or the whole view it was served as */
typedef struct KisHeldAnswer
{
	KisCompletion *view;		/* a view, or NULL */
	TimestampTz completed_at;
	KisViewPlace place;			/* where a view of its rows may be kept */
	int			nrows;
	KisHeldRow **rows;
} KisHeldAnswer;

static List *needed_fields(KisRunner *r);

/* ----------------------------------------------------------------
 * Views: a run's rows of a shared answer, kept beside it (fetch.h,
 * KisViewOf) as the MinimalTuples they became, so that the next run that
 * makes rows the same way is served them instead of the answer: no JSON,
 * no input function.  docs/cache.md says when.
 * ----------------------------------------------------------------
 */

/*
 * Types whose input function gives the same value for the same text in
 * every session of a database, given the settings view_describe names:
 * built in, no domain (its constraints may change), nothing user-defined.
 * A date or time from KIS could be "now" or "today", whose value is the
 * reader's moment: only fetched_at (our own text of a timestamp) may be one.
 */
static bool
view_type_ok(Oid type, KisColumnSource source)
{
	switch (type)
	{
		case BOOLOID:
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case FLOAT4OID:
		case FLOAT8OID:
		case NUMERICOID:
		case TEXTOID:
		case VARCHAROID:
		case BPCHAROID:
		case NAMEOID:
		case JSONOID:
		case JSONBOID:
			return true;
		case DATEOID:
		case TIMEOID:
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
			return source == KIS_COL_FETCHED_AT;
		default:
			return false;
	}
}

static void
describe_text(StringInfo desc, const char *text)
{
	appendStringInfo(desc, "%s%c", text ? text : "", '\0');
}

/*
 * What makes this run's rows of an answer, besides the answer and its keys
 * (requests.c adds those): the database and its encoding, the settings the
 * date and time types read, and each column's source, field, sign and type.
 * Its SHA-256 is the run's view.
 */
static void
view_settings_now(KisViewSettings *vs)
{
	memset(vs, 0, sizeof(KisViewSettings));
	vs->date_style = DateStyle;
	vs->date_order = DateOrder;
	vs->interval_style = IntervalStyle;
	vs->time_zone = session_timezone;
	strlcpy(vs->abbreviations, GetConfigOption("timezone_abbreviations", false, false),
			sizeof(vs->abbreviations));
}

static void
view_describe(KisRunner *r)
{
	const KisEndpoint *ep = r->config->endpoint;
	TupleDesc	tupdesc = RelationGetDescr(r->rel);
	StringInfoData desc;

	view_settings_now(&r->view_settings);
	if (strlen(GetConfigOption("timezone_abbreviations", false, false)) >=
		sizeof(r->view_settings.abbreviations))
	{
		r->view_able = false;	/* a name too long to compare: no views */
		return;
	}
	initStringInfo(&desc);
	appendStringInfo(&desc, "%u %d %d %d %d%c", MyDatabaseId, GetDatabaseEncoding(),
					 tupdesc->natts, (int) ep->rows_shape,
					 kis_endpoint_keys_per_request(ep), '\0');
	/* the settings view_add checks each row against, the time zone by name */
	appendStringInfo(&desc, "%d %d %d%c", r->view_settings.date_style,
					 r->view_settings.date_order, r->view_settings.interval_style, '\0');
	describe_text(&desc, pg_get_timezone_name(r->view_settings.time_zone));
	describe_text(&desc, r->view_settings.abbreviations);
	describe_text(&desc, ep->name);
	describe_text(&desc, ep->rows_member);
	describe_text(&desc, ep->extra_member);
	describe_text(&desc, ep->row_symbol_field);
	describe_text(&desc, ep->identity_field);
	describe_text(&desc, ep->notfound_field);
	describe_text(&desc, ep->row_source);
	for (int i = 0; i < r->ncolumns; i++)
	{
		Form_pg_attribute attr = TupleDescAttr(tupdesc, i);
		const KisColumn *col = &r->columns[i];
		const KisColumnDef *def = col->field ?
			kis_endpoint_column_of_field(ep, col->field) : NULL;

		appendStringInfo(&desc, "%d %u %d %d%c", (int) attr->attisdropped, attr->atttypid,
						 attr->atttypmod, (int) col->source, '\0');
		describe_text(&desc, col->field);
		describe_text(&desc, def ? def->sign_field : NULL);
		describe_text(&desc, def ? def->sign_twin : NULL);
	}
	kis_sha256(desc.data, desc.len, r->view);
	pfree(desc.data);
}

/* The next tuple of an answer's view (at *next) into slot; false at its end */
static bool
view_step(const KisCompletion *c, const char **next, TupleTableSlot *slot)
{
	const char *end = c->view + c->view_len;
	MinimalTuple tuple = (MinimalTuple) *next;

	if (*next >= end)
		return false;
	if ((Size) (end - *next) < offsetof(MinimalTupleData, t_bits) ||
		tuple->t_len < offsetof(MinimalTupleData, t_bits) ||
		tuple->t_len > (Size) (end - *next))
		elog(ERROR, "kis_fdw: a stored view of an answer is damaged");
	*next += MAXALIGN(tuple->t_len);
	ExecForceStoreMinimalTuple(tuple, slot, false);
	return true;
}

/* Start the view of an answer being read, if one may be kept at place */
static void
view_begin(KisRunner *r, StringInfo made, const KisViewPlace *place)
{
	/* only a reader with a TTL makes one: it is for such readers */
	r->view_making = r->view_able && r->config->cache_ttl_ms > 0 &&
		place->serial != 0;
	if (r->view_making)
		resetStringInfo(made);
}

/* A row went into slot: add it to the view being made */
static void
view_add(KisRunner *r, StringInfo made, TupleTableSlot *slot)
{
	MinimalTuple tuple;
	KisViewSettings now;
	static const char zeros[MAXIMUM_ALIGNOF] = {0};

	if (!r->view_making)
		return;

	/*
	 * A row made under other settings than the view's id says (SET between
	 * two FETCHes, or by a function a partition check called) is no row of
	 * that view: none is kept for this answer.
	 */
	view_settings_now(&now);
	if (memcmp(&now, &r->view_settings, sizeof(now)) != 0)
	{
		r->view_making = false;
		return;
	}
	tuple = kis_form_minimal_tuple(slot->tts_tupleDescriptor, slot->tts_values,
									slot->tts_isnull);
	appendBinaryStringInfo(made, (const char *) tuple, tuple->t_len);
	appendBinaryStringInfo(made, zeros, MAXALIGN(tuple->t_len) - tuple->t_len);
	pfree(tuple);
}

/* Every row of an answer was made: keep its view */
static void
view_end(KisRunner *r, StringInfo made, const KisViewPlace *place)
{
	if (r->view_making)
		kis_fetch_keep_view(place, made->data, made->len);
	r->view_making = false;
}

/* Decide what fills each column, and look up its input function */
static void
build_column_map(KisRunner *r, List *needed)
{
	const KisEndpoint *ep = r->config->endpoint;
	TupleDesc	tupdesc = RelationGetDescr(r->rel);
	Oid			relid = RelationGetRelid(r->rel);
	bool		whole_row = list_member_int(needed, 0);
	List	   *fields;

	r->ncolumns = tupdesc->natts;
	r->columns = palloc0(sizeof(KisColumn) * tupdesc->natts);
	r->view_able = !kis_endpoint_streamed(ep);
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
		else if (kis_endpoint_has_key(ep, KIS_KEY_SYMBOL) &&
				 strcmp(name, kis_endpoint_key_column(ep, KIS_KEY_SYMBOL)) == 0)
			col->source = KIS_COL_SYMBOL;
		else if (kis_endpoint_has_key(ep, kis_endpoint_venue_key(ep)) &&
				 strcmp(name, kis_endpoint_key_column(ep, kis_endpoint_venue_key(ep))) == 0)
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
		if (!view_type_ok(attr->atttypid, col->source))
			r->view_able = false;
	}
	fields = needed_fields(r);
	if (kis_endpoint_streamed(ep))
		r->fields = fields;
	else if (fields != NIL)
		r->pick = kis_json_pick_create(kis_endpoint_rule_fields(ep, fields));
}

/*
 * The fields the columns read, with those that give their sign (NIL: every
 * field, for the raw column).  A live table copies only those of a tick,
 * and a REST answer's rows keep only those and the endpoint's own.
 */
static List *
needed_fields(KisRunner *r)
{
	List	   *fields = NIL;

	for (int i = 0; i < r->ncolumns; i++)
	{
		const KisColumn *col = &r->columns[i];
		const KisColumnDef *def;

		if (col->source == KIS_COL_RAW)
			return NIL;
		if (col->source != KIS_COL_FIELD)
			continue;
		fields = lappend(fields, (char *) col->field);
		def = kis_endpoint_column_of_field(r->config->endpoint, col->field);
		if (def != NULL && def->sign_field != NULL)
			fields = lappend(fields, (char *) def->sign_field);
		if (def != NULL && def->sign_twin != NULL)
			fields = lappend(fields, (char *) def->sign_twin);
	}
	/* a table that reads no field at all still reads the symbol */
	return fields != NIL ? fields : list_make1("");
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
	/* a copy of the descriptor: the slot then pins no relcache entry */
	if (config->on_error == KIS_ON_ERROR_ERROR)
		r->wave_slot = MakeSingleTupleTableSlot(CreateTupleDescCopy(RelationGetDescr(rel)),
												&TTSOpsMinimalTuple);
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
 * The caller keeps the keys (and the pairs kis_runner_start makes, in the
 * caller's memory context) of each run until it ends (kis_runner_end), so
 * runs use them as they are, read only, instead of copying them: the
 * batched join, whose keys are its batch's (a fresh backend pays for every
 * page).
 */
void
kis_runner_borrow_keys(KisRunner *r)
{
	r->borrow_keys = true;
}

/*
 * Start a run over every (symbol, venue) pair of keys, or every market of
 * an endpoint keyed by market (none for an account or a listing); the run
 * keeps copies, or borrows them and the pairs (kis_runner_borrow_keys).
 */
void
kis_runner_start(KisRunner *r, const KisRunKeys *keys)
{
	KisKeying	keying = kis_endpoint_keying(r->config->endpoint);
	List	   *pairs = NIL;
	KisKey	   *key;
	ListCell   *ls;
	ListCell   *lv;

	/* the pairs in one allocation, in the caller's context */
	if (keying == KIS_KEYING_MARKET)
	{
		/* a listing per market: the market is the key */
		key = palloc(sizeof(KisKey) * Max(list_length(keys->venues), 1));
		foreach(lv, keys->venues)
		{
			key->symbol = lfirst(lv);
			key->venue = lfirst(lv);
			pairs = lappend(pairs, key++);
		}
	}
	else if (keying == KIS_KEYING_SYMBOL)
	{
		key = palloc(sizeof(KisKey) *
					 Max(list_length(keys->symbols) * list_length(keys->venues), 1));
		foreach(ls, keys->symbols)
		{
			foreach(lv, keys->venues)
			{
				key->symbol = lfirst(ls);
				key->venue = lfirst(lv);
				pairs = lappend(pairs, key++);
			}
		}
	}
	kis_runner_start_keys(r, pairs, &keys->range, keys->can_match, keys->from_rows);
}

/* Why a key cannot be sent, or NULL */
static const char *
invalid_key_problem(const KisEndpoint *ep, const KisKey *key)
{
	if (!kis_endpoint_symbol_is_valid(ep, key->symbol))
		return psprintf("invalid %s", kis_endpoint_key_column(ep, KIS_KEY_SYMBOL));
	if (!kis_endpoint_venue_is_valid(ep, key->venue))
		return psprintf("invalid %s", kis_endpoint_venue_name(ep));
	return NULL;
}

/* The ERROR for a key that cannot be sent */
static void
report_invalid_key(const KisEndpoint *ep, const KisKey *key)
{
	if (!kis_endpoint_symbol_is_valid(ep, key->symbol))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid %s \"%s\"", kis_endpoint_key_column(ep, KIS_KEY_SYMBOL),
						kis_printable(key->symbol)),
				 errhint("%s", kis_endpoint_symbol_hint(ep))));
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid %s \"%s\"", kis_endpoint_venue_name(ep),
					kis_printable(key->venue)),
			 errhint("%s", kis_endpoint_venue_hint(ep))));
}

/*
 * Start a run over a list of KisKey (distinct; NIL for account
 * endpoints); the run keeps copies unless it borrows them, and never
 * writes to them.  A bad symbol or venue is an ERROR
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
	KisKeying	keying = kis_endpoint_keying(ep);
	List	   *valid;
	int			nvalid;
	bool		any_invalid = false;
	ListCell   *lc;
	MemoryContext old;
	KisCarve	carve;

	Assert(r->run_cxt == NULL);
	r->run_cxt = AllocSetContextCreate(r->cxt, "kis_fdw run",
									   ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(r->run_cxt);
	r->nkeys = 0;
	r->skipped = NIL;
	r->next_row = 0;
	r->gathered = NIL;
	r->wave_failed = NULL;
	r->wave_error = NULL;
	r->later = NIL;
	r->wave_views = NIL;
	r->invalid = NIL;
	r->view_next = NULL;
	r->view_making = false;
	initStringInfo(&r->view_made);
	if (r->view_able)
		view_describe(r);

	/*
	 * A bad key is an ERROR unless it comes from table data and on_error
	 * says otherwise; symbols first, then venues: the first bad one is
	 * named.
	 */
	foreach(lc, keys)
	{
		if (invalid_key_problem(ep, lfirst(lc)) != NULL)
		{
			any_invalid = true;
			break;
		}
	}
	if (any_invalid && (!from_rows || r->config->on_error == KIS_ON_ERROR_ERROR))
	{
		foreach(lc, keys)
		{
			if (!kis_endpoint_symbol_is_valid(ep, ((KisKey *) lfirst(lc))->symbol))
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
	kis_carve_init(&carve, r->run_cxt);
	valid = list_copy(keys);	/* sized at once, cut to the valid ones below */
	nvalid = 0;
	foreach(lc, keys)
	{
		KisKey	   *key = lfirst(lc);
		KisKey	   *copy = r->borrow_keys ? key :
			kis_key_copy_to(kis_carve(&carve, kis_key_size(key)), key);
		const char *problem = any_invalid ? invalid_key_problem(ep, key) : NULL;

		if (problem == NULL)
			lfirst(list_nth_cell(valid, nvalid++)) = copy;
		else
		{
			KisRow	   *row = palloc0(sizeof(KisRow));

			row->key = copy;
			row->problem = pstrdup(problem);
			r->invalid = lappend(r->invalid, row);
		}
	}
	valid = list_truncate(valid, nvalid);

	/* an account or a listing is one "key" for the skip WARNING */
	r->nkeys = keying == KIS_KEYING_ACCOUNT || keying == KIS_KEYING_LISTING ? 1 :
		list_length(keys);
	if (!can_match)
		r->invalid = NIL;
	if (can_match && r->nkeys > 0 && (valid != NIL || keying != KIS_KEYING_SYMBOL))
	{
		r->fetcher = kis_fetch_begin(r->run_cxt, r->config, &r->stats);
		kis_fetch_set_pick(r->fetcher, r->pick);
		if ((kis_endpoint_streamed(ep) ?
			 kis_live_scan_start(r->fetcher, r->config, valid, range, r->fields) :
			 kis_requests_start(r->fetcher, r->config, valid, range,
								r->view_able ? r->view : NULL)) == 0 &&
			r->invalid == NIL)
			r->nkeys = 0;
	}
	r->keys_requested += keying == KIS_KEYING_SYMBOL ? list_length(valid) : 0;
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
	if (r->wave != NULL)
	{
		ExecClearTuple(r->wave_slot);
		tuplestore_end(r->wave);	/* its temporary file, if any */
		r->wave = NULL;
	}
	if (r->run_cxt != NULL)
		MemoryContextDelete(r->run_cxt);
	r->fetcher = NULL;
	r->run_cxt = NULL;
	r->current = NULL;
	r->rows = NIL;
	r->view_next = NULL;
	r->view_making = false;
	r->invalid = NIL;
	r->next_row = 0;
	r->gathered = NIL;
	r->wave_failed = NULL;
	r->wave_error = NULL;
	r->later = NIL;
	r->wave_views = NIL;
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
	if (!kis_endpoint_per_symbol(ep))
		return pstrdup(key->venue); /* a market's listing */
	if (key->venue[0] == '\0' ||
		(!kis_endpoint_is_declared(ep) && kis_endpoint_has_key(ep, KIS_KEY_MARKET) &&
		 strcmp(key->venue, r->config->market) == 0))
		return pstrdup(key->symbol);
	return psprintf("%s (%s)", key->symbol, key->venue);
}

/* What a failing row is about: its symbol, or the endpoint */
static const char *
row_subject(const KisRunner *r, const KisRow *row)
{
	if (row->key != NULL)
		return psprintf("%s \"%s\"", kis_endpoint_per_symbol(r->config->endpoint) ?
						kis_endpoint_key_column(r->config->endpoint, KIS_KEY_SYMBOL) : "market",
						row->key->symbol);
	return psprintf("endpoint %s", r->config->endpoint->name);
}

/* A listing row's own symbol (a row of a market names it), or NULL */
static const char *
row_own_symbol(const KisRow *row)
{
	if (row->row == NULL || row->ep->row_symbol_field == NULL)
		return NULL;
	return kis_row_field_text(row->row, NULL, row->ep->row_symbol_field);
}

static void
conversion_error_callback(void *arg)
{
	KisConvContext *cc = (KisConvContext *) arg;
	const char *subject = cc->row ? row_own_symbol(cc->row) : cc->own_symbol;

	if (cc->column == NULL)
		return;
	if (subject == NULL)
		subject = cc->key ? cc->key->symbol : "(account)";
	if (cc->column->source == KIS_COL_FIELD)
		errcontext("column \"%s\" of foreign table \"%s\", KIS field \"%s\", symbol \"%s\"",
				   cc->column->name, RelationGetRelationName(cc->rel),
				   cc->column->field, subject);
	else
		errcontext("column \"%s\" of foreign table \"%s\", symbol \"%s\"",
				   cc->column->name, RelationGetRelationName(cc->rel), subject);
}

/* The text the answer gives a column (UTF-8), or NULL: not from the answer */
static char *
answer_text(const KisColumn *col, const KisRow *row)
{
	switch (col->source)
	{
		case KIS_COL_ERROR:
			return row->problem;
		case KIS_COL_RAW:
			return row->row ? kis_row_raw_text(row->row) : NULL;
		case KIS_COL_FIELD:
			return row->row ? kis_row_value(row, col->field) : NULL;
		default:
			return NULL;
	}
}

/*
 * The text of one column, in the server encoding, or NULL; utf8 is its
 * answer_text, completed_at when the answer came (NULL: never sent)
 */
static char *
column_text(const KisColumn *col, const KisKey *key, char *utf8,
			const TimestampTz *completed_at)
{
	switch (col->source)
	{
		case KIS_COL_UNUSED:
			return NULL;
		case KIS_COL_SYMBOL:
			return key ? key->symbol : NULL;
		case KIS_COL_VENUE:
			return key ? key->venue : NULL;
		case KIS_COL_FETCHED_AT:
			if (completed_at == NULL)
				return NULL;
			return DatumGetCString(DirectFunctionCall1(timestamptz_out,
													   TimestampTzGetDatum(*completed_at)));
		case KIS_COL_ERROR:
		case KIS_COL_RAW:
			/* JSON: what the encoding lacks stays a valid \u escape */
			return kis_server_message(utf8);
		case KIS_COL_FIELD:
			return kis_server_text(utf8);
	}
	return NULL;
}

/*
 * Fill the slot from a row (held NULL) or a held row's texts, naming the
 * column in any error of its type's input function
 */
static void
store_values(KisRunner *r, TupleTableSlot *slot, KisConvContext *cc,
			 char *const *held, const TimestampTz *completed_at)
{
	ErrorContextCallback errcb;
	MemoryContext old = MemoryContextSwitchTo(r->row_cxt);

	cc->rel = r->rel;
	cc->column = NULL;
	errcb.callback = conversion_error_callback;
	errcb.arg = cc;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	for (int i = 0; i < r->ncolumns; i++)
	{
		const KisColumn *col = &r->columns[i];
		char	   *text;

		cc->column = col;		/* before anything that can fail */
		text = column_text(col, cc->key, held ? held[i] : answer_text(col, cc->row),
						   completed_at);

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

/* Fill the slot from one row (a failed key under on_error 'row' has no data) */
static void
store_row(KisRunner *r, TupleTableSlot *slot, const KisRow *row,
		  const KisCompletion *c)
{
	KisConvContext cc;

	cc.row = row;
	cc.key = row->key;
	cc.own_symbol = NULL;
	store_values(r, slot, &cc, NULL, c ? &c->completed_at : NULL);
}

/* Fill the slot from a held row of an answer that came at completed_at */
static void
store_held(KisRunner *r, TupleTableSlot *slot, const KisHeldRow *held,
		   TimestampTz completed_at)
{
	KisConvContext cc;

	cc.row = NULL;
	cc.key = held->key;
	cc.own_symbol = held->own_symbol;
	store_values(r, slot, &cc, held->texts, &completed_at);
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
						kis_endpoint_venue_name(ep), row->key->venue),
				 errdetail("KIS answered without a price for it."),
				 errhint("Check the symbol%s, or set the table's on_error option to 'skip' or 'row'.",
						 kis_endpoint_venue_key(ep) == KIS_KEY_EXCHANGE ?
						 " and the exchange" : "")));
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

	list_sort(r->skipped, kis_compare_strings);
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
 * A row as the texts its answer gives the columns, in one piece in the
 * run's memory; what it makes on the way is in the current context
 */
static KisHeldRow *
hold_row(KisRunner *r, const KisRow *row)
{
	int			n = r->ncolumns;
	const char **texts = palloc(sizeof(char *) * (n + 1));
	Size	   *lens = palloc(sizeof(Size) * (n + 1));
	Size		size = offsetof(KisHeldRow, texts) + sizeof(char *) * n;
	KisHeldRow *held;
	char	   *p;

	/* the columns' texts, then the row's own symbol (texts[n]) */
	for (int i = 0; i <= n; i++)
	{
		texts[i] = i < n ? answer_text(&r->columns[i], row) : row_own_symbol(row);
		lens[i] = texts[i] ? strlen(texts[i]) + 1 : 0;
		size += lens[i];
	}
	held = MemoryContextAlloc(r->run_cxt, size);
	held->key = row->key;
	p = (char *) &held->texts[n];
	for (int i = 0; i <= n; i++)
	{
		char	   *copy = texts[i] ? memcpy(p, texts[i], lens[i]) : NULL;

		if (i < n)
			held->texts[i] = copy;
		else
			held->own_symbol = copy;
		p += lens[i];
	}
	return held;
}

/*
 * What raise_failure needs of a failed row, in the run's memory, in place
 * of the wave's failure so far
 */
static void
hold_failure(KisRunner *r, const KisRow *row)
{
	KisRow	   *copy = MemoryContextAllocZero(r->run_cxt, sizeof(KisRow));

	if (r->wave_failed != NULL)
	{
		KisRow	   *was = (KisRow *) r->wave_failed;

		pfree(was->problem);
		if (was->hint)
			pfree((char *) was->hint);
		pfree(was);
	}
	copy->ep = row->ep;
	copy->key = row->key;
	copy->problem = MemoryContextStrdup(r->run_cxt, row->problem);
	copy->hint = row->hint ? MemoryContextStrdup(r->run_cxt, row->hint) : NULL;
	r->wave_failed = copy;
}

/*
 * Read an answer of the wave.  An ERROR doing so (a limit on pages, on a
 * master file) is kept for the wave's end, where reading happened before
 * answers were read on arrival: a failure of the whole scan that comes
 * later in the wave still comes first.  A cancel is not kept.  As with the
 * fetcher's own kept error (fetch_answer.c), reading holds nothing but
 * memory, which the run's context owns.
 */
static List *
read_answer(KisRunner *r, KisCompletion *c)
{
	MemoryContext cxt = CurrentMemoryContext;
	List	   *volatile rows = NIL;

	PG_TRY();
	{
		rows = kis_requests_answer(r->fetcher, c, &r->later);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(r->run_cxt);
		edata = CopyErrorData();
		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED ||
			edata->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN)
			PG_RE_THROW();
		FlushErrorState();
		r->wave_error = edata;
		MemoryContextSwitchTo(cxt);
	}
	PG_END_TRY();
	return rows;
}

/*
 * An answer of the wave came: read it at once (its next request waits in
 * r->later for the wave's end), keep its least failed key, hold its rows
 * as texts unless the wave failed already, and let the answer go.  A view
 * is kept as it is: it holds made rows only.
 */
static void
hold_answer(KisRunner *r, KisCompletion *c)
{
	MemoryContext old = MemoryContextSwitchTo(r->run_cxt);
	KisHeldAnswer *h = palloc0(sizeof(KisHeldAnswer));
	List	   *rows;
	ListCell   *lc;

	r->gathered = lappend(r->gathered, h);
	if (c->view != NULL)
	{
		h->view = c;
		MemoryContextSwitchTo(old);
		return;
	}
	rows = r->wave_error ? NIL : read_answer(r, c);
	foreach(lc, rows)
	{
		const KisRow *row = lfirst(lc);

		if (row->problem != NULL &&
			(r->wave_failed == NULL || compare_failed_rows(row, r->wave_failed) < 0))
			hold_failure(r, row);
	}
	if (r->wave_failed == NULL && r->wave_error == NULL)
	{
		h->completed_at = c->completed_at;
		h->place = c->place;
		h->rows = palloc(sizeof(KisHeldRow *) * Max(list_length(rows), 1));
		MemoryContextSwitchTo(r->row_cxt);	/* the texts made on the way */
		foreach(lc, rows)
			h->rows[h->nrows++] = hold_row(r, lfirst(lc));
		MemoryContextReset(r->row_cxt);
	}
	MemoryContextSwitchTo(old);
	kis_fetch_forget(c);
}

/*
 * on_error 'error': gather the answers of the requests in flight until the
 * last is in (without wait, KIS_POLL_WAIT while one is still out), each
 * read and held as it comes (hold_answer); then queue the next pages (the
 * next wave), raise the error of the least failed key if any, and put the
 * rows into r->wave through slot.  KIS_POLL_END when there was no answer:
 * the run is done.
 */
static KisPoll
take_wave(KisRunner *r, TupleTableSlot *slot, bool wait)
{
	ListCell   *lc;
	MemoryContext old;

	/* no request of the wave's calls is queued before the last answer is in */
	for (;;)
	{
		KisCompletion *c;

		if (wait)
			c = kis_fetch_next(r->fetcher);
		else if (kis_fetch_poll(r->fetcher, &c) == KIS_POLL_WAIT)
			return KIS_POLL_WAIT;
		if (c == NULL)
			break;
		hold_answer(r, c);
	}
	if (r->gathered == NIL)
		return KIS_POLL_END;

	kis_requests_send(r->fetcher, r->later);
	list_free(r->later);
	r->later = NIL;
	if (r->wave_error != NULL)
		ReThrowError(r->wave_error);
	if (r->wave_failed != NULL)
		raise_failure(r, r->wave_failed);

	old = MemoryContextSwitchTo(r->run_cxt);
	r->wave = tuplestore_begin_heap(false, false, work_mem);
	MemoryContextSwitchTo(old);
	foreach(lc, r->gathered)
	{
		KisHeldAnswer *h = lfirst(lc);

		if (h->view != NULL)
		{
			/* made rows already: no copy in the tuplestore */
			old = MemoryContextSwitchTo(r->run_cxt);
			r->wave_views = lappend(r->wave_views, h->view);
			MemoryContextSwitchTo(old);
			pfree(h);
			continue;
		}
		view_begin(r, &r->view_made, &h->place);
		for (int i = 0; i < h->nrows; i++)
		{
			store_held(r, slot, h->rows[i], h->completed_at);
			view_add(r, &r->view_made, slot);
			if (kis_partition_row_ok(r->partition, slot))
				tuplestore_puttupleslot(r->wave, slot);
			ExecClearTuple(slot);
			MemoryContextReset(r->row_cxt);
			pfree(h->rows[i]);
		}
		view_end(r, &r->view_made, &h->place);
		if (h->rows != NULL)
			pfree(h->rows);
		pfree(h);
	}
	list_free(r->gathered);
	r->gathered = NIL;
	return KIS_POLL_ROW;
}

/*
 * on_error 'error': the next row of the current wave into slot, taking the
 * next wave when this one is done (see the file header).
 */
static KisPoll
wave_step(KisRunner *r, TupleTableSlot *slot, bool wait)
{
	while (r->fetcher != NULL)
	{
		while (r->wave_views != NIL)
		{
			if (r->current == NULL)
			{
				r->current = linitial(r->wave_views);
				r->view_next = r->current->view;
			}
			while (view_step(r->current, &r->view_next, slot))
			{
				if (kis_partition_row_ok(r->partition, slot))
					return KIS_POLL_ROW;
				ExecClearTuple(slot);
			}
			kis_fetch_forget(r->current);
			r->current = NULL;
			r->view_next = NULL;
			r->wave_views = list_delete_first(r->wave_views);
		}
		if (r->wave != NULL)
		{
			/* a tuple read back from the file is palloc'd: as long as the slot */
			MemoryContext old = MemoryContextSwitchTo(r->run_cxt);
			bool		got = tuplestore_gettupleslot(r->wave, true, false, r->wave_slot);

			MemoryContextSwitchTo(old);
			if (got)
			{
				ExecCopySlot(slot, r->wave_slot);
				return KIS_POLL_ROW;
			}
			tuplestore_end(r->wave);
			r->wave = NULL;
		}
		switch (take_wave(r, slot, wait))
		{
			case KIS_POLL_ROW:
				break;
			case KIS_POLL_WAIT:
				return KIS_POLL_WAIT;
			case KIS_POLL_END:
				return KIS_POLL_END;
		}
	}
	return KIS_POLL_END;
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

	if (r->config->on_error == KIS_ON_ERROR_ERROR)
		return wave_step(r, slot, wait);

	while (r->fetcher != NULL)
	{
		if (r->view_next != NULL)
		{
			if (view_step(r->current, &r->view_next, slot))
			{
				if (kis_partition_row_ok(r->partition, slot))
					return KIS_POLL_ROW;
				ExecClearTuple(slot);
				continue;
			}
			r->view_next = NULL;
		}
		else if (r->next_row < list_length(r->rows))
		{
			KisRow	   *row = list_nth(r->rows, r->next_row++);

			if (row->problem == NULL)
			{
				store_row(r, slot, row, r->current);
				view_add(r, &r->view_made, slot);
				if (kis_partition_row_ok(r->partition, slot))
					return KIS_POLL_ROW;
				/* another partition's row */
				ExecClearTuple(slot);
				MemoryContextReset(r->row_cxt);
				continue;
			}
			r->view_making = false; /* a view holds made rows only */
			if (handle_failure(r, slot, row, r->current))
				return KIS_POLL_ROW;
			continue;
		}
		else if (r->current != NULL)
			view_end(r, &r->view_made, &r->current->place);
		if (r->current != NULL)
			kis_fetch_forget(r->current);
		r->current = NULL;
		r->rows = NIL;
		r->next_row = 0;
		if (wait)
			r->current = kis_fetch_next(r->fetcher);
		else if (kis_fetch_poll(r->fetcher, &r->current) == KIS_POLL_WAIT)
			return KIS_POLL_WAIT;
		if (r->current == NULL)
			break;
		if (r->current->view != NULL)
			r->view_next = r->current->view;
		else
		{
			r->rows = kis_requests_answer(r->fetcher, r->current, NULL);
			view_begin(r, &r->view_made, &r->current->place);
		}
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

/*
 * Wait until one of several runners, each of which kis_runner_poll left
 * at KIS_POLL_WAIT, may go on (the partitions of a batched join).
 */
void
kis_runner_wait_any(KisRunner **runners, int nrunners)
{
	KisFetcher **fetchers = palloc(sizeof(KisFetcher *) * Max(nrunners, 1));
	int			n = 0;

	for (int i = 0; i < nrunners; i++)
	{
		if (runners[i]->fetcher != NULL)
			fetchers[n++] = runners[i]->fetcher;
	}
	if (n > 0)
		kis_fetch_wait_any(fetchers, n);
	pfree(fetchers);
}

/* Keys its runs asked for, over all runs */
int64
kis_runner_keys_requested(const KisRunner *r)
{
	return r->keys_requested;
}

/* EXPLAIN ANALYZE: what the runs did, over all runs */
void
kis_runner_explain(const KisRunner *r, ExplainState *es)
{
	kis_runners_explain(&r, 1, es);
}

/* The same, summed over several runners (the partitions of a join) */
void
kis_runners_explain(const KisRunner *const *runners, int nrunners, ExplainState *es)
{
	const KisRunner *first = runners[0];
	KisFetchStats sum;
	int64		keys_requested = 0;
	bool		cache = false;

	memset(&sum, 0, sizeof(sum));
	for (int i = 0; i < nrunners; i++)
	{
		const KisRunner *r = runners[i];

		keys_requested += r->keys_requested;
		sum.requests += r->stats.requests;
		sum.retries += r->stats.retries;
		sum.failures += r->stats.failures;
		sum.tokens_issued += r->stats.tokens_issued;
		sum.cache_hits += r->stats.cache_hits;
		sum.shared_waits += r->stats.shared_waits;
		sum.cache_views += r->stats.cache_views;
		sum.rate_wait_ms += r->stats.rate_wait_ms;
		sum.http_ms += r->stats.http_ms;
		cache |= r->config->cache_ttl_ms > 0;
	}
	if (kis_endpoint_per_symbol(first->config->endpoint))
		ExplainPropertyInteger("KIS Keys Requested", NULL, keys_requested, es);
	ExplainPropertyInteger("KIS Requests", NULL, sum.requests, es);
	ExplainPropertyInteger("KIS Retries", NULL, sum.retries, es);
	ExplainPropertyInteger("KIS Failures", NULL, sum.failures, es);
	ExplainPropertyInteger("KIS Tokens Issued", NULL, sum.tokens_issued, es);
	/* only where sharing happened or was asked for: plans elsewhere unchanged */
	if (cache || sum.cache_hits > 0)
		ExplainPropertyInteger("KIS Cache Hits", NULL, sum.cache_hits, es);
	if (es->verbose && sum.cache_views > 0)
		ExplainPropertyInteger("KIS Cache Views", NULL, sum.cache_views, es);
	if (sum.shared_waits > 0)
		ExplainPropertyInteger("KIS Shared In-Flight", NULL, sum.shared_waits, es);
	if (es->timing)
	{
		ExplainPropertyFloat("KIS Rate Wait", "ms", sum.rate_wait_ms, 1, es);
		ExplainPropertyFloat("KIS HTTP Time", "ms", sum.http_ms, 1, es);
	}
}
