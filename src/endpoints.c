/*-------------------------------------------------------------------------
 *
 * endpoints.c
 *	  The endpoint catalogue: one declarative entry per KIS API that a
 *	  foreign table can read (path, tr_ids, query parameters, where the row
 *	  is in the response, how "not listed" looks, friendly column names),
 *	  plus the checks on request keys (symbols, markets).
 *
 * Adding an endpoint means adding an entry here, not code elsewhere.
 * Field names and tr_ids come from kis-api.md.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"

#include "kis_fdw.h"

/* inquire-price, FHKST01010100 (kis-api.md §6.1) */
static const KisParamDef domestic_price_params[] = {
	{"FID_COND_MRKT_DIV_CODE", KIS_PARAM_MARKET},
	{"FID_INPUT_ISCD", KIS_PARAM_SYMBOL},
	{NULL}
};

/*
 * inquire-price carries no stock name (hts_kor_isnm is only in the chart
 * APIs), so a "name" column on this endpoint reads NULL.
 */
static const KisColumnDef domestic_price_columns[] = {
	{"price", "stck_prpr", "numeric"},
	{"change", "prdy_vrss", "numeric"},
	{"change_sign", "prdy_vrss_sign", "text"},
	{"change_rate", "prdy_ctrt", "numeric"},
	{"volume", "acml_vol", "bigint"},
	{"trade_value", "acml_tr_pbmn", "numeric"},
	{"open", "stck_oprc", "numeric"},
	{"high", "stck_hgpr", "numeric"},
	{"low", "stck_lwpr", "numeric"},
	{"base_price", "stck_sdpr", "numeric"},
	{"upper_limit", "stck_mxpr", "numeric"},
	{"lower_limit", "stck_llam", "numeric"},
	{"per", "per", "numeric"},
	{"pbr", "pbr", "numeric"},
	{"eps", "eps", "numeric"},
	{"bps", "bps", "numeric"},
	{"market_cap", "hts_avls", "numeric"},
	{"listed_shares", "lstn_stcn", "bigint"},
	{"w52_high", "w52_hgpr", "numeric"},
	{"w52_low", "w52_lwpr", "numeric"},
	{"sector", "bstp_kor_isnm", "text"},
	{"status_code", "iscd_stat_cls_code", "text"},
	{NULL}
};

static const KisEndpoint kis_endpoints[] = {
	{
		.name = "domestic_price",
		.description = "current price of a KRX/NXT-listed stock, ETF or ETN",
		.path = "/uapi/domestic-stock/v1/quotations/inquire-price",
		.tr_id_real = "FHKST01010100",
		.tr_id_virtual = "FHKST01010100",
		.params = domestic_price_params,
		.row_object = "output",
		.symbol_kind = KIS_SYMBOL_DOMESTIC,
		.has_market = true,
		.notfound_field = "stck_prpr",
		.columns = domestic_price_columns,
	},
	{NULL}
};

const KisEndpoint *
kis_endpoint_lookup(const char *name)
{
	for (const KisEndpoint *ep = kis_endpoints; ep->name; ep++)
	{
		if (strcmp(ep->name, name) == 0)
			return ep;
	}
	return NULL;
}

/* "a, b, c": for hints */
char *
kis_endpoint_names(void)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (const KisEndpoint *ep = kis_endpoints; ep->name; ep++)
		appendStringInfo(&buf, "%s%s", buf.len > 0 ? ", " : "", ep->name);
	return buf.data;
}

/* The KIS field behind a friendly column name, or NULL */
const char *
kis_endpoint_field(const KisEndpoint *ep, const char *column)
{
	for (const KisColumnDef *col = ep->columns; col->column; col++)
	{
		if (strcmp(col->column, column) == 0)
			return col->field;
	}
	return NULL;
}

const char *
kis_endpoint_tr_id(const KisEndpoint *ep, KisEnvironment env)
{
	return env == KIS_ENV_VIRTUAL ? ep->tr_id_virtual : ep->tr_id_real;
}

static bool
all_chars(const char *s, const char *allowed)
{
	return strspn(s, allowed) == strlen(s);
}

#define DIGITS "0123456789"
#define UPPER_ALNUM DIGITS "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

/*
 * Domestic short codes are 6 characters (digits, and upper-case letters in
 * the newer codes); ETNs are 'Q' followed by 6 digits (kis-api.md §6.1).
 */
bool
kis_symbol_is_valid(KisSymbolKind kind, const char *symbol)
{
	size_t		len = strlen(symbol);

	switch (kind)
	{
		case KIS_SYMBOL_DOMESTIC:
			if (len == 6)
				return all_chars(symbol, UPPER_ALNUM);
			if (len == 7 && symbol[0] == 'Q')
				return all_chars(symbol + 1, DIGITS);
			return false;
	}
	return false;
}

const char *
kis_symbol_hint(KisSymbolKind kind)
{
	switch (kind)
	{
		case KIS_SYMBOL_DOMESTIC:
			return "Domestic symbols are 6 digits or upper-case letters, e.g. '005930'; ETNs are 'Q' and 6 digits, e.g. 'Q500001'.";
	}
	return NULL;
}

/* FID_COND_MRKT_DIV_CODE: KRX, Nextrade, or both */
bool
kis_market_is_valid(const char *market)
{
	return strcmp(market, "J") == 0 || strcmp(market, "NX") == 0 ||
		strcmp(market, "UN") == 0;
}

/* RFC 3986 percent-encoding of a query value */
static void
append_url_encoded(StringInfo buf, const char *value)
{
	static const char hex[] = "0123456789ABCDEF";

	for (const unsigned char *p = (const unsigned char *) value; *p; p++)
	{
		if (isalnum(*p) || *p == '-' || *p == '_' || *p == '.' || *p == '~')
			appendStringInfoChar(buf, (char) *p);
		else
		{
			appendStringInfoChar(buf, '%');
			appendStringInfoChar(buf, hex[*p >> 4]);
			appendStringInfoChar(buf, hex[*p & 0x0F]);
		}
	}
}

/* Path and query string of one request for (symbol, market) */
char *
kis_endpoint_request_path(const KisEndpoint *ep, const char *symbol, const char *market)
{
	StringInfoData buf;
	bool		first = true;

	initStringInfo(&buf);
	appendStringInfoString(&buf, ep->path);
	for (const KisParamDef *p = ep->params; p->name; p++)
	{
		const char *value = "";

		switch (p->source)
		{
			case KIS_PARAM_LITERAL:
				value = p->literal;
				break;
			case KIS_PARAM_SYMBOL:
				value = symbol;
				break;
			case KIS_PARAM_MARKET:
				value = market;
				break;
		}
		appendStringInfo(&buf, "%c%s=", first ? '?' : '&', p->name);
		append_url_encoded(&buf, value);
		first = false;
	}
	return buf.data;
}
