/*-------------------------------------------------------------------------
 *
 * fuzz_kis.c
 *	  libFuzzer harness over kis_fdw's answer handling: the KIS envelope
 *	  (src/response.c), what each answer yields for every endpoint of the
 *	  catalogue (src/requests.c with src/endpoints.c: batched, object rows,
 *	  date paging, time paging, cursor paging), the stock master files
 *	  (src/master.c: the zip archive and its lines) and the tokenP answer
 *	  (src/auth.c).
 *
 * One input is one scan.  The fetch engine (src/fetch.c) is replaced by a
 * queue (fake_fetch.c): kis_fetch_add() records each request, and each
 * segment of the input is the answer to the oldest queued request — HTTP
 * status, tr_cont header, body — acted on by the engine's own retry rules
 * (src/outcome.c: retries re-queue the request, exhausted retries become a
 * failed key, credential errors and a second token rejection end the
 * scan).  Every row is then read the way run.c's store_row reads it: each
 * friendly column, the raw column, the error text.
 *
 * Input layout (every byte value is meaningful, so mutations stay valid):
 *	 byte 0   mode: b % 8 == 7 the tokenP answer, else the endpoint
 *	          kis_endpoints[b % 8 + 7 * (b / 8 % 2)], wrapping past the last
 *	          that is not a live table
 *	          (the seeds' bytes below 8 keep their first seven endpoints)
 *	 byte 1   number of symbols: 1 + b % 40 (two batches of multprice);
 *	          domestic_symbols: markets KOSPI, KOSDAQ, KONEX, the first b % 3 + 1
 *	 byte 2   bit 0 virtual environment (real for real-only endpoints), bit 1 adjusted, bits 2-3 period
 *	          D/W/M/Y, bit 4 a lower date bound, bit 5 an upper bound,
 *	          bit 6 every symbol on two markets/exchanges
 *	 byte 3   lower bound: today - 7 * b days
 *	 byte 4   upper bound: today - b days
 *	 then segments separated by "\n~~\n", each:
 *	   byte 0 HTTP status (an index into http_statuses)
 *	   byte 1 tr_cont header (an index into tr_conts)
 *	   rest   the body, as received
 *
 * Findings: anything AddressSanitizer or UndefinedBehaviorSanitizer see;
 * an ERROR that is not a deliberate report of bad data (ereport in the
 * shims longjmps back here and is checked against deliberate_errors);
 * memory left behind after the scan's contexts are gone; and broken
 * invariants (abort).  Checks of meaning rather than memory safety
 * ("semantic", e.g. two keys of a batch sharing one row) abort only with
 * KIS_FUZZ_STRICT=1; otherwise the first input of each kind is written to
 * ./semantic-<kind> (fuzz/work/ under fuzz/run.sh) and reported once on
 * stderr.  KIS_FUZZ_VERBOSE=1 traces requests, answers and rows.
 *
 * The row checks know a request's keys from what it asked for: the
 * endpoint's symbol and venue parameters in its URL, or the market file it
 * downloads (fake_fetch.c); nothing here relies on requests.c's layout.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>

#include <jansson.h>

#include "datatype/timestamp.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/datetime.h"
#include "utils/memutils.h"

#include "auth.h"
#include "endpoints.h"
#include "fetch.h"
#include "json_pick.h"
#include "master.h"
#include "options.h"
#include "outcome.h"
#include "requests.h"
#include "response.h"
#include "shmem.h"
#include "shmem_internal.h"
#include "harness.h"
#include "shims.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int			LLVMFuzzerInitialize(int *argc, char ***argv);

#define SEPARATOR		"\n~~\n"
#define HEADER_BYTES	5
#define MAX_RETRIES		3

Size		fuzz_memory_limit = (Size) 64 * 1024 * 1024;

static bool strict = false;		/* KIS_FUZZ_STRICT=1: semantic findings crash */
bool		harness_verbose = false;	/* KIS_FUZZ_VERBOSE=1: trace requests and rows */

static const long http_statuses[] = {
	200, 500, 403, 401, 404, 429, 408, 502, 503, 0, 201, 302, 400, 504, 599, 100
};
static const char *const tr_conts[] = {"", "M", "F", "D", "E", "N", "MF", "FMD"};

/* ERRORs that are deliberate reports of what KIS sent */
static const char *const deliberate_errors[] = {
	"KIS kept announcing more pages after",
	/* master.c's limits on a download: errors by design, not crashes */
	"a stock master file is larger than kis_fdw's limit",
	"a stock master file inflates more than kis_fdw's limit",
	"has more than kis_fdw's limit of",
	NULL
};

