/*-------------------------------------------------------------------------
 *
 * library.c
 *	  The library of declared tables: KIS TRs users ask for after quotes,
 *	  each written as the declaration a user would write (declared.c reads
 *	  it), so IMPORT FOREIGN SCHEMA and kis_fdw_endpoints() offer them
 *	  beside the catalogue's endpoints.  No code here reads a TR: an entry
 *	  is data, and its facts and their sources are in docs/library-trs.md.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "utils/builtins.h"

#include "library.h"

#define RANK_COLUMNS \
	{"rank", "int", "data_rank"}, \
	{"name", "text", "hts_kor_isnm"}, \
	{"price", "numeric", "stck_prpr"}, \
	{"change", "numeric", "prdy_vrss"}, \
	{"change_sign", "text", "prdy_vrss_sign"}, \
	{"change_rate", "numeric", "prdy_ctrt"}, \
	{"volume", "bigint", "acml_vol"}

static const KisLibraryColumn investor_columns[] = {
	{"symbol", "text", NULL, "FID_INPUT_ISCD"},
	{"date", "date", "stck_bsop_date"},
	{"close", "numeric", "stck_clpr"},
	{"change", "numeric", "prdy_vrss"},
	{"change_sign", "text", "prdy_vrss_sign"},
	{"individual_net", "bigint", "prsn_ntby_qty"},
	{"foreign_net", "bigint", "frgn_ntby_qty"},
	{"institution_net", "bigint", "orgn_ntby_qty"},
	{"individual_net_value", "numeric", "prsn_ntby_tr_pbmn"},
	{"foreign_net_value", "numeric", "frgn_ntby_tr_pbmn"},
	{"institution_net_value", "numeric", "orgn_ntby_tr_pbmn"},
	{"individual_buy", "bigint", "prsn_shnu_vol"},
	{"foreign_buy", "bigint", "frgn_shnu_vol"},
	{"institution_buy", "bigint", "orgn_shnu_vol"},
	{"individual_sell", "bigint", "prsn_seln_vol"},
	{"foreign_sell", "bigint", "frgn_seln_vol"},
	{"institution_sell", "bigint", "orgn_seln_vol"},
	{NULL}
};

static const KisLibraryColumn volume_rank_columns[] = {
	{"market", "text", NULL, "FID_INPUT_ISCD"},
	{"symbol", "text", "mksc_shrn_iscd"},
	RANK_COLUMNS,
	{"prev_volume", "bigint", "prdy_vol"},
	{"avg_volume", "bigint", "avrg_vol"},
	{"volume_increase_rate", "numeric", "vol_inrt"},
	{"turnover_rate", "numeric", "vol_tnrt"},
	{"listed_shares", "bigint", "lstn_stcn"},
	{"trade_value", "numeric", "acml_tr_pbmn"},
	{"avg_trade_value", "numeric", "avrg_tr_pbmn"},
	{NULL}
};

static const KisLibraryColumn fluctuation_rank_columns[] = {
	{"market", "text", NULL, "fid_input_iscd"},
	{"symbol", "text", "stck_shrn_iscd"},
	RANK_COLUMNS,
	{"high", "numeric", "stck_hgpr"},
	{"low", "numeric", "stck_lwpr"},
	{"from_low_rate", "numeric", "lwpr_vrss_prpr_rate"},
	{"from_high_rate", "numeric", "hgpr_vrss_prpr_rate"},
	{"up_days", "int", "cnnt_ascn_dynu"},
	{"down_days", "int", "cnnt_down_dynu"},
	{NULL}
};

static const KisLibraryColumn market_cap_rank_columns[] = {
	{"market", "text", NULL, "fid_input_iscd"},
	{"symbol", "text", "mksc_shrn_iscd"},
	RANK_COLUMNS,
	{"listed_shares", "bigint", "lstn_stcn"},
	{"market_cap", "numeric", "stck_avls"},
	{"market_weight", "numeric", "mrkt_whol_avls_rlim"},
	{NULL}
};

static const KisLibraryColumn index_price_columns[] = {
	{"index_code", "text", NULL, "FID_INPUT_ISCD"},
	{"value", "numeric", "bstp_nmix_prpr"},
	{"change", "numeric", "bstp_nmix_prdy_vrss"},
	{"change_sign", "text", "prdy_vrss_sign"},
	{"change_rate", "numeric", "bstp_nmix_prdy_ctrt"},
	{"open", "numeric", "bstp_nmix_oprc"},
	{"high", "numeric", "bstp_nmix_hgpr"},
	{"low", "numeric", "bstp_nmix_lwpr"},
	{"volume", "bigint", "acml_vol"},
	{"trade_value", "numeric", "acml_tr_pbmn"},
	{"advancers", "int", "ascn_issu_cnt"},
	{"decliners", "int", "down_issu_cnt"},
	{"unchanged", "int", "stnr_issu_cnt"},
	{"limit_up", "int", "uplm_issu_cnt"},
	{"limit_down", "int", "lslm_issu_cnt"},
	{NULL}
};

static const KisLibraryColumn index_daily_columns[] = {
	{"index_code", "text", NULL, "FID_INPUT_ISCD"},
	{"period", "text", NULL, "FID_PERIOD_DIV_CODE"},
	{"date", "date", "stck_bsop_date", NULL, "FID_INPUT_DATE_1", "FID_INPUT_DATE_2"},
	{"close", "numeric", "bstp_nmix_prpr"},
	{"open", "numeric", "bstp_nmix_oprc"},
	{"high", "numeric", "bstp_nmix_hgpr"},
	{"low", "numeric", "bstp_nmix_lwpr"},
	{"volume", "bigint", "acml_vol"},
	{"trade_value", "numeric", "acml_tr_pbmn"},
	{NULL}
};

static const KisLibraryColumn etf_price_columns[] = {
	{"symbol", "text", NULL, "FID_INPUT_ISCD"},
	{"price", "numeric", "stck_prpr"},
	{"change", "numeric", "prdy_vrss"},
	{"change_sign", "text", "prdy_vrss_sign"},
	{"change_rate", "numeric", "prdy_ctrt"},
	{"volume", "bigint", "acml_vol"},
	{"nav", "numeric", "nav"},
	{"prev_nav", "numeric", "prdy_last_nav"},
	{"nav_change", "numeric", "nav_prdy_vrss"},
	{"nav_change_rate", "numeric", "nav_prdy_ctrt"},
	{"premium_rate", "numeric", "dprt"},
	{"tracking_error", "numeric", "trc_errt"},
	{"net_assets", "numeric", "etf_ntas_ttam"},
	{"circulating_shares", "bigint", "etf_crcl_stcn"},
	{"constituents", "int", "etf_cnfg_issu_cnt"},
	{"leverage", "numeric", "etf_trc_ert_mltp"},
	{"underlying_index", "text", "etf_rprs_bstp_kor_isnm"},
	{"category", "text", "etf_div_name"},
	{NULL}
};

static const KisLibraryColumn financial_ratio_columns[] = {
	{"symbol", "text", NULL, "fid_input_iscd"},
	{"period_type", "text", NULL, "FID_DIV_CLS_CODE"},
	{"period", "text", "stac_yymm"},
	{"revenue_growth", "numeric", "grs"},
	{"operating_profit_growth", "numeric", "bsop_prfi_inrt"},
	{"net_income_growth", "numeric", "ntin_inrt"},
	{"roe", "numeric", "roe_val"},
	{"eps", "numeric", "eps"},
	{"sps", "numeric", "sps"},
	{"bps", "numeric", "bps"},
	{"reserve_ratio", "numeric", "rsrv_rate"},
	{"debt_ratio", "numeric", "lblt_rate"},
	{NULL}
};

static const KisLibraryColumn overseas_minute_columns[] = {
	{"symbol", "text", NULL, "SYMB"},
	{"exchange", "text", NULL, "EXCD"},
	{"date", "date", "xymd"},
	{"time", "time", "xhms"},
	{"kst_date", "date", "kymd"},
	{"kst_time", "time", "khms"},
	{"open", "numeric", "open"},
	{"high", "numeric", "high"},
	{"low", "numeric", "low"},
	{"close", "numeric", "last"},
	{"volume", "bigint", "evol"},
	{"trade_value", "numeric", "eamt"},
	{NULL}
};

/*
 * tr_id_virtual "" means real accounts only.  Parameters are sent in the
 * order written; a param column's entry here is its value without a
 * condition.
 */
