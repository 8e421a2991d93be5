/*-------------------------------------------------------------------------
 *
 * options.c
 *	  The option catalogue of kis_fdw: which option goes on which object,
 *	  how its value is checked, and how a foreign table's options resolve
 *	  (table, then server, then environment defaults) into a KisConfig.
 *
 * Credentials are accepted only on a user mapping, so that they are
 * protected by PostgreSQL's user-mapping visibility rules and never
 * appear in pg_foreign_server or pg_foreign_table.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <math.h>

#include <curl/curl.h>

#include "access/reloptions.h"
#include "catalog/pg_foreign_server.h"
#include "catalog/pg_foreign_table.h"
#include "catalog/pg_user_mapping.h"
#include "catalog/pg_attribute.h"
#include "commands/defrem.h"
#include "foreign/foreign.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "auth.h"
#include "declared.h"
#include "endpoints.h"
#include "limiter.h"
#include "live.h"
#include "options.h"

/* Which catalog an option may appear in (a bit mask) */
#define ON_SERVER	0x01
#define ON_MAPPING	0x02
#define ON_TABLE	0x04
#define ON_COLUMN	0x08

typedef enum KisOptionType
{
	OPT_TEXT,
	OPT_CREDENTIAL,				/* printable ASCII, never shown */
	OPT_CHOICE,
	OPT_INT,
	OPT_REAL,
	OPT_BOOL,
	OPT_URL,
	OPT_WS_URL,					/* ws://host[:port][/path] (live.c) */
	OPT_ACCOUNT,
	OPT_ENDPOINT,
	OPT_MARKET,
	OPT_EXCHANGE,
	OPT_DECLARED				/* a declared TR's (declared.c checks it) */
} KisOptionType;

typedef struct KisOptionDef
{
	const char *name;
	int			where;
	KisOptionType type;
	const char *const *choices; /* OPT_CHOICE */
	double		min;			/* OPT_INT, OPT_REAL */
	double		max;
	bool		superuser_only;
} KisOptionDef;

static const char *const environment_choices[] = {"real", "virtual", NULL};
static const char *const on_error_choices[] = {"error", "skip", "row", NULL};
static const char *const period_choices[] = {"D", "W", "M", "Y", NULL};

static const KisOptionDef kis_options[] = {
	{"environment", ON_SERVER, OPT_CHOICE, environment_choices},
	{"base_url", ON_SERVER, OPT_URL, NULL, 0, 0, true},
	{"master_url", ON_SERVER, OPT_URL, NULL, 0, 0, true},
	{"ws_url", ON_SERVER, OPT_WS_URL, NULL, 0, 0, true},
	{"rate_limit", ON_SERVER, OPT_REAL, NULL, 0, 1000},
	{"max_concurrency", ON_SERVER, OPT_INT, NULL, 1, 64},
	{"timeout_ms", ON_SERVER, OPT_INT, NULL, 100, 600000},
	{"connect_timeout_ms", ON_SERVER, OPT_INT, NULL, 100, 60000},
	{"max_retries", ON_SERVER, OPT_INT, NULL, 0, 10},
	{"ca_file", ON_SERVER, OPT_TEXT, NULL, 0, 0, true},
	{"on_error", ON_SERVER | ON_TABLE, OPT_CHOICE, on_error_choices},
	{"async_capable", ON_SERVER | ON_TABLE, OPT_BOOL},
	{"cache_ttl_ms", ON_SERVER | ON_TABLE, OPT_INT, NULL, 0, 86400000},
	{"live_wait_ms", ON_SERVER | ON_TABLE, OPT_INT, NULL, 0, 600000},
	{"app_key", ON_MAPPING, OPT_CREDENTIAL},
	{"app_secret", ON_MAPPING, OPT_CREDENTIAL},
	{"account", ON_MAPPING, OPT_ACCOUNT},
	{"endpoint", ON_TABLE, OPT_ENDPOINT},
	{"market", ON_TABLE, OPT_MARKET},
	{"exchange", ON_TABLE, OPT_EXCHANGE},
	{"period", ON_TABLE, OPT_CHOICE, period_choices},
	{"adjusted", ON_TABLE, OPT_BOOL},
	{"path", ON_TABLE, OPT_DECLARED},
	{"tr_id", ON_TABLE, OPT_DECLARED},
	{"tr_id_virtual", ON_TABLE, OPT_DECLARED},
	{"params", ON_TABLE, OPT_DECLARED},
	{"rows", ON_TABLE, OPT_DECLARED},
	{"paging", ON_TABLE, OPT_DECLARED},
	{"field", ON_COLUMN, OPT_TEXT},
	{"param", ON_COLUMN, OPT_DECLARED},
	{"from_param", ON_COLUMN, OPT_DECLARED},
	{"to_param", ON_COLUMN, OPT_DECLARED},
	{"page_rows", ON_TABLE, OPT_INT, NULL, 1, 10000},
	{NULL}
};