/* Symbols the seeds were made with (fuzz/make_corpus.py knows this list) */
static const char *const domestic_symbols[] = {
	"005930", "000660", "035420", "051910", "006400", "035720", "068270",
	"207940", "005380", "000270", "105560", "055550", "012330", "028260",
	"066570", "003550", "017670", "015760", "034730", "032830", "096770",
	"011200", "009150", "018260", "086790", "010130", "030200", "033780",
	"024110", "316140", "090430", "251270", "036570", "000810", "010950",
	"034020", "003670", "047050", "009540", "011170", NULL
};
static const char *const overseas_symbols[] = {
	"AAPL", "MSFT", "TSLA", "NVDA", "AMZN", "IBM", "KO", "JPM", "SPY", "0700",
	"7203", "GOOGL", "META", "NFLX", "AMD", "INTC", "ORCL", "CSCO", "ADBE", "QCOM",
	"TXN", "AVGO", "PEP", "COST", "SBUX", "PYPL", "BKNG", "GILD", "MDLZ", "AMGN",
	"ISRG", "VRTX", "REGN", "ADP", "MU", "LRCX", "KLAC", "MRVL", "ASML", "BRK.B", NULL
};

/* Fields every row is also asked for, besides the endpoint's friendly ones */
static const char *const extra_fields[] = {
	"rt_cd", "msg_cd", "output", "output1", "output2", "stck_shrn_iscd",
	"inter_shrn_iscd", "stck_bsop_date", "xymd", "pdno", "padding", "", NULL
};

void
harness_abort(const char *what)
{
	fprintf(stderr, "fuzz_kis: invariant broken: %s\n", what);
	abort();
}

/* ----------------------------------------------------------------
 * Checks
 * ----------------------------------------------------------------
 */
static const uint8_t *current_data;
static size_t current_size;

static void
semantic(const char *kind, const char *what)
{
	static char reported[16][64];
	static int	nreported = 0;
	char		path[128];
	FILE	   *fp;

	if (strict)
	{
		fprintf(stderr, "fuzz_kis: semantic finding %s: %s\n", kind, what);
		abort();
	}
	for (int i = 0; i < nreported; i++)
	{
		if (strcmp(reported[i], kind) == 0)
			return;
	}
	if (nreported < 16)
		strlcpy(reported[nreported++], kind, sizeof(reported[0]));
	snprintf(path, sizeof(path), "semantic-%s", kind);
	fp = fopen(path, "wb");
	if (fp != NULL)
	{
		fwrite(current_data, 1, current_size, fp);
		fclose(fp);
	}
	fprintf(stderr, "fuzz_kis: semantic finding %s: %s (input saved as %s; "
			"KIS_FUZZ_STRICT=1 makes it a crash)\n", kind, what, path);
}

/* A column text as InputFunctionCall gets it: a C string of valid UTF-8 */
static void
check_text(const char *text)
{
	const unsigned char *p = (const unsigned char *) text;

	if (text == NULL)
		return;
	while (*p)
	{
		int			n = (*p < 0x80) ? 1 : (*p & 0xE0) == 0xC0 ? 2 :
			(*p & 0xF0) == 0xE0 ? 3 : (*p & 0xF8) == 0xF0 ? 4 : 0;

		if (n == 0)
			harness_abort("column text is not UTF-8");
		for (int i = 1; i < n; i++)
		{
			if ((p[i] & 0xC0) != 0x80)
				harness_abort("column text is not UTF-8");
		}
		p += n;
	}
}

/* Read one row as run.c's store_row would, checking what it relies on */
static void
consume_row(const KisEndpoint *ep, KisRow *row, List *call_keys)
{
	volatile size_t sink = 0;

	if (row == NULL)
		harness_abort("NULL row in the list");
	if (row->ep != ep)
		harness_abort("a row does not name its endpoint");
	if (ep->symbol_kind == KIS_SYMBOL_NONE && ep->markets != NULL)
	{
		if (row->key == NULL || !list_member_ptr(call_keys, row->key))
			harness_abort("a listing's row is not of its call's market");
	}
	else if (ep->symbol_kind == KIS_SYMBOL_NONE)
	{
		if (row->key != NULL)
			harness_abort("an account row has a key");
	}
	else if (row->key == NULL || !list_member_ptr(call_keys, row->key))
		harness_abort("a row's key is not one of its call's keys");

	if (row->problem != NULL)
	{
		if (row->row != NULL)
			harness_abort("a failed row carries data");
		/* handle_failure: "not listed" dereferences row->key */
		if (strcmp(row->problem, KIS_NOT_LISTED) == 0 && row->key == NULL)
			harness_abort("a not-listed row has no key");
		check_text(row->problem);
		sink += strlen(row->problem);
		return;
	}
	if (!json_is_object(row->row))
		harness_abort("a good row is not a JSON object");
	if (row->extra != NULL && !json_is_object(row->extra))
		harness_abort("a row's extra is not a JSON object");

	{
		char	   *raw = kis_row_raw_text(row->row);

		check_text(raw);
		if (raw != NULL)
		{
			sink += strlen(raw);
			pfree(raw);
		}
	}
	for (const KisColumnDef *col = ep->columns; col->column; col++)
	{
		char	   *text = kis_row_value(row, col->field);

		check_text(text);
		if (text != NULL)
			sink += strlen(text);
	}
	for (const char *const *field = extra_fields; *field; field++)
		check_text(kis_row_value(row, *field));
	(void) sink;
}

