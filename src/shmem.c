/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  The app-key slots: one per app key, holding what all sessions using
 *	  that key must share — the rate gate, the access token, the counters.
 *
 * With shared_preload_libraries = 'kis_fdw' the slot table lives in shared
 * memory (sized by kis_fdw.max_app_keys), so every session, cron job and
 * materialized-view refresh stays under one limit and shares one token.
 * Without it the same table is kept in backend memory: everything works,
 * per session, and a NOTICE says so once.
 *
 * A slot is found by the SHA-256 of the app key; the key itself is never
 * stored.  Slots are never freed (a cluster uses a handful of keys).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "kis_fdw.h"

typedef struct KisSlotTable
{
	slock_t		mutex;			/* protects nused and slot claiming */
	int			nslots;
	int			nused;
	bool		shared;			/* in shared memory */
	KisKeySlot	slots[FLEXIBLE_ARRAY_MEMBER];
} KisSlotTable;

static int	kis_max_app_keys = 16;
static KisSlotTable *slot_table = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static Size
table_size(int nslots)
{
	return add_size(offsetof(KisSlotTable, slots),
					mul_size(nslots, sizeof(KisKeySlot)));
}

static void
init_table(KisSlotTable *table, int nslots, bool shared)
{
	memset(table, 0, table_size(nslots));
	SpinLockInit(&table->mutex);
	table->nslots = nslots;
	table->shared = shared;
	for (int i = 0; i < nslots; i++)
		kis_slot_init(&table->slots[i]);
}

static void
kis_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(table_size(kis_max_app_keys));
}

static void
kis_shmem_startup(void)
{
	bool		found;
	KisSlotTable *table;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	table = ShmemInitStruct("kis_fdw app-key slots", table_size(kis_max_app_keys), &found);
	if (!found)
		init_table(table, kis_max_app_keys, true);
	LWLockRelease(AddinShmemInitLock);
	slot_table = table;
}

/* Called from _PG_init: shared memory only while preloading */
void
kis_shmem_init(void)
{
	kis_clock_check();			/* slots keep times on this clock */
	if (!process_shared_preload_libraries_in_progress)
		return;

	DefineCustomIntVariable("kis_fdw.max_app_keys",
							"Number of app keys whose rate limit and token are shared.",
							NULL,
							&kis_max_app_keys,
							16, 1, 1024,
							PGC_POSTMASTER, 0,
							NULL, NULL, NULL);
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = kis_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = kis_shmem_startup;
}

/* The table: shared if preloaded, else this backend's own (and say so once) */
static KisSlotTable *
get_table(void)
{
	if (slot_table == NULL)
	{
		KisSlotTable *table = MemoryContextAllocZero(TopMemoryContext,
													 table_size(kis_max_app_keys));

		init_table(table, kis_max_app_keys, false);
		slot_table = table;
		ereport(NOTICE,
				(errmsg("kis_fdw is not in shared_preload_libraries: the rate limit and the access token are per session"),
				 errhint("Add kis_fdw to shared_preload_libraries and restart PostgreSQL so that all sessions share one rate limit and one token per app key.")));
	}
	return slot_table;
}

bool
kis_shmem_is_shared(void)
{
	return get_table()->shared;
}

/* The slot of one app key (by its hash), claimed on first use */
KisKeySlot *
kis_key_slot(const uint8 *key_hash)
{
	KisSlotTable *table = get_table();
	KisKeySlot *slot;

	/* slots are only ever added, so a look without the lock first is safe */
	slot = kis_key_slot_find(key_hash);
	if (slot != NULL)
		return slot;

	SpinLockAcquire(&table->mutex);
	for (int i = 0; i < table->nused; i++)
	{
		if (memcmp(table->slots[i].key_hash, key_hash, KIS_KEY_HASH_LEN) == 0)
		{
			slot = &table->slots[i];
			break;
		}
	}
	if (slot == NULL && table->nused < table->nslots)
	{
		slot = &table->slots[table->nused];
		memcpy(slot->key_hash, key_hash, KIS_KEY_HASH_LEN);
		pg_write_barrier();
		table->nused++;
	}
	SpinLockRelease(&table->mutex);

	if (slot == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("kis_fdw has no free app-key slot"),
				 errdetail("All %d slots are in use by other app keys.", table->nslots),
				 errhint("Raise kis_fdw.max_app_keys and restart PostgreSQL.")));
	return slot;
}

/* The slot of one app key, or NULL if it has none (nothing is claimed) */
KisKeySlot *
kis_key_slot_find(const uint8 *key_hash)
{
	KisSlotTable *table = get_table();
	int			nused;

	SpinLockAcquire(&table->mutex);
	nused = table->nused;
	SpinLockRelease(&table->mutex);
	for (int i = 0; i < nused; i++)
	{
		if (memcmp(table->slots[i].key_hash, key_hash, KIS_KEY_HASH_LEN) == 0)
			return &table->slots[i];
	}
	return NULL;
}

/* For the statistics function: slot i, or NULL past the last one in use */
KisKeySlot *
kis_key_slot_at(int i)
{
	KisSlotTable *table = get_table();
	int			nused;

	SpinLockAcquire(&table->mutex);
	nused = table->nused;
	SpinLockRelease(&table->mutex);
	return i < nused ? &table->slots[i] : NULL;
}

/* Add one rate-gate wait to the slot's total and maximum */
void
kis_slot_note_wait(KisKeySlot *slot, uint64 wait_us)
{
	uint64		max = pg_atomic_read_u64(&slot->wait_max_us);

	pg_atomic_fetch_add_u64(&slot->counters[KIS_CTR_WAIT_US], wait_us);
	while (wait_us > max &&
		   !pg_atomic_compare_exchange_u64(&slot->wait_max_us, &max, wait_us))
		;
}
