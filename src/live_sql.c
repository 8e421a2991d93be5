/*-------------------------------------------------------------------------
 *
 * live_sql.c
 *	  The live tables' SQL functions: kis_fdw_live_subscribe() and
 *	  kis_fdw_live_unsubscribe() pin and drop symbols of the caller's app
 *	  key, and kis_fdw_live() (the view kis_fdw_live) shows each channel.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "foreign/foreign.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "endpoints.h"
#include "keys.h"
#include "live.h"
#include "live_internal.h"
#include "live_scan.h"
#include "options.h"
#include "util.h"

#define KIS_HASH_PREFIX_BYTES	6	/* as kis_fdw_stats names a key */

/* The endpoint whose stream kind names */
static const KisEndpoint *
kind_endpoint(const char *kind_name, KisLiveKind *kind)
{
	if (!kis_live_kind_by_name(kind_name, kind))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid live kind \"%s\"", kis_printable(kind_name)),
				 errhint("Valid kinds are: trade, orderbook, overseas.")));
	for (const KisEndpoint *ep = kis_endpoints; ep->name; ep++)
		if (kis_endpoint_streamed(ep) && ep->stream == *kind)
			return ep;
	elog(ERROR, "no live endpoint for kind %d", (int) *kind);
	return NULL;				/* keep the compiler quiet */
}

/*
 * The caller's configuration on the server (its user mapping's credential)
 * and the symbols of the array as KisLiveKeys; overseas symbols are EXCHANGE:SYMBOL
 * or SYMBOL on the server's default exchange.
 */
static void
call_keys(FunctionCallInfo fcinfo, KisConfig *config, List **keys)
{
	char	   *servername = NameStr(*PG_GETARG_NAME(0));
	ArrayType  *symbols = PG_GETARG_ARRAYTYPE_P(1);
	char	   *kind_name = text_to_cstring(PG_GETARG_TEXT_PP(2));
	ForeignServer *server = GetForeignServerByName(servername, false);
	AclResult	aclresult;
	KisLiveKind kind;
	Datum	   *values;
	bool	   *nulls;
	int			n;

	aclresult = kis_foreign_server_aclcheck(server->serverid, GetUserId(), ACL_USAGE);
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_FOREIGN_SERVER, server->servername);
	kis_config_for_server(server->serverid, config);
	config->endpoint = kind_endpoint(kind_name, &kind);
	kis_config_add_credentials(config, GetUserId());

	deconstruct_array(symbols, TEXTOID, -1, false, TYPALIGN_INT, &values, &nulls, &n);
	*keys = NIL;
	for (int i = 0; i < n; i++)
	{
		char	   *symbol;
		char	   *exchange = config->exchange;
		KisLiveKey *key = palloc0(sizeof(KisLiveKey));

		if (nulls[i])
			continue;
		symbol = TextDatumGetCString(values[i]);
		if (kind == KIS_LIVE_OVERSEAS && strchr(symbol, ':') != NULL)
		{
			exchange = pnstrdup(symbol, strchr(symbol, ':') - symbol);
			symbol = strchr(symbol, ':') + 1;
			if (!kis_exchange_is_valid(exchange))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid exchange \"%s\"", kis_printable(exchange)),
						 errhint("%s", kis_endpoint_venue_hint(config->endpoint))));
		}
		if (!kis_endpoint_symbol_is_valid(config->endpoint, symbol))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid symbol \"%s\"", kis_printable(symbol)),
					 errhint("%s", kis_endpoint_symbol_hint(config->endpoint))));
		key->kind = kind;
		key->tr_key = kis_live_tr_key(kind, symbol, exchange);
		*keys = lappend(*keys, key);
	}
}

PG_FUNCTION_INFO_V1(kis_fdw_live_subscribe);

/*
 * kis_fdw_live_subscribe(server, symbols, kind): subscribe and pin them
 * (never idle); returns how many KIS refused by the time live_wait_ms
 * passed, after a WARNING naming them.
 */
