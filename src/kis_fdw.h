/*-------------------------------------------------------------------------
 *
 * kis_fdw.h
 *	  Types shared by the parts of kis_fdw: resolved options, the endpoint
 *	  catalogue, request keys, and the interfaces of the fetch engine, the
 *	  rate gate, the token cache and the response reader.
 *
 * The FDW callbacks (kis_fdw.c) are glue over these pieces; each src/ file
 * owns one of them (see docs/design.md).
 *
 *-------------------------------------------------------------------------
 */
#ifndef KIS_FDW_H
#define KIS_FDW_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "fmgr.h"
#include "access/attnum.h"
#include "lib/ilist.h"
#include "nodes/pg_list.h"
#include "nodes/primnodes.h"
#include "port/atomics.h"
#include "storage/spin.h"
#include "utils/palloc.h"

/*
 * jansson's document type, declared here so that files which include
 * PostgreSQL's fmgrprotos.h (it has a json_object of its own) need not
 * include jansson.h.
 */
typedef struct json_t json_t;

/* ----------------------------------------------------------------
 * options.c: the option catalogue and the resolved configuration
 * ----------------------------------------------------------------
 */
typedef enum KisEnvironment
{
	KIS_ENV_REAL,
	KIS_ENV_VIRTUAL
} KisEnvironment;

typedef enum KisOnError
{
	KIS_ON_ERROR_ERROR,			/* abort the query */
	KIS_ON_ERROR_SKIP,			/* drop the row, one WARNING at the end */
	KIS_ON_ERROR_ROW			/* emit the row with NULL data and "error" set */
} KisOnError;

struct KisEndpoint;

/* Everything a scan needs to know, resolved from table, server and mapping */
typedef struct KisConfig
{
	/* server */
	Oid			serverid;
	KisEnvironment environment;
	char	   *base_url;		/* no trailing slash */
	char	   *master_url;		/* where the stock master files are */
	double		rate_limit;		/* requests per second; 0 = no client gate */
	int			max_concurrency;
	int			timeout_ms;
	int			connect_timeout_ms;
	int			max_retries;
	char	   *ca_file;		/* NULL: system default */

	/* table (falling back to server for on_error) */
	const struct KisEndpoint *endpoint;
	KisOnError	on_error;
	char	   *market;			/* default FID_COND_MRKT_DIV_CODE */
	char	   *exchange;		/* default EXCD */
	char	   *period;			/* D W M Y, for daily tables */
	bool		adjusted;		/* adjusted prices, for daily tables */
	bool		async_capable;	/* may run as an async Append child */
	int			cache_ttl_ms;	/* serve answers this young from the cache */

	/* user mapping: filled only at execution (kis_config_add_credentials) */
	char	   *app_key;
	char	   *app_secret;
	char	   *account;
} KisConfig;

extern void kis_config_for_table(Oid foreigntableid, KisConfig *config);
extern void kis_config_add_credentials(KisConfig *config, Oid userid);
extern char *kis_column_field_option(Oid relid, AttrNumber attnum);
extern const char *kis_on_error_name(KisOnError mode);

/* ----------------------------------------------------------------
 * endpoints.c: one declarative entry per KIS API
 * ----------------------------------------------------------------
 */

/* Where a query parameter's value comes from */
typedef enum KisParamSource
{
	KIS_PARAM_LITERAL,			/* fixed text */
	KIS_PARAM_SYMBOL,			/* the key's symbol */
	KIS_PARAM_MARKET,			/* the key's market (J, NX, UN) */
	KIS_PARAM_EXCHANGE,			/* the key's exchange (NAS, ...) */
	KIS_PARAM_BATCH_MARKET,		/* name_n = market of the n-th key (n from 1) */
	KIS_PARAM_BATCH_SYMBOL,		/* name_n = symbol of the n-th key */
	KIS_PARAM_DATE_FROM,		/* YYYYMMDD */
	KIS_PARAM_DATE_TO,			/* YYYYMMDD, the current page's end */
	KIS_PARAM_DATE_START,		/* YYYYMMDD, the range's first day, else today */
	KIS_PARAM_TIME_TO,			/* HHMMSS, the current page's end (KST) */
	KIS_PARAM_PERIOD,			/* D W M Y */
	KIS_PARAM_PERIOD_NUMBER,	/* 0 1 2 for D W M (overseas GUBN) */
	KIS_PARAM_ORIGINAL_PRICE,	/* 0 adjusted, 1 original (FID_ORG_ADJ_PRC) */
	KIS_PARAM_ADJUSTED_FLAG,	/* 1 adjusted, 0 original (MODP) */
	KIS_PARAM_CANO,				/* account number, first 8 digits */
	KIS_PARAM_ACNT_PRDT_CD,		/* account product code, last 2 digits */
	KIS_PARAM_CTX_FK,			/* continuation keys from the previous page */
	KIS_PARAM_CTX_NK
} KisParamSource;