/* Defaults per environment (docs/tokens-and-rate.md) */
#define KIS_REAL_URL		"https://openapi.koreainvestment.com:9443"
#define KIS_VIRTUAL_URL		"https://openapivts.koreainvestment.com:29443"
#define KIS_MASTER_URL		"https://new.real.download.dws.co.kr/common/master"	/* docs/new-tables.md */
#define KIS_REAL_WS_URL		"ws://ops.koreainvestment.com:21000"	/* docs/live.md */
#define KIS_VIRTUAL_WS_URL	"ws://ops.koreainvestment.com:31000"
#define KIS_REAL_RATE		18.0	/* documented 20/s */
#define KIS_VIRTUAL_RATE	1.8		/* documented ~2/s */

static int
catalog_to_where(Oid catalog)
{
	switch (catalog)
	{
		case ForeignServerRelationId:
			return ON_SERVER;
		case UserMappingRelationId:
			return ON_MAPPING;
		case ForeignTableRelationId:
			return ON_TABLE;
		case AttributeRelationId:
			return ON_COLUMN;
		default:
			return 0;
	}
}

static const char *
where_name(int where)
{
	switch (where)
	{
		case ON_SERVER:
			return "a foreign server";
		case ON_MAPPING:
			return "a user mapping";
		case ON_TABLE:
			return "a foreign table";
		case ON_COLUMN:
			return "a foreign table column";
		default:
			return "this object";
	}
}

/* The names of the options valid in one place, for hints */
static char *
valid_option_names(int where)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (const KisOptionDef *opt = kis_options; opt->name; opt++)
	{
		if (opt->where & where)
			appendStringInfo(&buf, "%s%s", buf.len > 0 ? ", " : "", opt->name);
	}
	return buf.data;
}

static char *
choice_names(const char *const *choices)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (const char *const *c = choices; *c; c++)
		appendStringInfo(&buf, "%s%s", buf.len > 0 ? ", " : "", *c);
	return buf.data;
}

static const KisOptionDef *
lookup_option(const char *name)
{
	for (const KisOptionDef *opt = kis_options; opt->name; opt++)
	{
		if (strcmp(opt->name, name) == 0)
			return opt;
	}
	return NULL;
}

/* "12345678-01": CANO (8 digits) - ACNT_PRDT_CD (2 digits) */
static bool
account_is_valid(const char *s)
{
	if (strlen(s) != 11 || s[8] != '-')
		return false;
	for (int i = 0; i < 11; i++)
	{
		if (i != 8 && !isdigit((unsigned char) s[i]))
			return false;
	}
	return true;
}

/* What is wrong with a base_url */
typedef enum KisUrlProblem
{
	KIS_URL_OK,
	KIS_URL_INSECURE,			/* not https, http beyond loopback, a user name */
	KIS_URL_SUFFIX				/* a query string or fragment */
} KisUrlProblem;

/*
 * https:// to any host; plain http:// only to this machine (a local test
 * server), so credentials and tokens never cross a network unencrypted.
 * The URL is parsed by libcurl, as it will be used: a prefix test would
 * take "http://127.0.0.1@elsewhere/" or "http://127.example.com/".
 * libcurl reads the scheme in any case; kis_config_for_table writes it in
 * lower case.  Request paths are appended to base_url, so it may not end
 * in a query string or fragment.
 */