/* ----------------------------------------------------------------
 * One scan
 * ----------------------------------------------------------------
 */
typedef struct Segment
{
	long		status;
	const char *tr_cont;
	const uint8_t *body;
	size_t		len;
} Segment;

/* Split the input after the header; returns the number of segments */
static int
split_segments(const uint8_t *data, size_t size, Segment *segs, int maxsegs)
{
	const size_t seplen = strlen(SEPARATOR);
	size_t		pos = 0;
	int			n = 0;

	while (pos <= size && n < maxsegs)
	{
		const uint8_t *start = data + pos;
		const uint8_t *end = memmem(start, size - pos, SEPARATOR, seplen);
		size_t		seglen = end ? (size_t) (end - start) : size - pos;

		if (seglen >= 2)
		{
			segs[n].status = http_statuses[start[0] % lengthof(http_statuses)];
			segs[n].tr_cont = tr_conts[start[1] % lengthof(tr_conts)];
			segs[n].body = start + 2;
			segs[n].len = seglen - 2;
			n++;
		}
		if (end == NULL)
			break;
		pos += seglen + seplen;
	}
	return n;
}

/* The body as the engine hands it over: its own buffer, NUL-terminated */
static char *
body_copy(const Segment *seg)
{
	char	   *body = palloc(seg->len + 1);

	memcpy(body, seg->body, seg->len);
	body[seg->len] = '\0';
	return body;
}

static bool
error_is_deliberate(void)
{
	for (const char *const *e = deliberate_errors; *e; e++)
	{
		if (strncmp(fuzz_error_message, *e, strlen(*e)) == 0)
			return true;
	}
	return false;
}

/*
 * A download's answer as fetch_answer.c's finish_file_request makes it:
 * 200 hands the body over, a 5xx (or no answer) is retried, anything else
 * fails.
 */
static void
read_file_answer(KisResponse *resp, const Segment *seg)
{
	memset(resp, 0, sizeof(*resp));
	resp->http_status = seg->status;
	if (seg->status == 200)
	{
		resp->outcome = KIS_OUTCOME_OK;
		resp->body = body_copy(seg);
		resp->body_len = seg->len;
	}
	else
	{
		resp->outcome = seg->status >= 500 || seg->status == 0 ?
			KIS_OUTCOME_RETRY : KIS_OUTCOME_FAILED;
		resp->problem = psprintf("HTTP %ld", seg->status);
	}
}

/* whole with the fields of its rows that pick leaves out deleted (json_pick.c's rule) */
static void
trim_rows(json_t *row, const char *const *fields, int nfields)
{
	const char *key;
	json_t	   *value;
	void	   *tmp;

	json_object_foreach_safe(row, tmp, key, value)
	{
		bool		keep = false;

		for (int i = 0; i < nfields && !keep; i++)
			keep = strcmp(fields[i], key) == 0;
		if (!keep)
			json_object_del(row, key);
	}
}

static void
trim(json_t *whole, const char *const *fields, int nfields)
{
	const char *key;
	json_t	   *member;

	json_object_foreach(whole, key, member)
	{
		size_t		i;
		json_t	   *elem;

		if (json_is_object(member))
			trim_rows(member, fields, nfields);
		else if (json_is_array(member))
		{
			json_array_foreach(member, i, elem)
			{
				if (json_is_object(elem))
					trim_rows(elem, fields, nfields);
			}
		}
	}
}

/*
 * The picked parse of a body (as a table reading every catalogue column
 * has, and as one reading none has) is either refused, or jansson's parse
 * of it with the fields not picked deleted: never a document jansson
 * refuses, never other values.
 */