typedef struct KisParamDef
{
	const char *name;
	KisParamSource source;
	const char *literal;
} KisParamDef;

/*
 * A friendly column: its name, the KIS field it reads, its imported type.
 * A field that KIS may send without its sign (a change, a change rate)
 * names where its direction is: sign_field holds KIS's direction code
 * (1 upper limit, 2 up, 3 flat, 4 lower limit, 5 down, 0 flat), and
 * sign_twin, when the code says nothing, a value of the same direction that
 * carries its own sign.  See docs/kis-answers.md.
 */
typedef struct KisColumnDef
{
	const char *column;
	const char *field;
	const char *type;
	const char *sign_field;
	const char *sign_twin;
} KisColumnDef;

/* How request keys look, so that bad values are refused before sending */
typedef enum KisSymbolKind
{
	KIS_SYMBOL_NONE,			/* the endpoint takes no symbol (account) */
	KIS_SYMBOL_DOMESTIC,		/* 6 digits/upper-case letters, ETN Q+6 digits */
	KIS_SYMBOL_OVERSEAS			/* ticker: upper-case letters, digits, . / - */
} KisSymbolKind;

/* Where the rows are in an answer */
typedef enum KisRowShape
{
	KIS_ROWS_OBJECT,			/* one row: an object */
	KIS_ROWS_ARRAY,				/* many rows: an array of objects */
	KIS_ROWS_ANY				/* either (the documents disagree) */
} KisRowShape;

/* Where an endpoint's rows come from */
typedef enum KisSource
{
	KIS_SOURCE_API,				/* a KIS API answer (JSON) */
	KIS_SOURCE_MASTER_FILE		/* a stock master file: one download per
								 * market from master_url (master.c) */
} KisSource;

/* How an endpoint continues past one answer */
typedef enum KisPaging
{
	KIS_PAGING_NONE,
	KIS_PAGING_DATE,			/* ask again with the end date before the oldest row */
	KIS_PAGING_CURSOR,			/* tr_cont header and ctx_area_* keys */
	KIS_PAGING_TIME				/* today's bars: ask again before the oldest
								 * row's time */
} KisPaging;

typedef struct KisEndpoint
{
	const char *name;			/* the table option value, the imported table */
	const char *description;
	KisSource	source;
	const char *path;
	const char *tr_id_real;
	const char *tr_id_virtual;	/* NULL: KIS offers it to real accounts only */
	const KisParamDef *params;	/* terminated by name == NULL */

	const char *rows_member;	/* the answer member holding the rows */
	KisRowShape rows_shape;
	const char *extra_member;	/* an object whose fields fill what a row lacks */

	KisSymbolKind symbol_kind;
	bool		has_market;		/* "market" is a key column */
	const char *const *markets; /* its values, all asked for without a
								 * condition (NULL: J, NX, UN; the default
								 * market) */
	bool		has_exchange;	/* "exchange" is a key column */
	bool		has_date;		/* "date" conditions become the date range */
	bool		needs_account;	/* reads the user mapping's account */
	bool		is_public;		/* published to anyone: read without a user
								 * mapping (its credentials unused) */
	int			batch_size;		/* keys per request */
	const char *row_symbol_field;	/* in batched answers: whose row it is */
	const char *row_date_field; /* YYYYMMDD of a dated row */
	const char *row_time_field; /* HHMMSS of a row (time paging) */
	const char *notfound_field; /* "0" or "" here means: not listed */
	const char *identity_field; /* "" here means: not listed (the price may
								 * be "" for a listed symbol) */
	KisPaging	paging;
	int			page_rows;		/* a full page (date paging) */
	const char *const *restart_codes;	/* cursor paging: msg_cd that mean
										 * "start the listing over" */
	const char *ctx_fk_member;	/* cursor paging: the answer's keys (NULL: */
	const char *ctx_nk_member;	/* ctx_area_fk100, ctx_area_nk100) */
	const KisColumnDef *columns;	/* friendly map, terminated by NULL */
} KisEndpoint;