static KisUrlProblem
url_problem(const char *url)
{
	CURLU	   *u = curl_url();
	char	   *scheme = NULL;
	char	   *host = NULL;
	char	   *user = NULL;
	char	   *query = NULL;
	char	   *fragment = NULL;
	KisUrlProblem problem = KIS_URL_INSECURE;

	if (u == NULL)
		return problem;
	if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
		curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
		curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
		curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_NO_USER)
	{
		if (pg_strcasecmp(scheme, "https") == 0)
			problem = KIS_URL_OK;
		else if (pg_strcasecmp(scheme, "http") == 0)
		{
			struct in_addr addr;

			if (strcmp(host, "localhost") == 0 || strcmp(host, "[::1]") == 0 ||
				(inet_pton(AF_INET, host, &addr) == 1 &&
				 (ntohl(addr.s_addr) >> 24) == 127))
				problem = KIS_URL_OK;
		}
		if (problem == KIS_URL_OK &&
			(curl_url_get(u, CURLUPART_QUERY, &query, 0) != CURLUE_NO_QUERY ||
			 curl_url_get(u, CURLUPART_FRAGMENT, &fragment, 0) != CURLUE_NO_FRAGMENT ||
			 strpbrk(url, "?#") != NULL))
			problem = KIS_URL_SUFFIX;
	}
	curl_free(scheme);
	curl_free(host);
	curl_free(user);
	curl_free(query);
	curl_free(fragment);
	curl_url_cleanup(u);
	return problem;
}

/* The error for a credential that is not printable ASCII; never shows it */
static void
credential_error(const char *name)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("option \"%s\" must be printable ASCII", name),
			 errdetail("The value holds a control character (such as a line break) or a non-ASCII byte; it is not shown."),
			 errhint("Copy the %s from the KIS portal again, without surrounding line breaks.", name)));
}

static void
check_number(const KisOptionDef *opt, const char *value)
{
	char	   *end;
	double		d;

	errno = 0;
	d = strtod(value, &end);
	if (errno != 0 || end == value || *end != '\0' || isnan(d) ||
		(opt->type == OPT_INT && d != floor(d)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid value for option \"%s\": \"%s\"", opt->name, value),
				 errhint("Use %s number between %.15g and %.15g.",
						 opt->type == OPT_INT ? "a whole" : "a", opt->min, opt->max)));
	if (d < opt->min || d > opt->max)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("value %s for option \"%s\" is out of range", value, opt->name),
				 errhint("Use a number between %.15g and %.15g.", opt->min, opt->max)));

	/*
	 * rate_limit 0 turns the client-side gate off; any other rate spaces
	 * requests at most 1/KIS_MIN_RATE seconds apart, so that a typo cannot
	 * hold a key for hours (docs/tokens-and-rate.md).
	 */
	if (strcmp(opt->name, "rate_limit") == 0 && d > 0 && d < KIS_MIN_RATE)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("value %s for option \"rate_limit\" is below the minimum of %g requests per second",
						value, KIS_MIN_RATE),
				 errhint("Use 0 to turn the client-side rate limit off, or a rate of at least %g.",
						 KIS_MIN_RATE)));
}

