/*-------------------------------------------------------------------------
 *
 * options.h
 *	  The option catalogue's result: a scan's configuration, resolved from
 *	  its foreign table, server and user mapping (options.c).
 *
 * src/options.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef KIS_OPTIONS_H
#define KIS_OPTIONS_H

#include "access/attnum.h"

struct KisEndpoint;

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

/* Everything a scan needs to know, resolved from table, server and mapping */
typedef struct KisConfig
{
	/* server */
	Oid			serverid;
	KisEnvironment environment;
	char	   *base_url;		/* no trailing slash */
	char	   *origin;			/* base_url's scheme://host:port */
	char	   *master_url;		/* where the stock master files are */
	char	   *ws_url;			/* KIS's real-time WebSocket (live tables) */
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
	int			live_wait_ms;	/* live tables: wait this long for a first tick */

	/* user mapping: filled only at execution (kis_config_add_credentials) */
	char	   *app_key;
	char	   *app_secret;
	char	   *account;
} KisConfig;

extern void kis_config_for_server(Oid serverid, KisConfig *config);
extern void kis_config_for_table(Oid foreigntableid, KisConfig *config);
extern void kis_config_add_credentials(KisConfig *config, Oid userid);
extern char *kis_column_field_option(Oid relid, AttrNumber attnum);
extern const char *kis_on_error_name(KisOnError mode);

#endif							/* KIS_OPTIONS_H */