static void
check_picked(const KisEndpoint *ep, const Segment *seg)
{
	const char *fields[128];
	int			nfields = 0;
	List	   *list = NIL;
	json_t	   *whole;

	if (seg->len == 0)
		return;
	for (int all = 0; all < 2; all++)
	{
		KisJsonPick *pick;
		json_t	   *picked;

		list = kis_endpoint_rule_fields(ep, NIL);
		for (const KisColumnDef *col = ep->columns; all && col->column; col++)
		{
			list = lappend(list, (char *) col->field);
			if (col->sign_field != NULL)
				list = lappend(list, (char *) col->sign_field);
			if (col->sign_twin != NULL)
				list = lappend(list, (char *) col->sign_twin);
		}
		nfields = 0;
		for (int i = 0; i < list_length(list) && nfields < lengthof(fields); i++)
			fields[nfields++] = list_nth(list, i);
		pick = kis_json_pick_create(list);
		picked = kis_json_parse_picked((const char *) seg->body, seg->len, pick);
		if (picked == NULL)
			continue;
		whole = json_loadb((const char *) seg->body, seg->len, 0, NULL);
		if (whole == NULL)
			harness_abort("the picked parse took a body jansson refuses");
		trim(whole, fields, nfields);
		if (!json_equal(picked, whole))
			harness_abort("the picked parse differs from jansson's");
		json_decref(whole);
		json_decref(picked);
	}
}

/*
 * The answer of one request, as fetch_answer.c's finish_data_request and
 * complete_request treat it, by the same rules (outcome.c); returns false
 * when the scan ends here (an ERROR in the engine).
 */