static void
check_value(const KisOptionDef *opt, const char *value)
{
	switch (opt->type)
	{
		case OPT_TEXT:
			if (value[0] == '\0')
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("option \"%s\" must not be empty", opt->name)));
			break;
		case OPT_CREDENTIAL:
			if (value[0] == '\0')
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("option \"%s\" must not be empty", opt->name)));
			if (!kis_is_printable_ascii(value))
				credential_error(opt->name);
			break;
		case OPT_CHOICE:
			for (const char *const *c = opt->choices; *c; c++)
			{
				if (strcmp(*c, value) == 0)
					return;
			}
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid value for option \"%s\": \"%s\"", opt->name, value),
					 errhint("Valid values are: %s.", choice_names(opt->choices))));
			break;
		case OPT_INT:
		case OPT_REAL:
			check_number(opt, value);
			break;
		case OPT_BOOL:
			{
				bool		b;

				if (!parse_bool(value, &b))
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("invalid value for option \"%s\": \"%s\"", opt->name, value),
							 errhint("Use true or false.")));
			}
			break;
		case OPT_URL:
			{
				KisUrlProblem problem = url_problem(value);

				if (problem != KIS_URL_OK)
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("invalid value for option \"%s\": \"%s\"", opt->name, value),
							 problem == KIS_URL_SUFFIX ?
							 errdetail("kis_fdw appends each request's path and query to base_url, so it may not carry a query string or fragment.") :
							 errdetail("kis_fdw talks to KIS over https://; plain http:// is allowed only to a loopback address, and a URL may not carry a user name."),
							 problem == KIS_URL_SUFFIX ?
							 errhint("Use only the scheme, host, port and an optional path, such as %s.", KIS_REAL_URL) :
							 errhint("Use an https:// URL such as %s.", KIS_REAL_URL)));
			}
			break;
		case OPT_WS_URL:
			if (!kis_live_url_split(value, NULL, NULL, NULL))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid value for option \"%s\": \"%s\"", opt->name, value),
						 errdetail("KIS's real-time endpoint is plain ws://, with a host, an optional port and path, and no user name, query or fragment."),
						 errhint("Use a URL such as %s.", KIS_REAL_WS_URL)));
			break;
		case OPT_ACCOUNT:
			if (!account_is_valid(value))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid value for option \"account\""),
						 errdetail("An account is 8 digits, a hyphen and the 2-digit product code."),
						 errhint("Write it as in the KIS app, e.g. '12345678-01'.")));
			break;
		case OPT_ENDPOINT:
			if (kis_endpoint_lookup(value) == NULL)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("unknown endpoint \"%s\"", value),
						 errhint("Valid endpoints are: %s.", kis_endpoint_names())));
			break;
		case OPT_EXCHANGE:
			if (!kis_exchange_is_valid(value))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid value for option \"exchange\": \"%s\"", value),
						 errhint("Valid exchanges are: %s.", choice_names(kis_exchange_codes))));
			break;
		case OPT_DECLARED:
			kis_declared_check_option(opt->name, value);
			break;
		case OPT_MARKET:
			if (!kis_market_is_valid(value))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid value for option \"market\": \"%s\"", value),
						 errhint("Valid markets are: J (KRX), NX (Nextrade), UN (both).")));
			break;
	}
}

PG_FUNCTION_INFO_V1(kis_fdw_validator);

/*
 * Validate the options of a server, user mapping, foreign table or column.
 * The list is the complete set the object will have, so required options
 * can be checked here.
 */
Datum
kis_fdw_validator(PG_FUNCTION_ARGS)
{
	List	   *options = untransformRelOptions(PG_GETARG_DATUM(0));
	int			where = catalog_to_where(PG_GETARG_OID(1));
	bool		have_endpoint = false;
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);
		const KisOptionDef *opt = lookup_option(def->defname);
		char	   *value = defGetString(def);

		if (opt == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
					 errmsg("invalid option \"%s\" for %s", def->defname, where_name(where)),
					 errhint("Valid options here are: %s.", valid_option_names(where))));
		if ((opt->where & where) == 0)
		{
			if (opt->where == ON_MAPPING)
				ereport(ERROR,
						(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
						 errmsg("option \"%s\" is accepted only on a user mapping", opt->name),
						 errhint("Credentials go in CREATE USER MAPPING FOR CURRENT_USER SERVER ... OPTIONS (app_key '...', app_secret '...').")));
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
					 errmsg("option \"%s\" is not valid for %s", opt->name, where_name(where)),
					 errhint("Valid options here are: %s.", valid_option_names(where))));
		}
		if (opt->superuser_only && !superuser())
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("only a superuser can set option \"%s\"", opt->name)));
		check_value(opt, value);
		if (strcmp(opt->name, "endpoint") == 0)
			have_endpoint = true;
	}

	if (where == ON_TABLE)
		kis_declared_check_table(options);
	if (where == ON_COLUMN)
		kis_declared_check_column(options);
	if (where == ON_TABLE && !have_endpoint && !kis_declared_is(options))
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
				 errmsg("a kis_fdw foreign table needs an \"endpoint\" option"),
				 errhint("Add OPTIONS (endpoint '...'); valid endpoints are: %s.",
						 kis_endpoint_names())));

	PG_RETURN_VOID();
}