extern const KisEndpoint kis_endpoints[];
extern const char *const kis_exchange_codes[];

extern const KisEndpoint *kis_endpoint_lookup(const char *name);
extern char *kis_endpoint_names(void);
extern const char *kis_endpoint_field(const KisEndpoint *ep, const char *column);
extern const KisColumnDef *kis_endpoint_column_of_field(const KisEndpoint *ep,
														const char *field);
extern const char *kis_endpoint_tr_id(const KisEndpoint *ep, KisEnvironment env);
extern bool kis_symbol_is_valid(KisSymbolKind kind, const char *symbol);
extern const char *kis_symbol_hint(KisSymbolKind kind);
extern bool kis_market_is_valid(const char *market);
extern bool kis_endpoint_market_is_valid(const KisEndpoint *ep, const char *market);
extern char *kis_endpoint_market_hint(const KisEndpoint *ep);

/* master.c: the stock master files */
extern const char *const kis_master_markets[];
extern const char *kis_master_file(const char *market);
extern char *kis_zip_member(const char *data, size_t size, const char *suffix,
							size_t *len, const char **problem);
extern json_t *kis_master_rows(const char *market, const char *zip, size_t zip_len,
							   List **line_problems, const char **problem);
extern bool kis_exchange_is_valid(const char *exchange);
extern char *kis_endpoint_table_ddl(const KisEndpoint *ep, const char *server_name);

/* ----------------------------------------------------------------
 * quals.c: which WHERE clauses become request keys
 * ----------------------------------------------------------------
 */

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

extern const char *const kis_key_column_names[KIS_NUM_KEYS];

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

/*
 * Where a date condition's value comes from, in the plan: from other rows
 * (0), given in the query (1), or the partition's bound
 */
#define KIS_DATE_PARTITION_BOUND 2

struct PlannerInfo;
struct RelOptInfo;
struct RestrictInfo;

extern void kis_key_attnums(Oid relid, const KisEndpoint *ep, AttrNumber *attnums);
extern bool kis_match_key_clause(struct RelOptInfo *baserel, struct RestrictInfo *rinfo,
								 const AttrNumber *key_attnums, KisKeyQual *out);
extern List *kis_symbol_join_clauses(struct PlannerInfo *root, struct RelOptInfo *baserel,
									 AttrNumber symbol_attnum);
extern bool kis_depends_on_rows(Node *expr);

/* ----------------------------------------------------------------
 * shmem.c: one slot per app key, shared by all sessions when preloaded
 * ----------------------------------------------------------------
 */
#define KIS_KEY_HASH_LEN 32		/* SHA-256 */
#define KIS_TOKEN_MAX 1024		/* KIS documents up to 350 characters */

/* Counters of one app key (kis_fdw_stats) */
typedef enum KisCounter
{
	KIS_CTR_REQUESTS,			/* HTTP requests for data, retries included */
	KIS_CTR_RETRIES,
	KIS_CTR_RATE_LIMITED,		/* EGW00201 answers */
	KIS_CTR_ERR_TRANSIENT,		/* network, 5xx, EGW00001... */
	KIS_CTR_ERR_TOKEN,			/* EGW00121/EGW00123 */
	KIS_CTR_ERR_FATAL,			/* credentials refused */
	KIS_CTR_ERR_KEY,			/* a symbol's own failure */
	KIS_CTR_TOKENS_ISSUED,
	KIS_CTR_WAIT_US,			/* total time requests waited for the gate */
	KIS_CTR_BYTES,				/* response bytes received */
	KIS_CTR_SCANS,
	KIS_CTR_CACHE_HITS,			/* answers served by the answer cache */
	KIS_CTR_SHARED_WAITS,		/* requests that waited for another's send */
	KIS_NUM_COUNTERS
} KisCounter;