Datum
kis_fdw_live_subscribe(PG_FUNCTION_ARGS)
{
	KisConfig	config;
	List	   *keys;
	KisLiveChannel *ch;
	int			refused = 0;
	ListCell   *lc;

	call_keys(fcinfo, &config, &keys);
	ch = kis_live_scan_subscribe(NULL, &config, keys, true);
	kis_live_collect(ch, keys, config.live_wait_ms);
	foreach(lc, keys)
	{
		KisLiveKey *key = lfirst(lc);

		if (key->refusal != NULL)
		{
			ereport(WARNING,
					(errcode(ERRCODE_WARNING),
					 errmsg("KIS did not subscribe %s %s", kis_live_tr_id(key->kind),
							kis_printable(key->tr_key)),
					 errdetail("%s", kis_printable(key->refusal))));
			refused++;
		}
	}
	PG_RETURN_INT32(list_length(keys) - refused);
}

PG_FUNCTION_INFO_V1(kis_fdw_live_unsubscribe);

/* kis_fdw_live_unsubscribe(server, symbols, kind): unpin and drop them */
Datum
kis_fdw_live_unsubscribe(PG_FUNCTION_ARGS)
{
	KisConfig	config;
	List	   *keys;
	KisLiveChannel *ch;
	uint64		generation;

	call_keys(fcinfo, &config, &keys);
	ch = kis_live_channel_find(&config, &generation);
	if (ch == NULL)
		PG_RETURN_INT32(0);		/* nothing of this key streams */
	kis_live_unwant(ch, generation, keys);
	PG_RETURN_INT32(list_length(keys));
}

static const char *
socket_name(KisSocketState state)
{
	switch (state)
	{
		case KIS_SOCKET_NONE:
			return "idle";
		case KIS_SOCKET_STARTING:
			return "starting";
		case KIS_SOCKET_CONNECTING:
			return "connecting";
		case KIS_SOCKET_OPEN:
			return "open";
		case KIS_SOCKET_BACKOFF:
			return "reconnecting";
		case KIS_SOCKET_IN_USE:
			return "in use elsewhere";
	}
	return "unknown";
}

PG_FUNCTION_INFO_V1(kis_fdw_live);

/* One row per channel in use: what the view kis_fdw_live shows */
Datum
kis_fdw_live(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	KisLiveShared *shared = kis_live_shared();

	kis_init_materialized_srf(fcinfo);
	for (int i = 0; i < shared->nchannels; i++)
	{
		KisLiveChannel *ch = &shared->channels[i];
		Datum		values[12];
		bool		nulls[12] = {0};
		char		prefix[KIS_HASH_PREFIX_BYTES * 2 + 1];
		int			counts[KIS_SUB_DROPPING + 1] = {0};
		char		error[KIS_LIVE_TEXT_MAX];
		TimestampTz error_at;
		KisSocketState state;
		int64		reconnects;
		int			limit;
		int			pid;
		uint64		last_tick;

		SpinLockAcquire(&ch->mutex);
		if (!ch->in_use)
		{
			SpinLockRelease(&ch->mutex);
			continue;
		}
		for (int b = 0; b < KIS_HASH_PREFIX_BYTES; b++)
			snprintf(prefix + b * 2, 3, "%02x", ch->app_key_hash[b]);
		for (int e = 0; e < KIS_LIVE_MAX_ENTRIES; e++)
			counts[ch->entries[e].state]++;
		strlcpy(error, ch->last_error, sizeof(error));
		error_at = ch->last_error_at;
		state = ch->socket;
		reconnects = ch->reconnects;
		limit = ch->limit;
		pid = ch->worker_pid;
		SpinLockRelease(&ch->mutex);
		last_tick = pg_atomic_read_u64(&ch->last_tick);

		values[0] = CStringGetTextDatum(prefix);
		values[1] = CStringGetTextDatum(socket_name(state));
		values[2] = Int32GetDatum(counts[KIS_SUB_ACTIVE]);
		values[3] = Int32GetDatum(counts[KIS_SUB_WANTED] + counts[KIS_SUB_SENT]);
		values[4] = Int32GetDatum(counts[KIS_SUB_REFUSED]);
		values[5] = Int64GetDatum((int64) pg_atomic_read_u64(&ch->ticks));
		values[6] = TimestampTzGetDatum((TimestampTz) last_tick);
		nulls[6] = last_tick == 0;
		values[7] = Int64GetDatum(reconnects);
		values[8] = Int32GetDatum(limit);
		nulls[8] = limit == 0;
		values[9] = CStringGetTextDatum(kis_printable(error));
		nulls[9] = error[0] == '\0';
		values[10] = TimestampTzGetDatum(error_at);
		nulls[10] = error_at == 0;
		values[11] = Int32GetDatum(pid);
		nulls[11] = pid == 0;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