static KisOnError
parse_on_error(const char *value)
{
	if (strcmp(value, "skip") == 0)
		return KIS_ON_ERROR_SKIP;
	if (strcmp(value, "row") == 0)
		return KIS_ON_ERROR_ROW;
	return KIS_ON_ERROR_ERROR;
}

const char *
kis_on_error_name(KisOnError mode)
{
	return on_error_choices[mode];
}

/* "HTTP://..." as "http://...": transport.c and the token cache compare schemes */
static char *
lower_scheme(char *url)
{
	for (char *c = url; *c && *c != ':'; c++)
		*c = pg_ascii_tolower((unsigned char) *c);
	return url;
}

/*
 * "scheme://host:port" of a URL (the validator has parsed it): who issues
 * a token, and so part of whose it is (auth.c).  Names of one host that
 * differ (localhost, 127.0.0.1) are different origins.
 */
static char *
url_origin(const char *url)
{
	CURLU	   *u = curl_url();
	char	   *scheme = NULL;
	char	   *host = NULL;
	char	   *port = NULL;
	char	   *origin;

	if (u == NULL ||
		curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
		curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
		curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
		curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK)
		origin = pstrdup(url);	/* unreachable: the validator parsed it */
	else
	{
		origin = psprintf("%s://%s:%s", scheme, host, port);
		for (char *c = origin; *c; c++)
			*c = pg_ascii_tolower((unsigned char) *c);
	}
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
	return origin;
}

static char *
strip_trailing_slash(char *url)
{
	size_t		len = strlen(url);

	while (len > 0 && url[len - 1] == '/')
		url[--len] = '\0';
	return url;
}

/*
 * Resolve the options of a server, with the defaults of its environment
 * and of a table that sets none.
 */
void
kis_config_for_server(Oid serverid, KisConfig *config)
{
	ForeignServer *server = GetForeignServer(serverid);
	bool		have_url = false;
	bool		have_rate = false;
	ListCell   *lc;

	memset(config, 0, sizeof(KisConfig));
	config->serverid = server->serverid;
	config->environment = KIS_ENV_REAL;
	config->max_concurrency = 8;
	config->timeout_ms = 10000;
	config->connect_timeout_ms = 3000;
	config->max_retries = 3;
	config->on_error = KIS_ON_ERROR_ERROR;
	config->market = "J";
	config->exchange = "NAS";
	config->period = "D";
	config->adjusted = true;
	config->async_capable = true;
	config->live_wait_ms = 2000;

	foreach(lc, server->options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);
		char	   *value = defGetString(def);

		if (strcmp(def->defname, "environment") == 0)
			config->environment = strcmp(value, "virtual") == 0 ? KIS_ENV_VIRTUAL : KIS_ENV_REAL;
		else if (strcmp(def->defname, "base_url") == 0)
		{
			config->base_url = strip_trailing_slash(lower_scheme(pstrdup(value)));
			have_url = true;
		}
		else if (strcmp(def->defname, "master_url") == 0)
			config->master_url = strip_trailing_slash(lower_scheme(pstrdup(value)));
		else if (strcmp(def->defname, "ws_url") == 0)
			config->ws_url = pstrdup(value);
		else if (strcmp(def->defname, "rate_limit") == 0)
		{
			config->rate_limit = strtod(value, NULL);
			have_rate = true;
		}
		else if (strcmp(def->defname, "max_concurrency") == 0)
			config->max_concurrency = atoi(value);
		else if (strcmp(def->defname, "timeout_ms") == 0)
			config->timeout_ms = atoi(value);
		else if (strcmp(def->defname, "connect_timeout_ms") == 0)
			config->connect_timeout_ms = atoi(value);
		else if (strcmp(def->defname, "max_retries") == 0)
			config->max_retries = atoi(value);
		else if (strcmp(def->defname, "ca_file") == 0)
			config->ca_file = pstrdup(value);
		else if (strcmp(def->defname, "on_error") == 0)
			config->on_error = parse_on_error(value);
		else if (strcmp(def->defname, "async_capable") == 0)
			(void) parse_bool(value, &config->async_capable);
		else if (strcmp(def->defname, "cache_ttl_ms") == 0)
			config->cache_ttl_ms = atoi(value);
		else if (strcmp(def->defname, "live_wait_ms") == 0)
			config->live_wait_ms = atoi(value);
	}
	if (config->ws_url == NULL)
		config->ws_url = pstrdup(config->environment == KIS_ENV_VIRTUAL ?
								 KIS_VIRTUAL_WS_URL : KIS_REAL_WS_URL);
	if (!have_url)
		config->base_url = pstrdup(config->environment == KIS_ENV_VIRTUAL ?
								   KIS_VIRTUAL_URL : KIS_REAL_URL);
	config->origin = url_origin(config->base_url);
	if (config->master_url == NULL)
		config->master_url = pstrdup(KIS_MASTER_URL);
	if (!have_rate)
		config->rate_limit = config->environment == KIS_ENV_VIRTUAL ?
			KIS_VIRTUAL_RATE : KIS_REAL_RATE;
}