static bool
answer_request(KisFetcher *f, MemoryContext run_cxt, const Segment *seg)
{
	FuzzRequest req = f->queue[f->head++];
	MemoryContext rcxt;
	MemoryContext old;
	KisResponse resp;
	KisCompletion *c;
	List	   *rows;
	List	   *later;
	char	   *summary;
	ListCell   *lc;
	KisRow	   *prev_rows[64];
	int			nprev = 0;

	rcxt = AllocSetContextCreate(run_cxt, "kis_fdw response", ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(rcxt);
	if (f->ep->source == KIS_SOURCE_MASTER_FILE)
		read_file_answer(&resp, seg);
	else
	{
		kis_response_read(&resp, seg->status, body_copy(seg), seg->len, NULL);
		check_picked(f->ep, seg);
	}
	/* as the engine does before an answer is shared */
	if (resp.outcome == KIS_OUTCOME_OK && f->check != NULL &&
		(resp.problem = f->check(req.arg, &resp)) != NULL)
	{
		resp.outcome = KIS_OUTCOME_FAILED;
		resp.msg_cd = NULL;
	}
	summary = kis_response_summary(&resp);
	check_text(summary);
	MemoryContextSwitchTo(old);
	if (resp.outcome == KIS_OUTCOME_OK && resp.root == NULL &&
		f->ep->source != KIS_SOURCE_MASTER_FILE)
		harness_abort("an OK answer without a document");

	req.attempts++;				/* this answer's send */
	if (resp.outcome == KIS_OUTCOME_TOKEN)
		req.token_rejections++;
	switch (kis_outcome_action(resp.outcome, req.attempts, MAX_RETRIES,
							   req.token_rejections))
	{
		case KIS_ACTION_DONE:
		case KIS_ACTION_GIVE_UP:
			break;
		case KIS_ACTION_FAIL:
		case KIS_ACTION_TOKEN_FAILED:
			MemoryContextDelete(rcxt);
			return false;
		case KIS_ACTION_RENEW_TOKEN:
			MemoryContextDelete(rcxt);
			req.attempts--;		/* resent first, not charged */
			f->queue[--f->head] = req;
			return true;
		case KIS_ACTION_RETRY:
			MemoryContextDelete(rcxt);
			if (f->tail >= MAX_REQUESTS)
				harness_abort("retry queue overflow");
			f->queue[f->tail++] = req;
			return true;
	}

	c = MemoryContextAllocZero(rcxt, sizeof(KisCompletion));
	c->cxt = rcxt;
	c->arg = req.arg;
	strlcpy(c->tr_cont, seg->tr_cont, sizeof(c->tr_cont));
	c->resp = resp;
	c->attempts = req.attempts;
	c->completed_at = fuzz_now;
	if (resp.outcome != KIS_OUTCOME_OK && resp.outcome != KIS_OUTCOME_FAILED)
	{
		old = MemoryContextSwitchTo(rcxt);
		kis_outcome_give_up(&c->resp, c->attempts);
		MemoryContextSwitchTo(old);
	}

	/* the next request as a wave queues it: after the answer was read */
	later = NIL;
	rows = kis_requests_answer(f, c, &later);
	kis_requests_send(f, later);
	if (harness_verbose)
		fprintf(stderr, "  answer HTTP %ld tr_cont \"%s\" %zu bytes: outcome %d, %d rows (%s)\n",
				seg->status, seg->tr_cont, seg->len, (int) c->resp.outcome,
				list_length(rows), summary);
	if (CurrentMemoryContext != run_cxt)
		harness_abort("kis_requests_answer changed the current memory context");

	{
		foreach(lc, rows)
		{
			KisRow	   *row = lfirst(lc);

			consume_row(f->ep, row, req.keys);
			if (harness_verbose)
				fprintf(stderr, "    row %s/%s: %s\n",
						row->key ? row->key->symbol : "-", row->key ? row->key->venue : "-",
						row->problem ? row->problem : "data");
			if (f->ep->batch_size > 1 && row->row != NULL)
			{
				for (int i = 0; i < nprev; i++)
				{
					if (prev_rows[i]->row == row->row && prev_rows[i]->key != row->key)
						semantic("batch-shared-row",
								 "two keys of one batched request were given the same answer row");
				}
				if (nprev < lengthof(prev_rows))
					prev_rows[nprev++] = row;
			}
		}
		if (f->ep->batch_size > 1 && list_length(rows) != req.nkeys)
			harness_abort("a batched answer does not give one row per key");
	}

	/* kis_fetch_forget */
	MemoryContextDelete(rcxt);
	return true;
}

static void
build_keys(const KisEndpoint *ep, int nsym, bool two_venues, List **keys)
{
	const char *const *symbols = ep->has_exchange ? overseas_symbols : domestic_symbols;
	const char *venues[2];

	venues[0] = ep->has_exchange ? "NAS" : "J";
	venues[1] = ep->has_exchange ? "NYS" : "NX";
	*keys = NIL;
	if (ep->markets != NULL)
	{
		/* a listing per market: the market is the key (run.c) */
		for (int i = 0; i < 1 + (nsym - 1) % 3 && ep->markets[i]; i++)
		{
			KisKey	   *key = palloc(sizeof(KisKey));

			key->symbol = pstrdup(ep->markets[i]);
			key->venue = key->symbol;
			*keys = lappend(*keys, key);
		}
		return;
	}
	if (ep->symbol_kind == KIS_SYMBOL_NONE)
		return;
	for (int i = 0; i < nsym && symbols[i]; i++)
	{
		for (int v = 0; v < (two_venues ? 2 : 1); v++)
		{
			KisKey	   *key = palloc(sizeof(KisKey));

			key->symbol = pstrdup(symbols[i]);
			key->venue = pstrdup(venues[v]);
			*keys = lappend(*keys, key);
		}
	}
}

/*
 * The endpoint that mode byte b names (see the input layout above).  The
 * live tables, last in the catalogue, send no request and read no answer:
 * they are left out.
 */
static const KisEndpoint *
fuzz_endpoint(uint8_t b)
{
	int			n = 0;

	while (kis_endpoints[n].name && !kis_endpoint_streamed(&kis_endpoints[n]))
		n++;
	return &kis_endpoints[(b % 8 + 7 * (b / 8 % 2)) % n];
}

static void
run_scan(const uint8_t *data, size_t size, MemoryContext run_cxt)
{
	static const char *const periods[] = {"D", "W", "M", "Y"};
	const KisEndpoint *ep = fuzz_endpoint(data[0]);
	KisConfig  *config;
	KisRange	range;
	List	   *keys;
	KisFetcher *f;
	Segment    *segs;
	int			nsegs;
	int			today = kis_today_kst();

	config = palloc0(sizeof(KisConfig));
	/* options.c refuses the virtual environment for real-only endpoints */
	config->environment = (data[2] & 1) && ep->tr_id_virtual ? KIS_ENV_VIRTUAL : KIS_ENV_REAL;
	config->base_url = pstrdup("https://127.0.0.1:1");
	config->master_url = pstrdup("https://127.0.0.1:1/common/master");
	config->max_concurrency = 8;
	config->max_retries = MAX_RETRIES;
	config->endpoint = ep;
	config->on_error = KIS_ON_ERROR_ROW;
	config->market = pstrdup("J");
	config->exchange = pstrdup("NAS");
	config->period = pstrdup(periods[(data[2] >> 2) & 3]);
	config->adjusted = (data[2] & 2) != 0;
	config->app_key = pstrdup("PSfuzzKey");
	config->app_secret = pstrdup("fuzz-secret");
	config->account = pstrdup("12345678-01");

	memset(&range, 0, sizeof(range));
	range.has_from = (data[2] & 0x10) != 0;
	range.has_to = (data[2] & 0x20) != 0;
	range.from = today - 7 * data[3];
	range.to = today - data[4];
	if (range.has_from && range.has_to && range.from > range.to)
		range.has_from = false; /* keys.c refuses an empty range */
	if (ep->paging == KIS_PAGING_CURSOR && ep->has_date && !range.has_from &&
		range.has_to && range.to < today)
		range.has_to = false;	/* requests.c refuses a calendar before today */

	build_keys(ep, 1 + data[1] % 40, (data[2] & 0x40) != 0, &keys);

	f = palloc0(sizeof(KisFetcher));
	f->ep = ep;
	f->cxt = run_cxt;
	f->scan_keys = keys;
	segs = palloc(sizeof(Segment) * 1024);
	nsegs = split_segments(data + HEADER_BYTES, size - HEADER_BYTES, segs, 1024);

	kis_requests_start(f, config, keys, &range, NULL);
	if (CurrentMemoryContext != run_cxt)
		harness_abort("kis_requests_start changed the current memory context");
	for (int i = 0; i < nsegs && f->head < f->tail; i++)
	{
		if (!answer_request(f, run_cxt, &segs[i]))
			break;
	}
}

/* shmem.c's, which the harness does not link (its slots are its own) */
void
kis_slot_count(KisAppSlot *slot, KisCounter counter, uint64 n)
{
	pg_atomic_fetch_add_u64(&slot->counters[counter], n);
}

/* How long a claim lasts in the harness: far beyond 30 s, as a long timeout_ms */
#define FUZZ_CLAIM_US	((int64) 600 * USECS_PER_SEC)

/* The tokenP answer: kis_token_accept, then whether the token is usable */
static void
run_token(const uint8_t *data, size_t size, MemoryContext run_cxt)
{
	KisAppSlot *slot = palloc0(sizeof(KisAppSlot));
	uint8		creds[KIS_SHA256_LEN];
	Segment    *segs = palloc(sizeof(Segment) * 64);
	int			nsegs = split_segments(data + HEADER_BYTES, size - HEADER_BYTES, segs, 64);

	memset(creds, 0xA5, sizeof(creds));
	kis_slot_init(slot);

	for (int i = 0; i < nsegs; i++)
	{
		char		token[KIS_TOKEN_MAX];
		char		before[KIS_TOKEN_MAX];
		char	   *detail = (char *) 0x1;
		uint64		gen0 = pg_atomic_read_u64(&slot->generation);
		uint64		gen;
		TimestampTz wake = 0;
		uint64		claim = 0;
		KisTokenResult res;
		KisTokenState state;

		/* no issuance interval or retry wait between answers */
		kis_token_reset(slot);
		state = kis_token_acquire(slot, creds, fuzz_now, FUZZ_CLAIM_US, token, &gen, &wake, &claim);
		if (state == KIS_TOKEN_READY)
		{
			/* a token is there: drop it, as a rejection would */
			kis_token_invalidate(slot, gen);
			state = kis_token_acquire(slot, creds, fuzz_now, FUZZ_CLAIM_US, token, &gen, &wake, &claim);
		}
		if (state != KIS_TOKEN_ISSUE)
			harness_abort("no issuing claim for a slot without a token");
		memcpy(before, slot->token, sizeof(before));
		res = kis_token_accept(slot, creds, claim, segs[i].status, body_copy(&segs[i]),
							   segs[i].len, fuzz_now, &detail);
		if (harness_verbose)
			fprintf(stderr, "  token answer HTTP %ld: result %d, expires in %lld s, %s\n",
					segs[i].status, (int) res,
					res == KIS_TOKEN_OK ? (long long) ((slot->expires_at - fuzz_now) / USECS_PER_SEC) : 0LL,
					res == KIS_TOKEN_OK ? "ok" : detail);
		if (pg_atomic_read_u64(&slot->claim) != 0)
			harness_abort("kis_token_accept kept the issuing claim");
		if (res == KIS_TOKEN_OK)
		{
			if (detail != NULL)
				harness_abort("a token accepted with an error detail");
			if (slot->token[0] == '\0' || strnlen(slot->token, KIS_TOKEN_MAX) >= KIS_TOKEN_MAX)
				harness_abort("an accepted token is empty or unterminated");
			if (pg_atomic_read_u64(&slot->generation) != gen0 + 1)
				harness_abort("an accepted token did not bump the generation");
			if (memcmp(slot->token_creds, creds, sizeof(creds)) != 0)
				harness_abort("an accepted token is not for these credentials");
			state = kis_token_acquire(slot, creds, fuzz_now, FUZZ_CLAIM_US, token, &gen, &wake, &claim);
			if (state != KIS_TOKEN_READY)
				semantic("token-unusable",
						 "a token kis_token_accept took is not READY for kis_token_acquire at once");
			else if (strcmp(token, slot->token) != 0)
				harness_abort("kis_token_acquire copied another token");
		}
		else
		{
			if (detail == NULL || detail == (char *) 0x1)
				harness_abort("a refused token answer without an error detail");
			check_text(detail);
			if (memcmp(before, slot->token, sizeof(before)) != 0)
				harness_abort("a refused token answer changed the slot's token");
			if (res != KIS_TOKEN_RETRY && res != KIS_TOKEN_TOO_SOON && res != KIS_TOKEN_FATAL)
				harness_abort("kis_token_accept returned no known result");
		}
	}
}

/*
 * Not fuzzing, a fixed check at start: two fetchers of one backend (one
 * pid) must not release each other's issuing claim.  A claims; nobody
 * takes it over before its deadline; then it goes stale and B takes it over; A's late release must leave B's claim
 * in place, so that nobody else issues while B does.
 */
static void
check_claims(void)
{
	static KisAppSlot slot;
	uint8		creds[KIS_SHA256_LEN];
	char		token[KIS_TOKEN_MAX];
	uint64		gen;
	uint64		a = 0;
	uint64		b = 0;
	uint64		c = 0;
	TimestampTz wake;
	TimestampTz later = fuzz_now + (TimestampTz) 3600 * USECS_PER_SEC;

	memset(creds, 0x5A, sizeof(creds));
	kis_slot_init(&slot);
	if (kis_token_acquire(&slot, creds, fuzz_now, FUZZ_CLAIM_US, token, &gen, &wake, &a) != KIS_TOKEN_ISSUE ||
		kis_token_acquire(&slot, creds, fuzz_now + FUZZ_CLAIM_US - 1, FUZZ_CLAIM_US, token, &gen, &wake, &c) != KIS_TOKEN_WAIT_CLAIM ||
		kis_token_acquire(&slot, creds, later, FUZZ_CLAIM_US, token, &gen, &wake, &b) != KIS_TOKEN_ISSUE ||
		a == b)
		harness_abort("claims: no claim, one taken over before its deadline, or a stale one not taken over");
	kis_token_release_claim(&slot, a);
	if (kis_token_acquire(&slot, creds, later, FUZZ_CLAIM_US, token, &gen, &wake, &c) != KIS_TOKEN_WAIT_CLAIM)
		harness_abort("claims: one fetcher released another's issuing claim");
	kis_token_release_claim(&slot, b);
	if (kis_token_acquire(&slot, creds, later, FUZZ_CLAIM_US, token, &gen, &wake, &c) != KIS_TOKEN_ISSUE)
		harness_abort("claims: a released claim still holds");
}

/*
 * Self-tests run once at start, for shapes the fuzzer alone would never
 * reach.  selftest_answer hands the oldest queued request a 200 answer
 * and returns its rows (they live until run_cxt goes).
 */
static List *
selftest_answer(KisFetcher *f, MemoryContext run_cxt, const char *body)
{
	KisCompletion *c = palloc0(sizeof(KisCompletion));
	FuzzRequest req = f->queue[f->head++];

	c->cxt = run_cxt;
	c->arg = req.arg;
	c->completed_at = fuzz_now;
	kis_response_read(&c->resp, 200, body, strlen(body), NULL);
	return kis_requests_answer(f, c, NULL);
}

static KisConfig *
selftest_config(const KisEndpoint *ep)
{
	KisConfig  *config = palloc0(sizeof(KisConfig));

	config->endpoint = ep;
	config->base_url = pstrdup("https://127.0.0.1:1");
	config->max_retries = MAX_RETRIES;
	config->market = pstrdup("J");
	config->exchange = pstrdup("NAS");
	config->period = pstrdup("D");
	return config;
}

/*
 * An endpoint without symbols whose parameters name the key's symbol and
 * market, and whose one row is an object: requests.c must not assume a
 * key where the catalogue has none (no endpoint of today's catalogue is
 * shaped like this).
 */
static void
check_symbolless_endpoint(KisRange *range)
{
	static const KisParamDef params[] = {
		{"FID_INPUT_ISCD", KIS_PARAM_SYMBOL},
		{"FID_COND_MRKT_DIV_CODE", KIS_PARAM_MARKET},
		{NULL}
	};
	static const KisColumnDef columns[] = {{NULL}};
	KisEndpoint *ep = palloc0(sizeof(KisEndpoint));
	KisFetcher *f = palloc0(sizeof(KisFetcher));
	List	   *rows;

	ep->name = "selftest";
	ep->path = "/uapi/selftest";
	ep->tr_id_real = ep->tr_id_virtual = "SELFTEST";
	ep->params = params;
	ep->rows_member = "output";
	ep->rows_shape = KIS_ROWS_OBJECT;
	ep->symbol_kind = KIS_SYMBOL_NONE;
	ep->batch_size = 1;
	ep->columns = columns;
	f->ep = ep;
	f->cxt = CurrentMemoryContext;
	if (kis_requests_start(f, selftest_config(ep), NIL, range, NULL) != 1 || f->tail != 1)
		harness_abort("self-test: an endpoint without symbols did not ask once");
	rows = selftest_answer(f, CurrentMemoryContext,
						   "{\"rt_cd\":\"0\",\"output\":{\"x\":\"1\"}}");
	if (list_length(rows) != 1 || ((KisRow *) linitial(rows))->key != NULL ||
		((KisRow *) linitial(rows))->problem != NULL)
		harness_abort("self-test: an endpoint without symbols did not give its row");
}

/* A dated row's date is exactly YYYYMMDD and a real day, or the row fails */
static void
check_row_dates(KisRange *range)
{
	const KisEndpoint *ep = kis_endpoint_lookup("domestic_daily");
	KisFetcher *f = palloc0(sizeof(KisFetcher));
	KisKey	   *key = palloc(sizeof(KisKey));
	List	   *rows;
	ListCell   *lc;
	int			good = 0;

	key->symbol = pstrdup("005930");
	key->venue = pstrdup("J");
	f->ep = ep;
	f->cxt = CurrentMemoryContext;
	f->scan_keys = list_make1(key);
	kis_requests_start(f, selftest_config(ep), f->scan_keys, range, NULL);
	rows = selftest_answer(f, CurrentMemoryContext,
						   "{\"rt_cd\":\"0\",\"output2\":["
						   "{\"stck_bsop_date\":\"2025-1-1\"},"
						   "{\"stck_bsop_date\":\"20250231\"},"
						   "{\"stck_bsop_date\":\" 2025123\"},"
						   "{\"stck_bsop_date\":\"20251230\"}]}");
	foreach(lc, rows)
	{
		KisRow	   *row = lfirst(lc);

		if (row->problem == NULL)
			good++;
		else if (strcmp(row->problem, "a row without a valid date") != 0)
			harness_abort("self-test: a dated row failed for another reason");
	}
	if (list_length(rows) != 4 || good != 1)
		harness_abort("self-test: a date that is not exactly YYYYMMDD was taken");
}

static void
run_self_tests(void)
{
	MemoryContext run_cxt = AllocSetContextCreate(TopMemoryContext, "kis_fdw run",
												  ALLOCSET_DEFAULT_SIZES);
	KisRange	range;

	memset(&range, 0, sizeof(range));
	CurrentMemoryContext = run_cxt;
	check_symbolless_endpoint(&range);
	check_row_dates(&range);
	CurrentMemoryContext = TopMemoryContext;
	MemoryContextDelete(run_cxt);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	/* 2025-12-30 10:00 KST = 01:00 UTC, in microseconds since 2000-01-01 */
	int			days = date2j(2025, 12, 30) - POSTGRES_EPOCH_JDATE;

	fuzz_now = (TimestampTz) days * USECS_PER_DAY + (TimestampTz) 1 * USECS_PER_HOUR;
	strict = getenv("KIS_FUZZ_STRICT") != NULL && strcmp(getenv("KIS_FUZZ_STRICT"), "1") == 0;
	harness_verbose = getenv("KIS_FUZZ_VERBOSE") != NULL && strcmp(getenv("KIS_FUZZ_VERBOSE"), "1") == 0;
	TopMemoryContext = AllocSetContextCreate(NULL, "TopMemoryContext", ALLOCSET_DEFAULT_SIZES);
	CurrentMemoryContext = TopMemoryContext;
	kis_token_issue_interval = 0;
	check_claims();
	run_self_tests();
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	MemoryContext run_cxt;
	sigjmp_buf	jb;
	Size		live_before;

	if (size < HEADER_BYTES)
		return 0;
	current_data = data;
	current_size = size;
	live_before = fuzz_bytes_live;

	run_cxt = AllocSetContextCreate(TopMemoryContext, "kis_fdw run", ALLOCSET_DEFAULT_SIZES);
	CurrentMemoryContext = run_cxt;
	if (sigsetjmp(jb, 0) == 0)
	{
		PG_exception_stack = &jb;
		if (data[0] % 8 == 7)
			run_token(data, size, run_cxt);
		else
			run_scan(data, size, run_cxt);
	}
	else if (!error_is_deliberate())
	{
		fprintf(stderr, "fuzz_kis: ERROR from input at %s:%d: %s [%s]\n",
				fuzz_error_file, fuzz_error_line, fuzz_error_message, fuzz_error_detail);
		abort();
	}
	PG_exception_stack = NULL;
	CurrentMemoryContext = TopMemoryContext;
	MemoryContextDelete(run_cxt);
	if (fuzz_bytes_live != live_before)
	{
		fprintf(stderr, "fuzz_kis: %zu bytes left outside the scan's contexts\n",
				fuzz_bytes_live - live_before);
		abort();
	}
	return 0;
}