typedef struct KisKeySlot
{
	uint8		key_hash[KIS_KEY_HASH_LEN]; /* SHA-256 of the app key */

	/*
	 * rate gate (limiter.c), on kis_clock_now()'s clock: the theoretical
	 * arrival time of the next send, the end of a back-off KIS asked for,
	 * and how many reservations fetchers hold
	 */
	pg_atomic_uint64 tat;
	pg_atomic_uint64 penalty_until;
	pg_atomic_uint32 reservations;

	/* the slot table's (shmem.c), under its mutex */
	bool		in_use;			/* holds key_hash's state */
	bool		earned;			/* KIS issued this key a token (set by auth.c) */
	int			users;			/* scans attached */
	TimestampTz last_used;

	/* access token (auth.c); the fields below mutex are under it */
	pg_atomic_uint64 claim;		/* who is issuing a token (pid, serial), or 0 */
	pg_atomic_uint64 generation;	/* bumped at each new token */
	slock_t		mutex;
	uint8		token_creds[KIS_KEY_HASH_LEN];	/* whose token (env, key, secret) */
	char		token[KIS_TOKEN_MAX];	/* "" when none */
	uint8		token_hash[KIS_KEY_HASH_LEN];	/* SHA-256 of the token */
	uint8		rejected_hash[KIS_KEY_HASH_LEN];	/* of the last one KIS rejected */
	uint64		handed_back;	/* generation of a token equal to a rejected one */
	/* times on kis_clock_now()'s clock, never the wall clock */
	TimestampTz issued_at;
	TimestampTz expires_at;
	TimestampTz last_issued;	/* last issuance KIS made for this key */
	TimestampTz retry_after;	/* after a passing tokenP failure */
	TimestampTz claim_started;

	pg_atomic_uint64 counters[KIS_NUM_COUNTERS];
	pg_atomic_uint64 wait_max_us;
} KisKeySlot;

extern void kis_shmem_init(void);
extern bool kis_shmem_is_shared(void);
extern KisKeySlot *kis_key_slot(const uint8 *key_hash);
extern void kis_key_slot_detach(KisKeySlot *slot);
extern KisKeySlot *kis_key_slot_find(const uint8 *key_hash);
extern KisKeySlot *kis_key_slot_at(int i);
extern void kis_slot_note_wait(KisKeySlot *slot, uint64 wait_us);

/* A fresh, empty slot (shmem.c's table, and the fuzz harness's own) */
static inline void
kis_slot_init(KisKeySlot *slot)
{
	memset(slot, 0, sizeof(KisKeySlot));
	SpinLockInit(&slot->mutex);
	pg_atomic_init_u64(&slot->tat, 0);
	pg_atomic_init_u64(&slot->penalty_until, 0);
	pg_atomic_init_u32(&slot->reservations, 0);
	pg_atomic_init_u64(&slot->claim, 0);
	pg_atomic_init_u64(&slot->generation, 0);
	for (int c = 0; c < KIS_NUM_COUNTERS; c++)
		pg_atomic_init_u64(&slot->counters[c], 0);
	pg_atomic_init_u64(&slot->wait_max_us, 0);
}

/* slot is NULL for a scan without an app key (a public download) */
static inline void
kis_slot_count(KisKeySlot *slot, KisCounter counter, uint64 n)
{
	if (slot != NULL)
		pg_atomic_fetch_add_u64(&slot->counters[counter], n);
}

/* ----------------------------------------------------------------
 * limiter.c: the rate gate of one app key, and the clock of every schedule
 * ----------------------------------------------------------------
 */
#define KIS_MIN_RATE 0.01		/* requests per second; rate_limit 0 = no gate */