/*
 * Resolve the options of a foreign table and its server.  Credentials are
 * left out: the planner does not need them, and plain EXPLAIN must work
 * without a user mapping.
 */
void
kis_config_for_table(Oid foreigntableid, KisConfig *config)
{
	ForeignTable *table = GetForeignTable(foreigntableid);
	ForeignServer *server = GetForeignServer(table->serverid);
	ListCell   *lc;

	kis_config_for_server(server->serverid, config);
	if (kis_declared_is(table->options))
		config->endpoint = kis_declared_endpoint(foreigntableid, table->options);
	foreach(lc, table->options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);
		char	   *value = defGetString(def);

		if (strcmp(def->defname, "endpoint") == 0)
			config->endpoint = kis_endpoint_lookup(value);
		else if (strcmp(def->defname, "on_error") == 0)
			config->on_error = parse_on_error(value);
		else if (strcmp(def->defname, "market") == 0)
			config->market = pstrdup(value);
		else if (strcmp(def->defname, "exchange") == 0)
			config->exchange = pstrdup(value);
		else if (strcmp(def->defname, "period") == 0)
			config->period = pstrdup(value);
		else if (strcmp(def->defname, "adjusted") == 0)
			(void) parse_bool(value, &config->adjusted);
		else if (strcmp(def->defname, "async_capable") == 0)
			(void) parse_bool(value, &config->async_capable);
		else if (strcmp(def->defname, "cache_ttl_ms") == 0)
			config->cache_ttl_ms = atoi(value);
		else if (strcmp(def->defname, "live_wait_ms") == 0)
			config->live_wait_ms = atoi(value);
	}

	/* The validator requires it, but a table may predate a rename. */
	if (config->endpoint == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
				 errmsg("foreign table \"%s\" has no valid \"endpoint\" option",
						get_rel_name(foreigntableid)),
				 errhint("Valid endpoints are: %s.", kis_endpoint_names())));
	if (config->environment == KIS_ENV_VIRTUAL &&
		kis_endpoint_tr_id(config->endpoint, KIS_ENV_VIRTUAL) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_ERROR),
				 errmsg("endpoint %s is available on real accounts only", config->endpoint->name),
				 errdetail("KIS offers %s (tr_id %s) to real accounts, not in the virtual environment of server \"%s\".",
						   config->endpoint->path, kis_endpoint_tr_id(config->endpoint, KIS_ENV_REAL),
						   server->servername),
				 errhint("Read it through a server with environment 'real'.")));
	if (!kis_endpoint_has_period(config->endpoint, config->period))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("endpoint %s has no yearly bars", config->endpoint->name),
				 errhint("Set the table's period option to D, W or M.")));
}

/* Whether GetUserMapping would find a mapping (the user's, or PUBLIC's) */
static bool
user_mapping_exists(Oid userid, Oid serverid)
{
	return SearchSysCacheExists2(USERMAPPINGUSERSERVER, ObjectIdGetDatum(userid),
								 ObjectIdGetDatum(serverid)) ||
		SearchSysCacheExists2(USERMAPPINGUSERSERVER, ObjectIdGetDatum(InvalidOid),
							  ObjectIdGetDatum(serverid));
}

