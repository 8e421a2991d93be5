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
 * A slot is found by the hash of the app key, its secret, the environment
 * and the origin of base_url (kis_hash_credentials), so that another
 * role's mapping naming our app key with a wrong secret, or a server
 * pointed at another origin, never reaches our token, schedule or marks
 * (docs/security.md).  It shows the SHA-256 of the app key alone; neither
 * key nor secret is stored.  A scan attaches to its app key's slot for as
 * long as it runs.  A key that has no slot takes a free one, or else
 * reclaims the least recently used slot that no scan holds: first among
 * keys KIS never issued a token to (so cycling made-up keys through a user
 * mapping cannot lock idle real keys out; slots held by paused scans are a
 * known gap, docs/security.md), then among keys every schedule of which is
 * over: the current kis_fdw.token_issue_interval since their last token,
 * and their rate gate's next send.  Forgetting those breaks no rule; the
 * token is lost, and KIS hands the same one back when asked again
 * (docs/tokens-and-rate.md).  A key within its schedule keeps its slot
 * however long it is idle, since a fresh slot would let it issue or send
 * too soon; a new key then finds no slot, and is told when one frees.
 *
 * The table is searched under its spinlock: a handful of 32-byte
 * compares, once per scan.
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

#include "auth.h"
#include "cache.h"
#include "compat.h"
#include "limiter.h"
#include "live.h"
#include "shmem.h"
#include "shmem_internal.h"
#include "util.h"

typedef struct KisSlotTable
{
	slock_t		mutex;			/* protects nused and every slot's key,
								 * in_use, users and last_used */
	int			nslots;
	int			nused;			/* slots ever used: the rest are fresh */
	bool		shared;			/* in shared memory */
	KisAppSlot	slots[FLEXIBLE_ARRAY_MEMBER];
} KisSlotTable;

static int	kis_max_app_keys = 16;
static KisSlotTable *slot_table = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static Size
table_size(int nslots)
{
	return add_size(offsetof(KisSlotTable, slots),
					mul_size(nslots, sizeof(KisAppSlot)));
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
	kis_cache_shmem_request();
	kis_live_shmem_request(kis_max_app_keys);
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
	kis_cache_shmem_startup();
	kis_live_shmem_startup();
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
	kis_cache_define_gucs();
	kis_live_define_gucs();
	kis_install_shmem_request_hook(prev_shmem_request_hook, kis_shmem_request);
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
				(errcode(ERRCODE_WARNING),
				 errmsg("kis_fdw is not in shared_preload_libraries: the rate limit, the access token and shared answers are per session"),
				 errhint("Add kis_fdw to shared_preload_libraries and restart PostgreSQL so that all sessions share one rate limit and one token per app key, and each other's answers.")));
	}
	return slot_table;
}

bool
kis_shmem_is_shared(void)
{
	return get_table()->shared;
}

/* The slot of this credential, or NULL; the caller holds the table's mutex */
static KisAppSlot *
lookup(KisSlotTable *table, const uint8 *slot_id)
{
	for (int i = 0; i < table->nused; i++)
	{
		KisAppSlot *slot = &table->slots[i];

		if (slot->in_use && memcmp(slot->slot_id, slot_id, KIS_SHA256_LEN) == 0)
			return slot;
	}
	return NULL;
}

/*
 * When the schedules of an earned slot are over (see the file header).
 * No scan holds it and the caller holds the table's mutex, so nobody can
 * attach and change them meanwhile.
 */
static TimestampTz
schedule_end(KisAppSlot *slot)
{
	return Max(kis_token_schedule_end(slot), kis_limiter_schedule_end(slot));
}

/*
 * A slot for a key that has none (see the file header), or NULL; then
 * *free_at is when the first earned slot no scan holds will be free, or
 * 0 if scans hold them all.  The caller holds the table's mutex.
 */
static KisAppSlot *
reclaim(KisSlotTable *table, TimestampTz now, TimestampTz *free_at)
{
	KisAppSlot *junk = NULL;
	KisAppSlot *idle = NULL;

	*free_at = 0;
	if (table->nused < table->nslots)
		return &table->slots[table->nused++];
	for (int i = 0; i < table->nslots; i++)
	{
		KisAppSlot *slot = &table->slots[i];
		TimestampTz end;

		if (slot->users > 0)
			continue;
		if (!slot->in_use)
			return slot;
		if (!slot->earned)
		{
			if (junk == NULL || slot->last_used < junk->last_used)
				junk = slot;
			continue;
		}
		end = schedule_end(slot);
		if (end > now)
		{
			if (*free_at == 0 || end < *free_at)
				*free_at = end;
		}
		else if (idle == NULL || slot->last_used < idle->last_used)
			idle = slot;
	}
	return junk != NULL ? junk : idle;
}