extern TimestampTz kis_clock_now(void);
extern void kis_clock_check(void);
extern TimestampTz kis_limiter_reserve(KisKeySlot *slot, double rate, TimestampTz now);
extern bool kis_limiter_holds(KisKeySlot *slot, double rate, TimestampTz reserved_at,
							  TimestampTz now);
extern void kis_limiter_release(KisKeySlot *slot);
extern void kis_limiter_back_off(KisKeySlot *slot, TimestampTz until);
extern void kis_limiter_reset(KisKeySlot *slot);

/* ----------------------------------------------------------------
 * auth.c: access tokens
 * ----------------------------------------------------------------
 */
extern int	kis_token_issue_interval;	/* GUC, seconds */

extern void kis_sha256(const void *data, size_t len, uint8 *out);
extern void kis_hash_app_key(const char *app_key, uint8 *out);
extern void kis_hash_credentials(const KisConfig *config, uint8 *out);
extern char *kis_token_request_body(const KisConfig *config);

typedef enum KisTokenState
{
	KIS_TOKEN_READY,			/* copied out */
	KIS_TOKEN_WAIT,				/* another session is issuing, or a retry */
	KIS_TOKEN_WAIT_INTERVAL,	/* the issuance interval has not passed */
	KIS_TOKEN_ISSUE				/* the caller now holds the claim: issue */
} KisTokenState;

extern KisTokenState kis_token_acquire(KisKeySlot *slot, const uint8 *creds,
									   TimestampTz now, char *token,
									   uint64 *generation, TimestampTz *wake,
									   uint64 *claim);
extern void kis_token_release_claim(KisKeySlot *slot, uint64 claim);
extern void kis_token_unanswered(KisKeySlot *slot, uint64 claim, TimestampTz now);
extern void kis_token_reset(KisKeySlot *slot);
extern void kis_token_invalidate(KisKeySlot *slot, uint64 generation);
extern bool kis_token_handed_back(KisKeySlot *slot, uint64 generation);

typedef enum KisTokenResult
{
	KIS_TOKEN_OK,
	KIS_TOKEN_TOO_SOON,			/* EGW00133: one token a minute; try later */
	KIS_TOKEN_RETRY,			/* transient (5xx, no answer): try again later */
	KIS_TOKEN_FATAL				/* credentials refused */
} KisTokenResult;

extern KisTokenResult kis_token_accept(KisKeySlot *slot, const uint8 *creds,
									   uint64 claim, long http_status,
									   const char *body, size_t len,
									   TimestampTz now, char **errdetail);

/* ----------------------------------------------------------------
 * cache.c: shared answers (in-flight sharing and the answer cache)
 * ----------------------------------------------------------------
 */
typedef enum KisCacheResult
{
	KIS_CACHE_SEND,				/* nothing to share: send it */
	KIS_CACHE_OWNER,			/* send it; others may wait for it */
	KIS_CACHE_HIT,				/* the answer is here */
	KIS_CACHE_WAIT				/* another send of it is in flight */
} KisCacheResult;

/* An answer copied out of the store */
typedef struct KisCachedAnswer
{
	char	   *body;
	size_t		len;
	long		http_status;
	char		tr_cont[4];
	TimestampTz answered_at;	/* when KIS answered (wall clock) */
} KisCachedAnswer;

extern void kis_cache_define_gucs(void);
extern void kis_cache_shmem_request(void);
extern void kis_cache_shmem_startup(void);
extern void kis_cache_key(const KisConfig *config, const char *url, const char *tr_id,
						  const char *header, uint8 *key);
extern KisCacheResult kis_cache_lookup(const uint8 *key, int ttl_ms, TimestampTz now,
									   uint64 *serial, KisCachedAnswer *answer,
									   MemoryContext cxt);
extern KisCacheResult kis_cache_poll(const uint8 *key, uint64 serial,
									 KisCachedAnswer *answer, MemoryContext cxt);
extern void kis_cache_store(const uint8 *key, uint64 serial, const char *body, size_t len,
							const char *tr_cont, long http_status, TimestampTz answered_at);
