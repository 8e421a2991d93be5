/*-------------------------------------------------------------------------
 *
 * endpoints.h
 *	  The endpoint catalogue: one declarative entry per KIS API (or stock
 *	  master file), naming its path, tr_id, parameters, row shape, paging
 *	  and friendly columns, and the checks of request keys (endpoints.c).
 *	  Each field is described in docs/adding-an-endpoint.md.
 *
 * src/endpoints.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef KIS_ENDPOINTS_H
#define KIS_ENDPOINTS_H

#include "live.h"
#include "options.h"
#include "quals.h"

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
	KIS_SYMBOL_OVERSEAS,		/* ticker: upper-case letters, digits, . / - */
	KIS_SYMBOL_PARAM			/* a declared table's param value: any text */
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
	KIS_SOURCE_MASTER_FILE,		/* a stock master file: one download per
								 * market from master_url (master.c) */
	KIS_SOURCE_STREAM,			/* a live stream (live.c): the latest
								 * record per key, from shared memory */
	KIS_SOURCE_RING				/* the live tick ring: every trade received,
								 * "seq >" pushed down */
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
	const char *echo_member;	/* an object of the answer that names the */
	const char *echo_field;		/* symbol asked for in this field, after */
	int			echo_skip;		/* echo_skip characters; another symbol there
								 * refuses the answer (docs/security.md) */
	KisPaging	paging;
	int			page_rows;		/* a full page (date paging) */
	const char *const *restart_codes;	/* cursor paging: msg_cd that mean
										 * "start the listing over" */
	const char *restart_hint;	/* the hint when one says so again */
	const char *ctx_fk_member;	/* cursor paging: the answer's keys (NULL: */
	const char *ctx_nk_member;	/* ctx_area_fk100, ctx_area_nk100) */
	const KisColumnDef *columns;	/* friendly map, terminated by NULL */

	/* a live table (KIS_SOURCE_STREAM) */
	KisLiveKind stream;
	const char *fallback;		/* the REST endpoint before a first tick */
	const char *row_source;		/* rows carry source = this and received_at */

	/* a table declared in SQL (declared.c); unset in a catalogue entry */
	bool		declared;
	const char *key_columns[KIS_NUM_KEYS];	/* its key columns' names */
	const char *key_defaults[KIS_NUM_LIST_KEYS];	/* their values in params */
} KisEndpoint;

/*
 * How an endpoint's requests are keyed; the accessors below answer every
 * question about an endpoint's shape, so that no other file tests its
 * flags (docs/adding-an-endpoint.md).
 */
typedef enum KisKeying
{
	KIS_KEYING_SYMBOL,			/* per symbol and venue (market or exchange),
								 * batch_size of them per request */
	KIS_KEYING_MARKET,			/* per market of the endpoint's list; all of
								 * them without a condition */
	KIS_KEYING_ACCOUNT,			/* one listing of the user mapping's account */
	KIS_KEYING_LISTING			/* one listing, no key */
} KisKeying;

extern const KisEndpoint kis_endpoints[];
extern const char *const kis_exchange_codes[];

extern const KisEndpoint *kis_endpoint_lookup(const char *name);
extern char *kis_endpoint_names(void);
extern const char *kis_endpoint_field(const KisEndpoint *ep, const char *column);
extern const KisColumnDef *kis_endpoint_column_of_field(const KisEndpoint *ep,
														const char *field);
extern List *kis_endpoint_rule_fields(const KisEndpoint *ep, List *fields);
extern const char *kis_endpoint_tr_id(const KisEndpoint *ep, KisEnvironment env);
extern bool kis_symbol_is_valid(KisSymbolKind kind, const char *symbol);
extern const char *kis_symbol_hint(KisSymbolKind kind);
extern bool kis_market_is_valid(const char *market);
extern bool kis_endpoint_market_is_valid(const KisEndpoint *ep, const char *market);
extern char *kis_endpoint_market_hint(const KisEndpoint *ep);
extern bool kis_exchange_is_valid(const char *exchange);
extern char *kis_endpoint_table_ddl(const KisEndpoint *ep, const char *server_name);

/* The endpoint's shape (endpoints.c) */
extern KisKeying kis_endpoint_keying(const KisEndpoint *ep);
extern bool kis_endpoint_per_symbol(const KisEndpoint *ep);
extern bool kis_endpoint_has_key(const KisEndpoint *ep, KisKeyColumn key);
extern KisKeyColumn kis_endpoint_venue_key(const KisEndpoint *ep);
extern const char *kis_endpoint_venue_name(const KisEndpoint *ep);
extern const char *kis_endpoint_default_venue(const KisEndpoint *ep,
											  const KisConfig *config);
extern bool kis_endpoint_venue_is_valid(const KisEndpoint *ep, const char *venue);
extern bool kis_endpoint_needs_account(const KisEndpoint *ep);
extern bool kis_endpoint_is_public(const KisEndpoint *ep);
extern bool kis_endpoint_from_master_file(const KisEndpoint *ep);
extern bool kis_endpoint_streamed(const KisEndpoint *ep);
extern bool kis_endpoint_ringed(const KisEndpoint *ep);
extern const KisEndpoint *kis_endpoint_fallback(const KisEndpoint *ep);
extern KisRowShape kis_endpoint_rows_shape(const KisEndpoint *ep);
extern bool kis_endpoint_symbol_is_valid(const KisEndpoint *ep, const char *symbol);
extern const char *kis_endpoint_symbol_hint(const KisEndpoint *ep);
extern char *kis_endpoint_venue_hint(const KisEndpoint *ep);
extern bool kis_endpoint_has_period(const KisEndpoint *ep, const char *period);
extern const char *kis_endpoint_ctx_fk_member(const KisEndpoint *ep);
extern const char *kis_endpoint_ctx_nk_member(const KisEndpoint *ep);
extern int	kis_endpoint_nmarkets(const KisEndpoint *ep);
extern const char *kis_endpoint_market(const KisEndpoint *ep, int i);
extern int	kis_endpoint_keys_per_request(const KisEndpoint *ep);
extern double kis_endpoint_rows_per_key(const KisEndpoint *ep);
extern KisPaging kis_endpoint_paging(const KisEndpoint *ep);
extern const char *kis_paging_name(KisPaging paging);
extern char *kis_endpoint_paging_detail(const KisEndpoint *ep);
extern const char *kis_endpoint_key_columns(const KisEndpoint *ep);
extern bool kis_endpoint_private_answers(const KisEndpoint *ep);
extern bool kis_endpoint_is_declared(const KisEndpoint *ep);
extern const char *kis_endpoint_key_column(const KisEndpoint *ep, KisKeyColumn key);
extern bool kis_endpoint_key_required(const KisEndpoint *ep, KisKeyColumn key);
extern const char *kis_endpoint_key_default(const KisEndpoint *ep, KisKeyColumn key);

#endif							/* KIS_ENDPOINTS_H */
