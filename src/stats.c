/*-------------------------------------------------------------------------
 *
 * stats.c
 *	  kis_fdw_stats(): the counters of every app-key slot, one row per key,
 *	  named by a short prefix of the key's SHA-256 (never the key);
 *	  kis_fdw_reset_key(): clear one key's rate gate and issuance wait;
 *	  and kis_fdw_cache_reset(): empty the answer cache (cache.c).
 *	  Two functions no SQL script declares, for the soak test's leak check
 *	  (test/soak.py declares them; docs/testing.md): the bytes the backend
 *	  holds from malloc, and a deliberate malloc leak for its self-test.
 *
 * The counters are atomics in the slots (shmem.c), so reading them writes
 * nothing: the function works in read-only transactions and on standbys.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <malloc.h>

#include "commands/defrem.h"
#include "foreign/foreign.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"

#include "auth.h"
#include "cache.h"
#include "compat.h"
#include "limiter.h"
#include "options.h"
#include "shmem.h"

#define KIS_HASH_PREFIX_BYTES	6	/* 12 hex digits name a key */

PG_FUNCTION_INFO_V1(kis_fdw_stats);

/*
 * One row per app key.  A key may have several slots (one per secret and
 * origin it was used with, docs/security.md): their counters are added up.
 */
Datum
kis_fdw_stats(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	bool		shared = kis_shmem_is_shared();
	KisAppSlot *slot;
	int64		cache_bytes = kis_cache_bytes();
	KisSlotStats *app_keys = NULL;
	int			napp_keys = 0;

	kis_init_materialized_srf(fcinfo);
	for (int i = 0; (slot = kis_app_slot_at(i)) != NULL; i++)
	{
		KisSlotStats st;
		int			k;

		if (!kis_app_slot_stats(slot, &st))
			continue;
		for (k = 0; k < napp_keys; k++)
		{
			if (memcmp(app_keys[k].app_key_hash, st.app_key_hash, KIS_SHA256_LEN) == 0)
				break;
		}
		if (k == napp_keys)
		{
			app_keys = napp_keys == 0 ? palloc(sizeof(KisSlotStats)) :
				repalloc(app_keys, sizeof(KisSlotStats) * (napp_keys + 1));
			app_keys[napp_keys++] = st;
			continue;
		}
		for (int c = 0; c < KIS_NUM_COUNTERS; c++)
			app_keys[k].counters[c] += st.counters[c];
		app_keys[k].wait_max_us = Max(app_keys[k].wait_max_us, st.wait_max_us);
	}

	for (int k = 0; k < napp_keys; k++)
	{
		Datum		values[17];
		bool		nulls[17] = {0};
		char		prefix[KIS_HASH_PREFIX_BYTES * 2 + 1];
		KisSlotStats st = app_keys[k];
		int			n = 0;

		for (int b = 0; b < KIS_HASH_PREFIX_BYTES; b++)
			snprintf(prefix + b * 2, 3, "%02x", st.app_key_hash[b]);

		values[n++] = CStringGetTextDatum(prefix);
		values[n++] = BoolGetDatum(shared);
		values[n++] = Int64GetDatum(st.counters[KIS_CTR_SCANS]);
		values[n++] = Int64GetDatum(st.counters[KIS_CTR_REQUESTS]);
		values[n++] = Int64GetDatum(st.counters[KIS_CTR_RETRIES]);
		values[n++] = Int64GetDatum(st.counters[KIS_CTR_RATE_LIMITED]);
		values[n++] = Int64GetDatum(st.counters[KIS_CTR_ERR_TRANSIENT]);
		values[n++] = Int64GetDatum(st.counters[KIS_CTR_ERR_TOKEN]);
		values[n++] = Int64GetDatum(st.counters[KIS_CTR_ERR_FATAL]);
		values[n++] = Int64GetDatum(st.counters[KIS_CTR_ERR_KEY]);
		values[n++] = Int64GetDatum(st.counters[KIS_CTR_TOKENS_ISSUED]);
		values[n++] = Float8GetDatum(st.counters[KIS_CTR_WAIT_US] / 1000.0);
		values[n++] = Float8GetDatum(st.wait_max_us / 1000.0);
		values[n++] = Int64GetDatum(st.counters[KIS_CTR_BYTES]);
		values[n++] = Int64GetDatum(st.counters[KIS_CTR_CACHE_HITS]);
		values[n++] = Int64GetDatum(st.counters[KIS_CTR_SHARED_WAITS]);
		values[n++] = Int64GetDatum(cache_bytes);	/* the whole store's */
		Assert(n == lengthof(values));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(kis_fdw_reset_key);

/*
 * kis_fdw_reset_key(server name): the slot of the caller's user mapping
 * for that server (its app key with its secret, at the server's origin)
 * gets a fresh schedule: its rate gate, the back-off KIS asked for, the
 * issuing claim and the token issuance interval are forgotten (the token
 * stays).  For a key stuck behind a schedule that no longer applies,
 * without a restart.  Returns whether the slot existed: a mapping naming
 * someone else's app key with another secret finds none (docs/security.md).
 * EXECUTE is revoked from PUBLIC; the key is never shown.
 */
Datum
kis_fdw_reset_key(PG_FUNCTION_ARGS)
{
	char	   *servername = NameStr(*PG_GETARG_NAME(0));
	ForeignServer *server = GetForeignServerByName(servername, false);
	AclResult	aclresult;
	KisConfig	config;
	uint8		slot_id[KIS_SHA256_LEN];
	KisAppSlot *slot;

	aclresult = kis_foreign_server_aclcheck(server->serverid, GetUserId(), ACL_USAGE);
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_FOREIGN_SERVER, server->servername);

	/* the credential's copies are wiped with this function's memory */
	kis_config_for_server(server->serverid, &config);
	kis_config_add_credentials(&config, GetUserId());
	kis_hash_credentials(&config, slot_id);
	slot = kis_app_slot_find(slot_id);
	if (slot == NULL)
		PG_RETURN_BOOL(false);

	kis_limiter_reset(slot);
	kis_token_reset(slot);
	kis_app_slot_detach(slot);
	PG_RETURN_BOOL(true);
}

PG_FUNCTION_INFO_V1(kis_fdw_cache_reset);

/*
 * kis_fdw_cache_reset(): forget every cached answer (requests in flight
 * are left to finish).  Returns how many answers were dropped.  EXECUTE is
 * revoked from PUBLIC.
 */
Datum
kis_fdw_cache_reset(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(kis_cache_reset());
}

PG_FUNCTION_INFO_V1(kis_fdw_malloc_bytes);

/*
 * The bytes this backend holds from malloc (in use, arenas and mmap'd
 * blocks alike; memory contexts' blocks included), or NULL where the C
 * library cannot tell.
 */
Datum
kis_fdw_malloc_bytes(PG_FUNCTION_ARGS)
{
#ifdef KIS_HAVE_MALLINFO2
	struct mallinfo2 mi = mallinfo2();

	PG_RETURN_INT64((int64) (mi.uordblks + mi.hblkhd));
#else
	PG_RETURN_NULL();
#endif
}

PG_FUNCTION_INFO_V1(kis_fdw_test_malloc_leak);

static void *volatile kis_last_lost;

/*
 * The soak's self-test: malloc n bytes (1 to 1 MB), touch them and lose
 * them, as a leak in libcurl or jansson would.  Returns n.
 */
Datum
kis_fdw_test_malloc_leak(PG_FUNCTION_ARGS)
{
	int32		n = PG_GETARG_INT32(0);
	char	   *lost;

	if (n < 1 || n > 1024 * 1024)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("kis_fdw_test_malloc_leak: %d bytes is out of range (1 to 1048576)", n)));
	lost = malloc(n);
	if (lost == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	memset(lost, 0x5a, n);
	kis_last_lost = lost;		/* escapes: the compiler keeps the malloc */
	PG_RETURN_INT32(n);
}