/* The scan's copies of the credentials, wiped when its memory goes */
typedef struct KisCredentialCopies
{
	MemoryContextCallback cb;
	char	   *app_key;
	char	   *app_secret;
} KisCredentialCopies;

static void
wipe_credential_copies(void *arg)
{
	KisCredentialCopies *copies = (KisCredentialCopies *) arg;

	if (copies->app_key != NULL)
		explicit_bzero(copies->app_key, strlen(copies->app_key));
	if (copies->app_secret != NULL)
		explicit_bzero(copies->app_secret, strlen(copies->app_secret));
}

/* A copy of a user mapping option's value; the mapping's own copy is wiped */
static char *
take_secret(DefElem *def)
{
	char	   *value = defGetString(def);
	char	   *copy = pstrdup(value);

	explicit_bzero(value, strlen(value));
	return copy;
}

/*
 * Add the user mapping's credentials.  A missing mapping is reported by
 * GetUserMapping itself; missing options get a hint naming the fix.  A
 * public endpoint needs no mapping: without one, app_key stays NULL and
 * the scan runs without a key (no token, no app-key slot).
 *
 * The copies of app_key and app_secret (GetUserMapping's, then ours in
 * the current memory context) are wiped before their memory is freed,
 * like every other copy a scan makes (docs/tokens-and-rate.md).
 */
void
kis_config_add_credentials(KisConfig *config, Oid userid)
{
	UserMapping *um;
	ListCell   *lc;
	KisCredentialCopies *copies;

	if (config->endpoint != NULL && kis_endpoint_is_public(config->endpoint) &&
		!user_mapping_exists(userid, config->serverid))
		return;
	copies = palloc0(sizeof(KisCredentialCopies));
	copies->cb.func = wipe_credential_copies;
	copies->cb.arg = copies;
	MemoryContextRegisterResetCallback(CurrentMemoryContext, &copies->cb);
	um = GetUserMapping(userid, config->serverid);

	foreach(lc, um->options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);

		if (strcmp(def->defname, "app_key") == 0)
			config->app_key = copies->app_key = take_secret(def);
		else if (strcmp(def->defname, "app_secret") == 0)
			config->app_secret = copies->app_secret = take_secret(def);
		else if (strcmp(def->defname, "account") == 0)
			config->account = pstrdup(defGetString(def));
	}
	if (config->app_key == NULL || config->app_secret == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
				 errmsg("user mapping for server \"%s\" has no %s",
						GetForeignServer(config->serverid)->servername,
						config->app_key == NULL ? "app_key" : "app_secret"),
				 errhint("Add it with ALTER USER MAPPING FOR CURRENT_USER SERVER ... OPTIONS (ADD app_key '...', ADD app_secret '...').")));
	/* a mapping made before the validator checked them (docs/security.md) */
	if (!kis_is_printable_ascii(config->app_key))
		credential_error("app_key");
	if (!kis_is_printable_ascii(config->app_secret))
		credential_error("app_secret");
	if (config->account != NULL && !account_is_valid(config->account))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid value for option \"account\"")));
	if (config->endpoint != NULL && kis_endpoint_needs_account(config->endpoint) &&
		config->account == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
				 errmsg("endpoint %s needs an account in the user mapping for server \"%s\"",
						config->endpoint->name,
						GetForeignServer(config->serverid)->servername),
				 errhint("ALTER USER MAPPING FOR CURRENT_USER SERVER ... OPTIONS (ADD account '12345678-01');")));
}

/* The column's "field" option, or NULL */
char *
kis_column_field_option(Oid relid, AttrNumber attnum)
{
	ListCell   *lc;

	foreach(lc, GetForeignColumnOptions(relid, attnum))
	{
		DefElem    *def = (DefElem *) lfirst(lc);

		if (strcmp(def->defname, "field") == 0)
			return pstrdup(defGetString(def));
	}
	return NULL;
}