/*
 * Attach to the slot of one credential (slot_id, kis_hash_credentials),
 * taking one if it has none; app_key_hash is what statistics
 * show.  kis_app_slot_detach gives it back.
 */
KisAppSlot *
kis_app_slot_attach(const uint8 *slot_id, const uint8 *app_key_hash)
{
	KisSlotTable *table = get_table();
	TimestampTz now = kis_clock_now();
	TimestampTz free_at = 0;
	KisAppSlot *slot;

	SpinLockAcquire(&table->mutex);
	slot = lookup(table, slot_id);
	if (slot == NULL)
	{
		slot = reclaim(table, now, &free_at);
		if (slot != NULL)
		{
			/* no scan holds it: start it afresh (a memset, no call out) */
			kis_slot_init(slot);
			memcpy(slot->slot_id, slot_id, KIS_SHA256_LEN);
			memcpy(slot->app_key_hash, app_key_hash, KIS_SHA256_LEN);
			slot->in_use = true;
		}
	}
	if (slot != NULL)
	{
		slot->users++;
		slot->last_used = now;
	}
	SpinLockRelease(&table->mutex);

	if (slot == NULL && free_at == 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("kis_fdw has no free app-key slot"),
				 errdetail("All %d slots are held by running scans.", table->nslots),
				 errhint("Raise kis_fdw.max_app_keys and restart PostgreSQL, or try again later.")));
	if (slot == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("kis_fdw has no free app-key slot"),
				 errdetail("All %d slots are held by running scans or by app keys that KIS issued a token to less than kis_fdw.token_issue_interval (%d s) ago, or whose rate limit still spaces their requests; the first is free in %d s.",
						   table->nslots, kis_token_issue_interval,
						   (int) ((free_at - now + USECS_PER_SEC - 1) / USECS_PER_SEC)),
				 errhint("Raise kis_fdw.max_app_keys and restart PostgreSQL, or try again then.  A key keeps its slot until it may ask KIS for a token again, so that it never does so too soon.")));
	return slot;
}

/* A scan is done with its app key's slot (never throws: cleanup calls it) */
void
kis_app_slot_detach(KisAppSlot *slot)
{
	KisSlotTable *table = get_table();

	SpinLockAcquire(&table->mutex);
	if (slot->users > 0)
		slot->users--;
	slot->last_used = kis_clock_now();
	SpinLockRelease(&table->mutex);
}

/*
 * Attach to the slot of one credential if it has one (else NULL): like
 * kis_app_slot_attach, but a credential without a slot is not given one.
 */
KisAppSlot *
kis_app_slot_find(const uint8 *slot_id)
{
	KisSlotTable *table = get_table();
	KisAppSlot *slot;

	SpinLockAcquire(&table->mutex);
	slot = lookup(table, slot_id);
	if (slot != NULL)
		slot->users++;
	SpinLockRelease(&table->mutex);
	return slot;
}

/*
 * For the statistics function: slot i, or NULL past the last one ever
 * used; the caller skips those not in use.
 */
KisAppSlot *
kis_app_slot_at(int i)
{
	KisSlotTable *table = get_table();
	int			nused;

	SpinLockAcquire(&table->mutex);
	nused = table->nused;
	SpinLockRelease(&table->mutex);
	return i < nused ? &table->slots[i] : NULL;
}

/*
 * Copy out what kis_fdw_stats shows of a slot; false if the slot holds no
 * key.  The counters are atomics, read without the table's lock.
 */
bool
kis_app_slot_stats(KisAppSlot *slot, KisSlotStats *stats)
{
	if (!slot->in_use)
		return false;
	memcpy(stats->app_key_hash, slot->app_key_hash, KIS_SHA256_LEN);
	for (int c = 0; c < KIS_NUM_COUNTERS; c++)
		stats->counters[c] = pg_atomic_read_u64(&slot->counters[c]);
	stats->wait_max_us = pg_atomic_read_u64(&slot->wait_max_us);
	return true;
}

/*
 * Add n to one of the slot's counters.  slot is NULL for a scan without an
 * app key (a public download).
 */
void
kis_slot_count(KisAppSlot *slot, KisCounter counter, uint64 n)
{
	if (slot != NULL)
		pg_atomic_fetch_add_u64(&slot->counters[counter], n);
}

/* Add one rate-gate wait to the slot's total and maximum */
void
kis_slot_note_wait(KisAppSlot *slot, uint64 wait_us)
{
	uint64		max = pg_atomic_read_u64(&slot->wait_max_us);

	pg_atomic_fetch_add_u64(&slot->counters[KIS_CTR_WAIT_US], wait_us);
	while (wait_us > max &&
		   !pg_atomic_compare_exchange_u64(&slot->wait_max_us, &max, wait_us))
		;
}