const KisLibraryTable kis_library[] = {
	{
		"domestic_investor",
		"daily net buying by individuals, foreigners and institutions (30 days)",
		"/uapi/domestic-stock/v1/quotations/inquire-investor",
		"FHKST01010900", "FHKST01010900",
		"FID_COND_MRKT_DIV_CODE=J",
		"output", NULL, investor_columns
	},
	{
		"domestic_volume_rank",
		"volume ranking, 30 rows (market 0000 all, 0001 KOSPI, 1001 KOSDAQ, 2001 KOSPI200)",
		"/uapi/domestic-stock/v1/quotations/volume-rank",
		"FHPST01710000", "",
		"FID_COND_MRKT_DIV_CODE=J&FID_COND_SCR_DIV_CODE=20171&FID_INPUT_ISCD=0000&"
		"FID_DIV_CLS_CODE=0&FID_BLNG_CLS_CODE=0&FID_TRGT_CLS_CODE=111111111&"
		"FID_TRGT_EXLS_CLS_CODE=000000&FID_INPUT_PRICE_1=0&FID_INPUT_PRICE_2=0&"
		"FID_VOL_CNT=0&FID_INPUT_DATE_1=0",
		"output", NULL, volume_rank_columns
	},
	{
		"domestic_fluctuation_rank",
		"change-rate ranking against the previous close, 30 rows (market as volume ranking)",
		"/uapi/domestic-stock/v1/ranking/fluctuation",
		"FHPST01700000", "",
		"fid_rsfl_rate2=&fid_cond_mrkt_div_code=J&fid_cond_scr_div_code=20170&"
		"fid_input_iscd=0000&fid_rank_sort_cls_code=0&fid_input_cnt_1=0&fid_prc_cls_code=1&"
		"fid_input_price_1=&fid_input_price_2=&fid_vol_cnt=&fid_trgt_cls_code=0&"
		"fid_trgt_exls_cls_code=0&fid_div_cls_code=0&fid_rsfl_rate1=",
		"output", NULL, fluctuation_rank_columns
	},
	{
		"domestic_market_cap_rank",
		"market-cap ranking, 30 rows (market as volume ranking; market_cap in 100 million won)",
		"/uapi/domestic-stock/v1/ranking/market-cap",
		"FHPST01740000", "",
		"fid_input_price_2=&fid_cond_mrkt_div_code=J&fid_cond_scr_div_code=20174&"
		"fid_div_cls_code=0&fid_input_iscd=0000&fid_trgt_cls_code=0&"
		"fid_trgt_exls_cls_code=0&fid_input_price_1=&fid_vol_cnt=",
		"output", NULL, market_cap_rank_columns
	},
	{
		"domestic_index_price",
		"index or sector value now (index_code 0001 KOSPI, 1001 KOSDAQ, 2001 KOSPI200, ...)",
		"/uapi/domestic-stock/v1/quotations/inquire-index-price",
		"FHPUP02100000", "",
		"FID_COND_MRKT_DIV_CODE=U",
		"output", NULL, index_price_columns
	},
	{
		"domestic_index_daily",
		"index bars by day, week, month or year (period D W M Y), paged by date",
		"/uapi/domestic-stock/v1/quotations/inquire-daily-indexchartprice",
		"FHKUP03500100", "FHKUP03500100",
		"FID_COND_MRKT_DIV_CODE=U&FID_INPUT_DATE_1=&FID_INPUT_DATE_2=&FID_PERIOD_DIV_CODE=D",
		"output2", "date", index_daily_columns
	},
	{
		"domestic_etf_price",
		"ETF/ETN price with NAV, premium and tracking error",
		"/uapi/etfetn/v1/quotations/inquire-price",
		"FHPST02400000", "",
		"FID_COND_MRKT_DIV_CODE=J",
		"output", NULL, etf_price_columns
	},
	{
		"domestic_financial_ratio",
		"financial ratios by year (period_type 0) or quarter (1), newest first",
		"/uapi/domestic-stock/v1/finance/financial-ratio",
		"FHKST66430300", "",
		"FID_DIV_CLS_CODE=0&fid_cond_mrkt_div_code=J",
		"output", NULL, financial_ratio_columns
	},
	{
		"overseas_minute",
		"overseas minute bars, the latest 120 (exchange-local and Korean date and time)",
		"/uapi/overseas-price/v1/quotations/inquire-time-itemchartprice",
		"HHDFS76950200", "",
		"AUTH=&EXCD=NAS&NMIN=1&PINC=1&NEXT=&NREC=120&FILL=&KEYB=",
		"output2", NULL, overseas_minute_columns
	},
	{NULL}
};