extern void kis_cache_abandon(const uint8 *key, uint64 serial);
extern int64 kis_cache_bytes(void);
extern int64 kis_cache_reset(void);

/* ----------------------------------------------------------------
 * response.c: the KIS envelope and its classification
 * ----------------------------------------------------------------
 */
typedef enum KisOutcome
{
	KIS_OUTCOME_OK,				/* rt_cd "0" with a row */
	KIS_OUTCOME_RETRY_RATE,		/* EGW00201: slow down, try again */
	KIS_OUTCOME_RETRY,			/* transient: network, 5xx, EGW00001... */
	KIS_OUTCOME_TOKEN,			/* token expired/invalid: refresh, resend */
	KIS_OUTCOME_FATAL,			/* credentials/config: fail the whole scan */
	KIS_OUTCOME_FAILED			/* this key failed: apply on_error */
} KisOutcome;

/* The problem text of a symbol KIS does not know */
#define KIS_NOT_LISTED "not listed"

typedef struct KisResponse
{
	KisOutcome	outcome;
	long		http_status;
	json_t	   *root;			/* parsed body, or NULL */
	const char *msg_cd;			/* points into root, or NULL */
	const char *msg1;
	char	   *problem;		/* our words for what went wrong, or NULL */
	const char *body;			/* a download's bytes (root is NULL) */
	size_t		body_len;
} KisResponse;

extern json_t *kis_json_parse(const char *body, size_t len);
extern json_t *kis_json_new_array(void);
extern json_t *kis_json_copy(json_t *value);
extern void kis_response_read(KisResponse *resp, long http_status,
							  const char *body, size_t len);
extern char *kis_response_summary(const KisResponse *resp);
extern char *kis_row_field_text(json_t *row, json_t *extra, const char *field);

/* Which way a value went, as KIS tells it */
typedef enum KisDirection
{
	KIS_DIR_UNKNOWN,			/* no sign, no code, or one we do not know */
	KIS_DIR_UP,
	KIS_DIR_DOWN,
	KIS_DIR_FLAT
} KisDirection;

extern KisDirection kis_sign_code_direction(const char *code);
extern KisDirection kis_signed_text_direction(const char *text);
extern char *kis_text_with_direction(char *text, KisDirection dir);
extern char *kis_row_raw_text(json_t *row);

/* ----------------------------------------------------------------
 * text.c: KIS text (UTF-8) in the database encoding
 * ----------------------------------------------------------------
 */
extern char *kis_server_text(const char *utf8);
extern char *kis_server_message(const char *utf8);

/* ----------------------------------------------------------------
 * fetch.c: the concurrent, rate-gated request engine
 * ----------------------------------------------------------------
 */
typedef struct KisFetcher KisFetcher;

/* What a step that never waits found (async scans: fetch.c, run.c) */
typedef enum KisPoll
{
	KIS_POLL_ROW,				/* something is ready */
	KIS_POLL_END,				/* nothing more will come */
	KIS_POLL_WAIT				/* not yet: wait on the scan's descriptor */
} KisPoll;

/* A finished request handed back to the scan, in completion order */
typedef struct KisCompletion
{
	dlist_node	node;
	MemoryContext cxt;			/* holds this and the parsed answer */
	void	   *arg;			/* what kis_fetch_add was given */
	KisResponse resp;
	char		tr_cont[4];		/* the answer's tr_cont header, or "" */
	int			attempts;
	TimestampTz completed_at;
} KisCompletion;

/* Counters of one scan; EXPLAIN ANALYZE shows them */
typedef struct KisFetchStats
{
	int64		requests;		/* HTTP requests sent, token requests included */
	int64		retries;
	int64		failures;		/* keys that ended failed */
	int64		rate_limited;	/* EGW00201 answers */
	int64		tokens_issued;
	int64		cache_hits;		/* answers served by the answer cache */
	int64		shared_waits;	/* requests answered by another's send */
	double		rate_wait_ms;	/* time spent with work blocked by the gate */
	double		http_ms;		/* sum of request durations */
} KisFetchStats;

extern KisFetcher *kis_fetch_begin(MemoryContext run_cxt, const KisConfig *config,
								   KisFetchStats *stats);
