/*-------------------------------------------------------------------------
 *
 * endpoints.c
 *	  The endpoint catalogue: one declarative entry per KIS API that a
 *	  foreign table can read — path, tr_ids, query parameters, where the
 *	  rows are in the answer, how requests batch and page, how "not listed"
 *	  looks, friendly column names and types — plus the checks on request
 *	  keys (symbols, markets, exchanges) and the DDL that IMPORT FOREIGN
 *	  SCHEMA emits for each entry.
 *
 * Adding an endpoint means adding an entry here, not code elsewhere:
 * docs/adding-an-endpoint.md says how, field by field.  Field names and
 * tr_ids come from docs/kis-api.md §6.  Other files ask the shape
 * accessors below ("The endpoint's shape"), never the entry's flags.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "utils/builtins.h"

#include "endpoints.h"
#include "master.h"
#include "options.h"

/* ---- domestic_price: inquire-price FHKST01010100 ---- */
static const KisParamDef domestic_price_params[] = {
	{"FID_COND_MRKT_DIV_CODE", KIS_PARAM_MARKET},
	{"FID_INPUT_ISCD", KIS_PARAM_SYMBOL},
	{NULL}
};

/* inquire-price carries no stock name, so a "name" column reads NULL */
static const KisColumnDef domestic_price_columns[] = {
	{"price", "stck_prpr", "numeric"},
	{"change", "prdy_vrss", "numeric", "prdy_vrss_sign", "prdy_ctrt"},
	{"change_sign", "prdy_vrss_sign", "text"},
	{"change_rate", "prdy_ctrt", "numeric", "prdy_vrss_sign", "prdy_vrss"},
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

/*
 * ---- domestic_multi_price: intstock-multprice FHKST11300006 ----
 * Change and change rate are reported to come unsigned at times, with the
 * direction in prdy_vrss_sign (docs/kis-answers.md).
 */
static const KisParamDef domestic_multi_price_params[] = {
	{"FID_COND_MRKT_DIV_CODE_", KIS_PARAM_BATCH_MARKET},
	{"FID_INPUT_ISCD_", KIS_PARAM_BATCH_SYMBOL},
	{NULL}
};

static const KisColumnDef domestic_multi_price_columns[] = {
	{"name", "inter_kor_isnm", "text"},
	{"price", "inter2_prpr", "numeric"},
	{"change", "inter2_prdy_vrss", "numeric", "prdy_vrss_sign", "prdy_ctrt"},
	{"change_sign", "prdy_vrss_sign", "text"},
	{"change_rate", "prdy_ctrt", "numeric", "prdy_vrss_sign", "inter2_prdy_vrss"},
	{"volume", "acml_vol", "bigint"},
	{"open", "inter2_oprc", "numeric"},
	{"high", "inter2_hgpr", "numeric"},
	{"low", "inter2_lwpr", "numeric"},
	{"upper_limit", "inter2_mxpr", "numeric"},
	{"lower_limit", "inter2_llam", "numeric"},
	{"ask", "inter2_askp", "numeric"},
	{"bid", "inter2_bidp", "numeric"},
	{NULL}
};

/*
 * intstock-multprice takes J and NX only (KIS's samples list no UN, unlike
 * inquire-price): UN is refused before anything is sent (docs/kis-answers.md).
 */
static const char *const multi_price_markets[] = {"J", "NX", NULL};

/*
 * ---- overseas_price: price HHDFS00000300 ----
 * Real answers send diff without its sign ("sign" and "rate" carry the
 * direction), and an empty "last" for a listed symbol outside trading hours;
 * only an empty "rsym" means no such listing (docs/kis-answers.md).
 */
static const KisParamDef overseas_price_params[] = {
	{"AUTH", KIS_PARAM_LITERAL, ""},
	{"EXCD", KIS_PARAM_EXCHANGE},
	{"SYMB", KIS_PARAM_SYMBOL},
	{NULL}
};

static const KisColumnDef overseas_price_columns[] = {
	{"price", "last", "numeric"},
	{"change", "diff", "numeric", "sign", "rate"},
	{"change_sign", "sign", "text"},
	{"change_rate", "rate", "numeric", "sign", "diff"},
	{"volume", "tvol", "bigint"},
	{"trade_value", "tamt", "numeric"},
	{"base_price", "base", "numeric"},
	{"prev_volume", "pvol", "bigint"},
	{"decimals", "zdiv", "int"},
	{"realtime_symbol", "rsym", "text"},
	{"orderable", "ordy", "text"},
	{NULL}
};

/* ---- domestic_daily: inquire-daily-itemchartprice FHKST03010100 ---- */
static const KisParamDef domestic_daily_params[] = {
	{"FID_COND_MRKT_DIV_CODE", KIS_PARAM_MARKET},
	{"FID_INPUT_ISCD", KIS_PARAM_SYMBOL},
	{"FID_INPUT_DATE_1", KIS_PARAM_DATE_FROM},
	{"FID_INPUT_DATE_2", KIS_PARAM_DATE_TO},
	{"FID_PERIOD_DIV_CODE", KIS_PARAM_PERIOD},
	{"FID_ORG_ADJ_PRC", KIS_PARAM_ORIGINAL_PRICE},
	{NULL}
};

static const KisColumnDef domestic_daily_columns[] = {
	{"date", "stck_bsop_date", "date"},
	{"open", "stck_oprc", "numeric"},
	{"high", "stck_hgpr", "numeric"},
	{"low", "stck_lwpr", "numeric"},
	{"close", "stck_clpr", "numeric"},
	{"volume", "acml_vol", "bigint"},
	{"trade_value", "acml_tr_pbmn", "numeric"},
	{"change", "prdy_vrss", "numeric", "prdy_vrss_sign"},
	{"change_sign", "prdy_vrss_sign", "text"},
	{"ex_code", "flng_cls_code", "text"},
	{"split_rate", "prtt_rate", "numeric"},
	{"name", "hts_kor_isnm", "text"},	/* from output1 */
	{NULL}
};

/* ---- overseas_daily: dailyprice HHDFS76240000; diff unsigned too ---- */
static const KisParamDef overseas_daily_params[] = {
	{"AUTH", KIS_PARAM_LITERAL, ""},
	{"EXCD", KIS_PARAM_EXCHANGE},
	{"SYMB", KIS_PARAM_SYMBOL},
	{"GUBN", KIS_PARAM_PERIOD_NUMBER},
	{"BYMD", KIS_PARAM_DATE_TO},
	{"MODP", KIS_PARAM_ADJUSTED_FLAG},
	{"KEYB", KIS_PARAM_LITERAL, ""},
	{NULL}
};

static const KisColumnDef overseas_daily_columns[] = {
	{"date", "xymd", "date"},
	{"open", "open", "numeric"},
	{"high", "high", "numeric"},
	{"low", "low", "numeric"},
	{"close", "clos", "numeric"},
	{"volume", "tvol", "bigint"},
	{"trade_value", "tamt", "numeric"},
	{"change", "diff", "numeric", "sign", "rate"},
	{"change_sign", "sign", "text"},
	{"change_rate", "rate", "numeric", "sign", "diff"},
	{NULL}
};

/* The ten levels of an order book, as REST and the stream name them */
#define KIS_BOOK_LEVEL_COLUMNS \
	{"ask1", "askp1", "numeric"}, {"ask2", "askp2", "numeric"}, \
	{"ask3", "askp3", "numeric"}, {"ask4", "askp4", "numeric"}, \
	{"ask5", "askp5", "numeric"}, {"ask6", "askp6", "numeric"}, \
	{"ask7", "askp7", "numeric"}, {"ask8", "askp8", "numeric"}, \
	{"ask9", "askp9", "numeric"}, {"ask10", "askp10", "numeric"}, \
	{"bid1", "bidp1", "numeric"}, {"bid2", "bidp2", "numeric"}, \
	{"bid3", "bidp3", "numeric"}, {"bid4", "bidp4", "numeric"}, \
	{"bid5", "bidp5", "numeric"}, {"bid6", "bidp6", "numeric"}, \
	{"bid7", "bidp7", "numeric"}, {"bid8", "bidp8", "numeric"}, \
	{"bid9", "bidp9", "numeric"}, {"bid10", "bidp10", "numeric"}, \
	{"ask_qty1", "askp_rsqn1", "bigint"}, {"ask_qty2", "askp_rsqn2", "bigint"}, \
	{"ask_qty3", "askp_rsqn3", "bigint"}, {"ask_qty4", "askp_rsqn4", "bigint"}, \
	{"ask_qty5", "askp_rsqn5", "bigint"}, {"ask_qty6", "askp_rsqn6", "bigint"}, \
	{"ask_qty7", "askp_rsqn7", "bigint"}, {"ask_qty8", "askp_rsqn8", "bigint"}, \
	{"ask_qty9", "askp_rsqn9", "bigint"}, {"ask_qty10", "askp_rsqn10", "bigint"}, \
	{"bid_qty1", "bidp_rsqn1", "bigint"}, {"bid_qty2", "bidp_rsqn2", "bigint"}, \
	{"bid_qty3", "bidp_rsqn3", "bigint"}, {"bid_qty4", "bidp_rsqn4", "bigint"}, \
	{"bid_qty5", "bidp_rsqn5", "bigint"}, {"bid_qty6", "bidp_rsqn6", "bigint"}, \
	{"bid_qty7", "bidp_rsqn7", "bigint"}, {"bid_qty8", "bidp_rsqn8", "bigint"}, \
	{"bid_qty9", "bidp_rsqn9", "bigint"}, {"bid_qty10", "bidp_rsqn10", "bigint"},

/* ---- domestic_orderbook: inquire-asking-price-exp-ccn FHKST01010200 ---- */
static const KisColumnDef domestic_orderbook_columns[] = {
	{"quote_time", "aspr_acpt_hour", "text"},
	KIS_BOOK_LEVEL_COLUMNS
	{"total_ask_qty", "total_askp_rsqn", "bigint"},
	{"total_bid_qty", "total_bidp_rsqn", "bigint"},
	{"expected_price", "antc_cnpr", "numeric"},	/* from output2 */
	{"expected_volume", "antc_vol", "bigint"},
	{"price", "stck_prpr", "numeric"},
	{NULL}
};

/* ---- domestic_holdings: inquire-balance TTTC8434R / VTTC8434R ---- */
static const KisParamDef domestic_holdings_params[] = {
	{"CANO", KIS_PARAM_CANO},
	{"ACNT_PRDT_CD", KIS_PARAM_ACNT_PRDT_CD},
	{"AFHR_FLPR_YN", KIS_PARAM_LITERAL, "N"},
	{"OFL_YN", KIS_PARAM_LITERAL, ""},
	{"INQR_DVSN", KIS_PARAM_LITERAL, "02"},
	{"UNPR_DVSN", KIS_PARAM_LITERAL, "01"},
	{"FUND_STTL_ICLD_YN", KIS_PARAM_LITERAL, "N"},
	{"FNCG_AMT_AUTO_RDPT_YN", KIS_PARAM_LITERAL, "N"},
	{"PRCS_DVSN", KIS_PARAM_LITERAL, "00"},
	{"CTX_AREA_FK100", KIS_PARAM_CTX_FK},
	{"CTX_AREA_NK100", KIS_PARAM_CTX_NK},
	{NULL}
};

/*
 * SYDB0050 (rt_cd "7") "data changed since the query, query again" comes
 * when the account changes between two pages (docs/kis-answers.md).
 */
static const char *const domestic_holdings_restart_codes[] = {"SYDB0050", NULL};

static const KisColumnDef domestic_holdings_columns[] = {
	{"symbol", "pdno", "text"},
	{"name", "prdt_name", "text"},
	{"qty", "hldg_qty", "bigint"},
	{"orderable_qty", "ord_psbl_qty", "bigint"},
	{"avg_price", "pchs_avg_pric", "numeric"},
	{"cost", "pchs_amt", "numeric"},
	{"price", "prpr", "numeric"},
	{"value", "evlu_amt", "numeric"},
	{"profit", "evlu_pfls_amt", "numeric"},
	{"profit_rate", "evlu_pfls_rt", "numeric"},
	{"change_rate", "fltt_rt", "numeric"},
	{NULL}
};

/*
 * ---- domestic_minute: inquire-time-itemchartprice FHKST03010200 ----
 * Today's 1-minute bars, newest first, 30 per answer; the next page asks
 * again with FID_INPUT_HOUR_1 before the oldest bar's time.  A time later
 * than now is answered with bars filled at the current price, so the first
 * page asks for now (docs/new-tables.md).
 */
static const KisParamDef domestic_minute_params[] = {
	{"FID_ETC_CLS_CODE", KIS_PARAM_LITERAL, ""},
	{"FID_COND_MRKT_DIV_CODE", KIS_PARAM_MARKET},
	{"FID_INPUT_ISCD", KIS_PARAM_SYMBOL},
	{"FID_INPUT_HOUR_1", KIS_PARAM_TIME_TO},
	{"FID_PW_DATA_INCU_YN", KIS_PARAM_LITERAL, "N"},
	{NULL}
};

static const KisColumnDef domestic_minute_columns[] = {
	{"date", "stck_bsop_date", "date"},
	{"time", "stck_cntg_hour", "time"},
	{"open", "stck_oprc", "numeric"},
	{"high", "stck_hgpr", "numeric"},
	{"low", "stck_lwpr", "numeric"},
	{"close", "stck_prpr", "numeric"},
	{"volume", "cntg_vol", "bigint"},
	{"trade_value", "acml_tr_pbmn", "numeric"},	/* accumulated over the day */
	{NULL}
};

/*
 * ---- market_holidays: chk-holiday CTCA0903R (real accounts only) ----
 * The calendar from BASS_DT on, paged by tr_cont and ctx_area_fk/nk (no
 * "100" in these names).  KIS asks that it be called rarely, about once a
 * day (docs/new-tables.md).
 */
static const KisParamDef market_holidays_params[] = {
	{"BASS_DT", KIS_PARAM_DATE_START},
	{"CTX_AREA_FK", KIS_PARAM_CTX_FK},
	{"CTX_AREA_NK", KIS_PARAM_CTX_NK},
	{NULL}
};

static const KisColumnDef market_holidays_columns[] = {
	{"date", "bass_dt", "date"},
	{"weekday", "wday_dvsn_cd", "text"},
	{"business_day", "bzdy_yn", "boolean"},
	{"trading_day", "tr_day_yn", "boolean"},	/* Y on weekends too: not "trades" */
	{"market_open", "opnd_yn", "boolean"},
	{"settlement_day", "sttl_day_yn", "boolean"},
	{NULL}
};

/*
 * ---- domestic_symbols: the stock master files (master.c) ----
 * Not an API: one zip archive per market under master_url, published
 * daily; each line becomes an object with these KIS field names.
 */
static const KisColumnDef domestic_symbols_columns[] = {
	{"symbol", "mksc_shrn_iscd", "text"},
	{"standard_code", "stnd_iscd", "text"},
	{"name", "hts_kor_isnm", "text"},
	{"group_code", "scrt_grp_cls_code", "text"},
	{"base_price", "stck_sdpr", "numeric"},
	{"lot_size", "frml_mrkt_deal_qty_unit", "int"},
	{"halted", "trht_yn", "boolean"},
	{"liquidation", "sltr_yn", "boolean"},
	{"administrative", "mang_issu_yn", "boolean"},
	{"warning_code", "mrkt_alrm_cls_code", "text"},
	{"par_value", "stck_fcam", "numeric"},
	{"listed_on", "stck_lstn_date", "date"},
	{"preferred_code", "prst_cls_code", "text"},
	{"market_cap", "prdy_avls_scal", "numeric"},
	{NULL}
};

/*
 * ---- the live tables: KIS's WebSocket streams (live.c, docs/live.md) ----
 * Field names are the stream's, in lower case; the friendly names match
 * the REST table each falls back to, whose fields carry the same names.
 * source, received_at and trade_time are filled by live.c.
 */
static const KisColumnDef domestic_live_columns[] = {
	{"price", "stck_prpr", "numeric"},
	{"change", "prdy_vrss", "numeric", "prdy_vrss_sign", "prdy_ctrt"},
	{"change_sign", "prdy_vrss_sign", "text"},
	{"change_rate", "prdy_ctrt", "numeric", "prdy_vrss_sign", "prdy_vrss"},
	{"volume", "acml_vol", "bigint"},
	{"trade_volume", "cntg_vol", "bigint"},
	{"trade_value", "acml_tr_pbmn", "numeric"},
	{"trade_time", "trade_time", "timestamptz"},
	{"open", "stck_oprc", "numeric"},
	{"high", "stck_hgpr", "numeric"},
	{"low", "stck_lwpr", "numeric"},
	{"ask1", "askp1", "numeric"},
	{"bid1", "bidp1", "numeric"},
	{"source", "source", "text"},
	{"received_at", "received_at", "timestamptz"},
	{NULL}
};

static const KisColumnDef domestic_live_orderbook_columns[] = {
	{"quote_time", "bsop_hour", "text"},
	KIS_BOOK_LEVEL_COLUMNS
	{"total_ask_qty", "total_askp_rsqn", "bigint"},
	{"total_bid_qty", "total_bidp_rsqn", "bigint"},
	{"expected_price", "antc_cnpr", "numeric"},
	{"expected_volume", "antc_vol", "bigint"},
	{"source", "source", "text"},
	{"received_at", "received_at", "timestamptz"},
	{NULL}
};

static const KisColumnDef overseas_live_columns[] = {
	{"price", "last", "numeric"},
	{"change", "diff", "numeric", "sign", "rate"},
	{"change_sign", "sign", "text"},
	{"change_rate", "rate", "numeric", "sign", "diff"},
	{"volume", "tvol", "bigint"},
	{"trade_volume", "evol", "bigint"},
	{"trade_value", "tamt", "numeric"},
	{"trade_time", "trade_time", "timestamptz"},
	{"open", "open", "numeric"},
	{"high", "high", "numeric"},
	{"low", "low", "numeric"},
	{"ask1", "pask", "numeric"},
	{"bid1", "pbid", "numeric"},
	{"source", "source", "text"},
	{"received_at", "received_at", "timestamptz"},
	{NULL}
};

static const KisColumnDef domestic_ticks_columns[] = {
	{"seq", "seq", "bigint"},
	{"symbol", "mksc_shrn_iscd", "text"},
	{"price", "stck_prpr", "numeric"},
	{"change", "prdy_vrss", "numeric", "prdy_vrss_sign", "prdy_ctrt"},
	{"change_rate", "prdy_ctrt", "numeric", "prdy_vrss_sign", "prdy_vrss"},
	{"volume", "acml_vol", "bigint"},
	{"trade_volume", "cntg_vol", "bigint"},
	{"trade_time", "trade_time", "timestamptz"},
	{"ask1", "askp1", "numeric"},
	{"bid1", "bidp1", "numeric"},
	{"received_at", "received_at", "timestamptz"},
	{NULL}
};

const KisEndpoint kis_endpoints[] = {
	{
		.name = "domestic_price",
		.description = "current price of a KRX/NXT-listed stock, ETF or ETN, one request per symbol",
		.path = "/uapi/domestic-stock/v1/quotations/inquire-price",
		.tr_id_real = "FHKST01010100",
		.tr_id_virtual = "FHKST01010100",
		.params = domestic_price_params,
		.rows_member = "output",
		.rows_shape = KIS_ROWS_OBJECT,
		.symbol_kind = KIS_SYMBOL_DOMESTIC,
		.has_market = true,
		.batch_size = 1,
		.notfound_field = "stck_prpr",
		.echo_member = "output",
		.echo_field = "stck_shrn_iscd",
		.columns = domestic_price_columns,
	},
	{
		.name = "domestic_multi_price",
		.description = "current prices of up to 30 domestic symbols per request (real accounts only)",
		.path = "/uapi/domestic-stock/v1/quotations/intstock-multprice",
		.tr_id_real = "FHKST11300006",
		.tr_id_virtual = NULL,	/* real only */
		.params = domestic_multi_price_params,
		.rows_member = "output",
		.rows_shape = KIS_ROWS_ANY,
		.symbol_kind = KIS_SYMBOL_DOMESTIC,
		.has_market = true,
		.markets = multi_price_markets,
		.batch_size = 30,
		.row_symbol_field = "inter_shrn_iscd",
		.notfound_field = "inter2_prpr",
		.columns = domestic_multi_price_columns,
	},
	{
		.name = "overseas_price",
		.description = "current price of an overseas stock on one exchange",
		.path = "/uapi/overseas-price/v1/quotations/price",
		.tr_id_real = "HHDFS00000300",
		.tr_id_virtual = "HHDFS00000300",
		.params = overseas_price_params,
		.rows_member = "output",
		.rows_shape = KIS_ROWS_OBJECT,
		.symbol_kind = KIS_SYMBOL_OVERSEAS,
		.has_exchange = true,
		.batch_size = 1,
		.identity_field = "rsym",
		.echo_member = "output",
		.echo_field = "rsym",	/* "D", the exchange, the symbol */
		.echo_skip = 4,
		.columns = overseas_price_columns,
	},
	{
		.name = "domestic_daily",
		.description = "daily/weekly/monthly/yearly bars of a domestic symbol, 100 per request, paged by date",
		.path = "/uapi/domestic-stock/v1/quotations/inquire-daily-itemchartprice",
		.tr_id_real = "FHKST03010100",
		.tr_id_virtual = "FHKST03010100",
		.params = domestic_daily_params,
		.rows_member = "output2",
		.rows_shape = KIS_ROWS_ARRAY,
		.extra_member = "output1",
		.symbol_kind = KIS_SYMBOL_DOMESTIC,
		.has_market = true,
		.has_date = true,
		.batch_size = 1,
		.row_date_field = "stck_bsop_date",
		.echo_member = "output1",
		.echo_field = "stck_shrn_iscd",
		.paging = KIS_PAGING_DATE,
		.page_rows = 100,
		.columns = domestic_daily_columns,
	},
	{
		.name = "overseas_daily",
		.description = "daily/weekly/monthly bars of an overseas stock, 100 per request, paged by date",
		.path = "/uapi/overseas-price/v1/quotations/dailyprice",
		.tr_id_real = "HHDFS76240000",
		.tr_id_virtual = "HHDFS76240000",
		.params = overseas_daily_params,
		.rows_member = "output2",
		.rows_shape = KIS_ROWS_ARRAY,
		.extra_member = "output1",
		.symbol_kind = KIS_SYMBOL_OVERSEAS,
		.has_exchange = true,
		.has_date = true,
		.batch_size = 1,
		.row_date_field = "xymd",
		.echo_member = "output1",
		.echo_field = "rsym",
		.echo_skip = 4,
		.paging = KIS_PAGING_DATE,
		.page_rows = 100,
		.columns = overseas_daily_columns,
	},
	{
		.name = "domestic_orderbook",
		.description = "10-level order book and expected execution of a domestic symbol",
		.path = "/uapi/domestic-stock/v1/quotations/inquire-asking-price-exp-ccn",
		.tr_id_real = "FHKST01010200",
		.tr_id_virtual = "FHKST01010200",
		.params = domestic_price_params,
		.rows_member = "output1",
		.rows_shape = KIS_ROWS_OBJECT,
		.extra_member = "output2",
		.symbol_kind = KIS_SYMBOL_DOMESTIC,
		.has_market = true,
		.batch_size = 1,
		.notfound_field = "stck_prpr",	/* in output2; askp1 is 0 at limit-up */
		.echo_member = "output2",
		.echo_field = "stck_shrn_iscd",
		.columns = domestic_orderbook_columns,
	},
	{
		.name = "domestic_holdings",
		.description = "holdings of the user mapping's account, paged by tr_cont",
		.path = "/uapi/domestic-stock/v1/trading/inquire-balance",
		.tr_id_real = "TTTC8434R",
		.tr_id_virtual = "VTTC8434R",
		.params = domestic_holdings_params,
		.rows_member = "output1",
		.rows_shape = KIS_ROWS_ARRAY,
		.symbol_kind = KIS_SYMBOL_NONE,
		.needs_account = true,
		.batch_size = 1,
		.paging = KIS_PAGING_CURSOR,
		.restart_codes = domestic_holdings_restart_codes,
		.restart_hint = "The listing was started over once and KIS said so again. Run the query again later; KIS is reported to answer so on every retry for an account holding exactly one full page (50) of positions.",
		.columns = domestic_holdings_columns,
	},
	{
		.name = "domestic_minute",
		.description = "today's 1-minute bars of a domestic symbol, 30 per request, paged back by time",
		.path = "/uapi/domestic-stock/v1/quotations/inquire-time-itemchartprice",
		.tr_id_real = "FHKST03010200",
		.tr_id_virtual = "FHKST03010200",
		.params = domestic_minute_params,
		.rows_member = "output2",
		.rows_shape = KIS_ROWS_ARRAY,
		.extra_member = "output1",
		.symbol_kind = KIS_SYMBOL_DOMESTIC,
		.has_market = true,
		.batch_size = 1,
		.row_date_field = "stck_bsop_date",
		.row_time_field = "stck_cntg_hour",
		.paging = KIS_PAGING_TIME,
		.page_rows = 30,
		.columns = domestic_minute_columns,
	},
	{
		.name = "market_holidays",
		.description = "the domestic business-day calendar from a given day on; KIS asks for about one call a day",
		.path = "/uapi/domestic-stock/v1/quotations/chk-holiday",
		.tr_id_real = "CTCA0903R",
		.tr_id_virtual = NULL,
		.params = market_holidays_params,
		.rows_member = "output",
		.rows_shape = KIS_ROWS_ANY,
		.symbol_kind = KIS_SYMBOL_NONE,
		.has_date = true,
		.batch_size = 1,
		.row_date_field = "bass_dt",
		.paging = KIS_PAGING_CURSOR,
		.ctx_fk_member = "ctx_area_fk",
		.ctx_nk_member = "ctx_area_nk",
		.columns = market_holidays_columns,
	},
	{
		.name = "domestic_symbols",
		.description = "every KOSPI, KOSDAQ and KONEX listing, from KIS's daily stock master files, one download per market",
		.source = KIS_SOURCE_MASTER_FILE,
		.path = "/common/master/{kospi,kosdaq,konex}_code.mst.zip",
		.tr_id_real = "(a download)",
		.tr_id_virtual = "(a download)",
		.is_public = true,
		.symbol_kind = KIS_SYMBOL_NONE,
		.has_market = true,
		.markets = kis_master_markets,
		.batch_size = 1,
		.row_symbol_field = "mksc_shrn_iscd",
		.columns = domestic_symbols_columns,
	},
	/* the live tables stay last: the fuzz harness stops at the first */
	{
		.name = "domestic_live",
		.description = "latest trade of a domestic symbol from KIS's WebSocket (H0STCNT0), read from shared memory; REST inquire-price until its first tick",
		.source = KIS_SOURCE_STREAM,
		.path = "(WebSocket)",
		.tr_id_real = "H0STCNT0",
		.tr_id_virtual = "H0STCNT0",
		.rows_member = "output",
		.rows_shape = KIS_ROWS_OBJECT,
		.symbol_kind = KIS_SYMBOL_DOMESTIC,
		.batch_size = 1,
		.stream = KIS_LIVE_TRADE,
		.fallback = "domestic_price",
		.columns = domestic_live_columns,
	},
	{
		.name = "domestic_live_orderbook",
		.description = "latest 10-level order book of a domestic symbol from KIS's WebSocket (H0STASP0); REST until its first update",
		.source = KIS_SOURCE_STREAM,
		.path = "(WebSocket)",
		.tr_id_real = "H0STASP0",
		.tr_id_virtual = "H0STASP0",
		.rows_member = "output",
		.rows_shape = KIS_ROWS_OBJECT,
		.symbol_kind = KIS_SYMBOL_DOMESTIC,
		.batch_size = 1,
		.stream = KIS_LIVE_BOOK,
		.fallback = "domestic_orderbook",
		.columns = domestic_live_orderbook_columns,
	},
	{
		.name = "overseas_live",
		.description = "latest trade of an overseas symbol from KIS's WebSocket (HDFSCNT0); REST price until its first tick",
		.source = KIS_SOURCE_STREAM,
		.path = "(WebSocket)",
		.tr_id_real = "HDFSCNT0",
		.tr_id_virtual = "HDFSCNT0",
		.rows_member = "output",
		.rows_shape = KIS_ROWS_OBJECT,
		.symbol_kind = KIS_SYMBOL_OVERSEAS,
		.has_exchange = true,
		.batch_size = 1,
		.stream = KIS_LIVE_OVERSEAS,
		.fallback = "overseas_price",
		.columns = overseas_live_columns,
	},
	{
		.name = "domestic_ticks",
		.description = "every domestic trade the live worker received (H0STCNT0), from a shared ring; seq increases, and \"seq >\" reads only what is new",
		.source = KIS_SOURCE_RING,
		.path = "(WebSocket)",
		.tr_id_real = "H0STCNT0",
		.tr_id_virtual = "H0STCNT0",
		.rows_member = "output",
		.rows_shape = KIS_ROWS_ARRAY,
		.symbol_kind = KIS_SYMBOL_NONE,
		.has_date = true,
		.key_columns = {[KIS_KEY_DATE] = "seq"},
		.batch_size = 1,
		.stream = KIS_LIVE_TRADE,
		.columns = domestic_ticks_columns,
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

/* The catalogue's column that reads a KIS field, or NULL */
const KisColumnDef *
kis_endpoint_column_of_field(const KisEndpoint *ep, const char *field)
{
	for (const KisColumnDef *col = ep->columns; col->column; col++)
	{
		if (strcmp(col->field, field) == 0)
			return col;
	}
	return NULL;
}

/*
 * fields with the row fields ep's own rules read added: whose row it is,
 * its date and time (paging), whether it is listed, the echoed symbol
 */
List *
kis_endpoint_rule_fields(const KisEndpoint *ep, List *fields)
{
	const char *rule_fields[] = {ep->row_symbol_field, ep->row_date_field,
		ep->row_time_field, ep->notfound_field, ep->identity_field, ep->echo_field};

	for (int i = 0; i < lengthof(rule_fields); i++)
	{
		if (rule_fields[i] != NULL)
			fields = lappend(fields, (char *) rule_fields[i]);
	}
	return fields;
}

const char *
kis_endpoint_tr_id(const KisEndpoint *ep, KisEnvironment env)
{
	return env == KIS_ENV_VIRTUAL ? ep->tr_id_virtual : ep->tr_id_real;
}

/* Every character a digit, or also an upper-case ASCII letter or one of extra */
static bool
all_chars(const char *s, bool letters, const char *extra)
{
	for (const unsigned char *p = (const unsigned char *) s; *p; p++)
	{
		if (!((*p >= '0' && *p <= '9') || (letters && *p >= 'A' && *p <= 'Z') ||
			  (extra != NULL && strchr(extra, *p) != NULL)))
			return false;
	}
	return true;
}

#define KIS_PARAM_VALUE_MAX 128

/*
 * Domestic short codes are 6 characters (digits, and upper-case letters in
 * the newer codes); ETNs are 'Q' followed by 6 digits (docs/kis-api.md §6).
 * Overseas tickers are up to 16 characters (docs/kis-api.md §6).
 */
bool
kis_symbol_is_valid(KisSymbolKind kind, const char *symbol)
{
	size_t		len = strlen(symbol);

	switch (kind)
	{
		case KIS_SYMBOL_NONE:
			return false;
		case KIS_SYMBOL_DOMESTIC:
			if (len == 6)
				return all_chars(symbol, true, NULL);
			if (len == 7 && symbol[0] == 'Q')
				return all_chars(symbol + 1, false, NULL);
			return false;
		case KIS_SYMBOL_OVERSEAS:
			return len >= 1 && len <= 16 && all_chars(symbol, true, "./-");
		case KIS_SYMBOL_PARAM:
			if (len < 1 || len > KIS_PARAM_VALUE_MAX)
				return false;
			for (const unsigned char *p = (const unsigned char *) symbol; *p; p++)
				if (*p < 0x20 || *p > 0x7e)
					return false;
			return true;
	}
	return false;
}

const char *
kis_symbol_hint(KisSymbolKind kind)
{
	switch (kind)
	{
		case KIS_SYMBOL_NONE:
			return NULL;
		case KIS_SYMBOL_DOMESTIC:
			return "Domestic symbols are 6 digits or upper-case letters, e.g. '005930'; ETNs are 'Q' and 6 digits, e.g. 'Q500001'.";
		case KIS_SYMBOL_PARAM:
			return "A param column's value is sent as a query parameter: 1 to 128 printable ASCII characters.";
		case KIS_SYMBOL_OVERSEAS:
			return "Overseas symbols are tickers of up to 16 upper-case letters, digits, '.', '/' or '-', e.g. 'AAPL'.";
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

/* A value of an endpoint's "market" key */
bool
kis_endpoint_market_is_valid(const KisEndpoint *ep, const char *market)
{
	if (ep->markets == NULL)
		return kis_market_is_valid(market);
	for (const char *const *m = ep->markets; *m; m++)
	{
		if (strcmp(*m, market) == 0)
			return true;
	}
	return false;
}

/* "Valid markets are: ..." for an endpoint's "market" key */
char *
kis_endpoint_market_hint(const KisEndpoint *ep)
{
	StringInfoData buf;

	if (ep->markets == NULL)
		return pstrdup("Valid markets are: J (KRX), NX (Nextrade), UN (both).");
	initStringInfo(&buf);
	appendStringInfoString(&buf, "Valid markets are: ");
	for (const char *const *m = ep->markets; *m; m++)
		appendStringInfo(&buf, "%s%s", m == ep->markets ? "" : ", ", *m);
	appendStringInfoChar(&buf, '.');
	return buf.data;
}

/* EXCD quotation codes (docs/kis-api.md §6) */
const char *const kis_exchange_codes[] = {
	"NAS", "NYS", "AMS", "BAQ", "BAY", "BAA", "HKS", "TSE",
	"SHS", "SZS", "SHI", "SZI", "HSX", "HNX", NULL
};

bool
kis_exchange_is_valid(const char *exchange)
{
	for (const char *const *e = kis_exchange_codes; *e; e++)
	{
		if (strcmp(*e, exchange) == 0)
			return true;
	}
	return false;
}

/*
 * CREATE FOREIGN TABLE for one endpoint, as IMPORT FOREIGN SCHEMA emits it:
 * its key columns, its friendly columns with their types, and the special
 * columns fetched_at, error and raw.
 */
char *
kis_endpoint_table_ddl(const KisEndpoint *ep, const char *server_name)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "CREATE FOREIGN TABLE %s (", quote_identifier(ep->name));
	if (ep->symbol_kind != KIS_SYMBOL_NONE)
		appendStringInfoString(&buf, "symbol text, ");
	if (ep->has_market)
		appendStringInfoString(&buf, "market text, ");
	if (ep->has_exchange)
		appendStringInfoString(&buf, "exchange text, ");
	for (const KisColumnDef *col = ep->columns; col->column; col++)
		appendStringInfo(&buf, "%s %s, ", quote_identifier(col->column), col->type);
	appendStringInfo(&buf, "fetched_at timestamptz, error text, raw jsonb) SERVER %s OPTIONS (endpoint %s)",
					 quote_identifier(server_name), quote_literal_cstr(ep->name));
	return buf.data;
}

/* ----------------------------------------------------------------
 * The endpoint's shape.  Other files ask these, never the flags.
 * ----------------------------------------------------------------
 */

KisKeying
kis_endpoint_keying(const KisEndpoint *ep)
{
	if (ep->symbol_kind != KIS_SYMBOL_NONE)
		return KIS_KEYING_SYMBOL;
	if (ep->needs_account)
		return KIS_KEYING_ACCOUNT;
	if (ep->has_market && ep->markets != NULL)
		return KIS_KEYING_MARKET;
	return KIS_KEYING_LISTING;
}

/* One request (or batch) per symbol: the symbol column is a key */
bool
kis_endpoint_per_symbol(const KisEndpoint *ep)
{
	return kis_endpoint_keying(ep) == KIS_KEYING_SYMBOL;
}

/* Whether a key column of that name is the endpoint's, and pushed down */
bool
kis_endpoint_has_key(const KisEndpoint *ep, KisKeyColumn key)
{
	switch (key)
	{
		case KIS_KEY_SYMBOL:
			return ep->symbol_kind != KIS_SYMBOL_NONE;
		case KIS_KEY_MARKET:
			return ep->has_market;
		case KIS_KEY_EXCHANGE:
			return ep->has_exchange;
		case KIS_KEY_DATE:
			return ep->has_date;
		case KIS_NUM_KEYS:
			break;
	}
	return false;
}

/* Where a symbol trades: the market (domestic) or exchange (overseas) key */
KisKeyColumn
kis_endpoint_venue_key(const KisEndpoint *ep)
{
	return ep->has_exchange ? KIS_KEY_EXCHANGE : KIS_KEY_MARKET;
}

/* The venue key's column: "market" or "exchange", or a declared one's */
const char *
kis_endpoint_venue_name(const KisEndpoint *ep)
{
	return kis_endpoint_key_column(ep, kis_endpoint_venue_key(ep));
}

/* The venue asked for without a condition: the server's default */
const char *
kis_endpoint_default_venue(const KisEndpoint *ep, const KisConfig *config)
{
	if (kis_endpoint_is_declared(ep))
		return ep->has_market ? kis_endpoint_key_default(ep, KIS_KEY_MARKET) : "";
	return ep->has_exchange ? config->exchange : config->market;
}

/* A value of the endpoint's venue key */
bool
kis_endpoint_venue_is_valid(const KisEndpoint *ep, const char *venue)
{
	if (kis_endpoint_is_declared(ep))
		return ep->has_market ? kis_symbol_is_valid(KIS_SYMBOL_PARAM, venue) :
			venue[0] == '\0';
	return ep->has_exchange ? kis_exchange_is_valid(venue) :
		kis_endpoint_market_is_valid(ep, venue);
}

/* Reads the user mapping's account (an ERROR without one) */
bool
kis_endpoint_needs_account(const KisEndpoint *ep)
{
	return ep->needs_account;
}

/* Read without a user mapping: published to anyone */
bool
kis_endpoint_is_public(const KisEndpoint *ep)
{
	return ep->is_public;
}

/* Rows from a stock master file download, not a KIS API answer */
bool
kis_endpoint_from_master_file(const KisEndpoint *ep)
{
	return ep->source == KIS_SOURCE_MASTER_FILE;
}

/* Read from the live tables' shared memory (live.c) instead of asked for */
bool
kis_endpoint_streamed(const KisEndpoint *ep)
{
	return ep->source == KIS_SOURCE_STREAM || ep->source == KIS_SOURCE_RING;
}

/* Read from the tick ring: its "date" key is the bigint seq */
bool
kis_endpoint_ringed(const KisEndpoint *ep)
{
	return ep->source == KIS_SOURCE_RING;
}

/*
 * The REST table a live table answers from until a symbol's first tick:
 * a copy whose rows say so (source 'rest', received_at when answered).
 */
const KisEndpoint *
kis_endpoint_fallback(const KisEndpoint *ep)
{
	KisEndpoint *fallback = palloc(sizeof(KisEndpoint));

	Assert(ep->source == KIS_SOURCE_STREAM);
	*fallback = *kis_endpoint_lookup(ep->fallback);
	fallback->row_source = "rest";
	return fallback;
}

/* Where the rows of an answer are: an object, an array, or either */
KisRowShape
kis_endpoint_rows_shape(const KisEndpoint *ep)
{
	return ep->rows_shape;
}

/* A symbol the endpoint takes (any, where it takes none: a market's key) */
bool
kis_endpoint_symbol_is_valid(const KisEndpoint *ep, const char *symbol)
{
	return ep->symbol_kind == KIS_SYMBOL_NONE ||
		kis_symbol_is_valid(ep->symbol_kind, symbol);
}

/* What the endpoint's symbols look like, for an invalid one's hint */
const char *
kis_endpoint_symbol_hint(const KisEndpoint *ep)
{
	return kis_symbol_hint(ep->symbol_kind);
}

/* The valid values of the endpoint's venue key, for an invalid one's hint */
char *
kis_endpoint_venue_hint(const KisEndpoint *ep)
{
	if (kis_endpoint_is_declared(ep))
		return pstrdup(kis_symbol_hint(KIS_SYMBOL_PARAM));
	if (ep->has_exchange)
		return pstrdup("Valid exchanges are NAS, NYS, AMS (and their daytime codes BAQ, BAY, BAA), HKS, TSE, SHS, SZS, SHI, SZI, HSX, HNX.");
	return kis_endpoint_market_hint(ep);
}

/*
 * Whether the endpoint has bars of the table's period (D W M Y): a period
 * sent as a number (overseas GUBN) knows D, W and M only.
 */
bool
kis_endpoint_has_period(const KisEndpoint *ep, const char *period)
{
	if (strcmp(period, "Y") != 0 || ep->params == NULL)
		return true;
	for (const KisParamDef *p = ep->params; p->name; p++)
	{
		if (p->source == KIS_PARAM_PERIOD_NUMBER)
			return false;
	}
	return true;
}

/* Cursor paging: the answer's members holding the continuation keys */
const char *
kis_endpoint_ctx_fk_member(const KisEndpoint *ep)
{
	return ep->ctx_fk_member ? ep->ctx_fk_member : "ctx_area_fk100";
}

const char *
kis_endpoint_ctx_nk_member(const KisEndpoint *ep)
{
	return ep->ctx_nk_member ? ep->ctx_nk_member : "ctx_area_nk100";
}

/* KIS_KEYING_MARKET: how many markets a scan without a condition asks */
int
kis_endpoint_nmarkets(const KisEndpoint *ep)
{
	int			n = 0;

	if (ep->markets != NULL)
		while (ep->markets[n])
			n++;
	return n;
}

/* The i-th of those markets, i < kis_endpoint_nmarkets() */
const char *
kis_endpoint_market(const KisEndpoint *ep, int i)
{
	Assert(i >= 0 && i < kis_endpoint_nmarkets(ep));
	return ep->markets[i];
}

/* Keys one request carries (KIS_KEYING_SYMBOL) */
int
kis_endpoint_keys_per_request(const KisEndpoint *ep)
{
	return ep->batch_size;
}

/*
 * Rows the planner expects of one key: a full page where a date range
 * pages (one page is its guess), else one.
 */
double
kis_endpoint_rows_per_key(const KisEndpoint *ep)
{
	return ep->paging == KIS_PAGING_DATE ? ep->page_rows : 1;
}

KisPaging
kis_endpoint_paging(const KisEndpoint *ep)
{
	return ep->paging;
}

/* kis_fdw_endpoints()'s paging column */
const char *
kis_paging_name(KisPaging paging)
{
	switch (paging)
	{
		case KIS_PAGING_NONE:
			return "none";
		case KIS_PAGING_DATE:
			return "by date";
		case KIS_PAGING_CURSOR:
			return "by continuation key";
		case KIS_PAGING_TIME:
			return "by time";
	}
	return "none";
}

/* EXPLAIN's "KIS Paging": the kind, and a full page's rows where fixed */
char *
kis_endpoint_paging_detail(const KisEndpoint *ep)
{
	if (ep->page_rows > 1 && ep->paging != KIS_PAGING_CURSOR)
		return psprintf("%s, %d rows per request", kis_paging_name(ep->paging),
						ep->page_rows);
	return pstrdup(kis_paging_name(ep->paging));
}

/* kis_fdw_endpoints()'s key columns: "symbol, market, date" and so on */
const char *
kis_endpoint_key_columns(const KisEndpoint *ep)
{
	if (ep->symbol_kind == KIS_SYMBOL_NONE)
		return ep->has_date ? kis_endpoint_key_column(ep, KIS_KEY_DATE) :
			ep->has_market ? "market" : "";
	if (ep->has_date)
		return ep->has_exchange ? "symbol, exchange, date" : "symbol, market, date";
	return ep->has_exchange ? "symbol, exchange" : ep->has_market ? "symbol, market" : "symbol";
}

/*
 * Answers that belong to one user mapping: never shared across mappings,
 * and cached per mapping only (docs/security.md).  An account's, and every
 * declared TR's: kis_fdw cannot know that its answer is the same for
 * every caller, and its parameters are readable in the catalog.
 */
bool
kis_endpoint_private_answers(const KisEndpoint *ep)
{
	return ep->needs_account || ep->declared;
}

/* The key columns of a catalogue table, by KisKeyColumn */
static const char *const key_column_names[KIS_NUM_KEYS] = {
	"symbol", "market", "exchange", "date"
};

/* A table declared in SQL (path, tr_id, params options), not an entry */
bool
kis_endpoint_is_declared(const KisEndpoint *ep)
{
	return ep->declared;
}

/* The name of the column that holds a key's values */
const char *
kis_endpoint_key_column(const KisEndpoint *ep, KisKeyColumn key)
{
	if (key < KIS_NUM_KEYS && ep->key_columns[key] != NULL)
		return ep->key_columns[key];
	return key_column_names[key];
}

/*
 * Whether a scan must have a condition on the key: a symbol always, a
 * declared table's param column unless params gives it a value.
 */
bool
kis_endpoint_key_required(const KisEndpoint *ep, KisKeyColumn key)
{
	if (!kis_endpoint_has_key(ep, key))
		return false;
	if (kis_endpoint_is_declared(ep))
		return kis_endpoint_key_default(ep, key) == NULL;
	return key == KIS_KEY_SYMBOL;
}

/* A declared table's value for a key without a condition (params), or NULL */
const char *
kis_endpoint_key_default(const KisEndpoint *ep, KisKeyColumn key)
{
	return key < KIS_NUM_LIST_KEYS ? ep->key_defaults[key] : NULL;
}