/* "symbol, exchange": the key columns, for kis_fdw_endpoints() */
char *
kis_library_key_columns(const KisLibraryTable *t)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (const KisLibraryColumn *c = t->columns; c->column; c++)
	{
		if (c->param != NULL || c->from_param != NULL || c->to_param != NULL)
			appendStringInfo(&buf, "%s%s", buf.len > 0 ? ", " : "", c->column);
	}
	return buf.data;
}

/* The CREATE FOREIGN TABLE that IMPORT FOREIGN SCHEMA emits for it */
char *
kis_library_table_ddl(const KisLibraryTable *t, const char *server_name)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "CREATE FOREIGN TABLE %s (", quote_identifier(t->name));
	for (const KisLibraryColumn *c = t->columns; c->column; c++)
	{
		appendStringInfo(&buf, "%s %s OPTIONS (%s %s", quote_identifier(c->column), c->type,
						 c->param ? "param" : "field",
						 quote_literal_cstr(c->param ? c->param : c->field));
		if (c->from_param)
			appendStringInfo(&buf, ", from_param %s", quote_literal_cstr(c->from_param));
		if (c->to_param)
			appendStringInfo(&buf, ", to_param %s", quote_literal_cstr(c->to_param));
		appendStringInfoString(&buf, "), ");
	}
	appendStringInfo(&buf, "fetched_at timestamptz, error text, raw jsonb) SERVER %s "
					 "OPTIONS (path %s, tr_id %s, tr_id_virtual %s, params %s, rows %s",
					 quote_identifier(server_name), quote_literal_cstr(t->path),
					 quote_literal_cstr(t->tr_id), quote_literal_cstr(t->tr_id_virtual),
					 quote_literal_cstr(t->params), quote_literal_cstr(t->rows));
	if (t->paging)
		appendStringInfo(&buf, ", paging %s", quote_literal_cstr(t->paging));
	appendStringInfoChar(&buf, ')');
	return buf.data;
}