extern void kis_fetch_add(KisFetcher *fetcher, const char *path_and_query,
						  const char *tr_id, const char *header, void *arg);
extern void kis_fetch_add_file(KisFetcher *fetcher, const char *url, void *arg);
extern KisCompletion *kis_fetch_next(KisFetcher *fetcher);
extern void kis_fetch_forget(KisCompletion *completion);
extern KisPoll kis_fetch_poll(KisFetcher *fetcher, KisCompletion **completion);
extern int	kis_fetch_wait_fd(KisFetcher *fetcher);
extern void kis_fetch_end(KisFetcher *fetcher);

/* ----------------------------------------------------------------
 * requests.c: what a scan asks for, what each answer yields
 * ----------------------------------------------------------------
 */

/* One request key: a symbol and its market or exchange */
typedef struct KisKey
{
	char	   *symbol;
	char	   *venue;			/* market (domestic) or exchange (overseas) */
} KisKey;

/*
 * A date range, julian days, inclusive; unset bounds are open.  With
 * ndates > 0 only those days are wanted ("date IN (...)"): dates holds
 * them in ascending order, all within from..to, which then hug them.
 */
typedef struct KisRange
{
	bool		has_from;
	bool		has_to;
	int			from;
	int			to;
	int			ndates;
	int		   *dates;
} KisRange;

/* One row of an answer, or a key that failed (problem set, row NULL) */
typedef struct KisRow
{
	const KisEndpoint *ep;
	const char *hint;			/* for a failure: what to do, or NULL */
	KisKey	   *key;			/* NULL for account rows */
	json_t	   *row;
	json_t	   *extra;			/* fills fields the row lacks, or NULL */
	char	   *problem;
} KisRow;

extern int	kis_today_kst(void);
extern int	kis_requests_start(KisFetcher *fetcher, const KisConfig *config,
							   List *keys, const KisRange *range);
extern List *kis_requests_answer(KisFetcher *fetcher, KisCompletion *completion);
extern char *kis_row_value(const KisRow *row, const char *field);

/* ----------------------------------------------------------------
 * keys.c: the pushed-down key conditions, evaluated (scan and join)
 * ----------------------------------------------------------------
 */
struct PlanState;
struct ExprContext;
struct RelationData;

/* The key conditions of a plan, ready to evaluate */
typedef struct KisKeyExprs
{
	int			qual_pos[KIS_NUM_LIST_KEYS];	/* index into exprs, or -1 */
	bool		qual_is_array[KIS_NUM_LIST_KEYS];
	int			planned[KIS_NUM_LIST_KEYS]; /* values known at plan time, or -1 */
	bool		from_rows[KIS_NUM_LIST_KEYS];	/* values come from table data */
	List	   *date_quals;		/* (op, index into exprs, given in the query) */
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

extern void kis_keys_init(KisKeyExprs *ke, List *keys, List *dates, List *exprs,
						  struct PlanState *parent);
extern char *kis_key_text(Datum value, Oid type);
extern List *kis_key_strings(Datum value, Oid type, bool is_array);
extern void kis_keys_eval(const KisKeyExprs *ke, struct ExprContext *econtext,
						  struct RelationData *rel, const KisConfig *config,
						  bool with_symbols, KisRunKeys *out);
extern bool kis_run_keys_equal(const KisRunKeys *a, const KisRunKeys *b);
extern bool kis_lists_equal(List *a, List *b, list_sort_comparator cmp);
extern void kis_run_keys_copy(KisRunKeys *dst, const KisRunKeys *src);

/* ----------------------------------------------------------------
 * run.c: one run of requests, from keys to tuples (scan and join)
 * ----------------------------------------------------------------
 */
typedef struct KisRunner KisRunner;

struct TupleTableSlot;
struct ExplainState;

extern KisRunner *kis_runner_create(struct RelationData *rel, const KisConfig *config,
									List *needed, MemoryContext parent);
extern void kis_runner_start(KisRunner *runner, const KisRunKeys *keys);
extern void kis_runner_start_keys(KisRunner *runner, List *keys, const KisRange *range,
								  bool can_match, bool from_rows);
extern bool kis_runner_started(const KisRunner *runner);
extern bool kis_runner_next(KisRunner *runner, struct TupleTableSlot *slot);
extern KisPoll kis_runner_poll(KisRunner *runner, struct TupleTableSlot *slot);
extern int	kis_runner_wait_fd(KisRunner *runner);
extern void kis_runner_end(KisRunner *runner);
extern void kis_runner_explain(const KisRunner *runner, struct ExplainState *es);
extern List *kis_sort_unique_strings(List *values);

/* ----------------------------------------------------------------
 * partition.c: a partition's scan keeps to its partition bound
 * ----------------------------------------------------------------
 */
typedef struct KisPartitionFilter KisPartitionFilter;

extern KisPartitionFilter *kis_partition_filter_create(struct RelationData *rel,
													   const KisEndpoint *ep);
extern List *kis_partition_needed(const KisPartitionFilter *filter, List *needed);
extern List *kis_partition_bound_clauses(Oid relid, Index varno);
extern List *kis_partition_keys(KisPartitionFilter *filter, List *keys);
extern bool kis_partition_row_ok(KisPartitionFilter *filter, struct TupleTableSlot *slot);

/* ----------------------------------------------------------------
 * join.c: the batched join
 * ----------------------------------------------------------------
 */
extern bool kis_enable_batched_join;	/* GUC */
extern int	kis_batched_join_max_keys;	/* GUC */

extern void kis_join_init(void);

/* ----------------------------------------------------------------
 * plan.c and scan.c: the foreign scan's callbacks
 * ----------------------------------------------------------------
 */
struct AsyncRequest;
struct ForeignPath;
struct ForeignScan;
struct ForeignScanState;
struct Plan;

extern void kisGetForeignRelSize(struct PlannerInfo *root, struct RelOptInfo *baserel,
								 Oid foreigntableid);
extern void kisGetForeignPaths(struct PlannerInfo *root, struct RelOptInfo *baserel,
							   Oid foreigntableid);
extern struct ForeignScan *kisGetForeignPlan(struct PlannerInfo *root,
											 struct RelOptInfo *baserel,
											 Oid foreigntableid,
											 struct ForeignPath *best_path,
											 List *tlist, List *scan_clauses,
											 struct Plan *outer_plan);

/* Planner state of a kis foreign table, in its RelOptInfo's fdw_private */
typedef struct KisPlanState
{
	KisConfig	config;
	AttrNumber	key_attnums[KIS_NUM_KEYS];
	bool		has_qual[KIS_NUM_LIST_KEYS];
	KisKeyQual	quals[KIS_NUM_LIST_KEYS];
} KisPlanState;

extern double kis_planned_requests(const KisEndpoint *ep, double nkeys);
extern bool kisIsForeignPathAsyncCapable(struct ForeignPath *path);
extern double kis_planned_values(const KisPlanState *ps, KisKeyColumn key,
								 double if_unknown);
extern void kis_estimate_cost(const KisConfig *config, double nrequests, double rows,
							  Cost *startup, Cost *total);
extern List *kis_plan_keys(struct RelOptInfo *baserel, Oid relid, List *clauses,
						   List **exprs, List **keys, List **dates, bool *has_symbol);
extern void kis_plan_partition_dates(struct PlannerInfo *root, struct RelOptInfo *baserel,
									 Oid relid, List **exprs, List **dates);

extern void kisBeginForeignScan(struct ForeignScanState *node, int eflags);
extern struct TupleTableSlot *kisIterateForeignScan(struct ForeignScanState *node);
extern void kisReScanForeignScan(struct ForeignScanState *node);
extern void kisEndForeignScan(struct ForeignScanState *node);
extern void kisExplainForeignScan(struct ForeignScanState *node, struct ExplainState *es);
extern void kisForeignAsyncRequest(struct AsyncRequest *areq);
extern void kisForeignAsyncConfigureWait(struct AsyncRequest *areq);
extern void kisForeignAsyncNotify(struct AsyncRequest *areq);

#endif							/* KIS_FDW_H */
