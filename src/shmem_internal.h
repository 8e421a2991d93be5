/*-------------------------------------------------------------------------
 *
 * shmem_internal.h
 *	  The layout of an app-key slot in shared memory.  PRIVATE to the files
 *	  that own what a slot holds: shmem.c (the slot table), limiter.c (the
 *	  rate gate), auth.c (the access token), and fuzz/fuzz_kis.c, which
 *	  checks auth.c's invariants on a slot of its own.  Everyone else sees
 *	  the opaque KisAppSlot of shmem.h and its functions; test/headerscheck.sh
 *	  keeps it so.
 *
 * src/shmem_internal.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef KIS_SHMEM_INTERNAL_H
#define KIS_SHMEM_INTERNAL_H

#include "datatype/timestamp.h"
#include "port/atomics.h"
#include "storage/spin.h"

#include "auth.h"
#include "shmem.h"

struct KisAppSlot
{
	uint8		slot_id[KIS_SHA256_LEN];	/* whose slot: the hash of
											 * kis_hash_credentials */
	uint8		app_key_hash[KIS_SHA256_LEN];	/* SHA-256 of the app key, shown */

	/*
	 * rate gate (limiter.c), on kis_clock_now()'s clock: the theoretical
	 * arrival time of the next send, the end of a back-off KIS asked for,
	 * and how many reservations fetchers hold
	 */
	pg_atomic_uint64 tat;
	pg_atomic_uint64 penalty_until;
	pg_atomic_uint32 reservations;

	/* the slot table's (shmem.c), under its mutex */
	bool		in_use;			/* holds app_key_hash's state */
	bool		earned;			/* KIS issued this key a token, or said it
								 * had (EGW00133); set by auth.c */
	int			users;			/* scans attached */
	TimestampTz last_used;

	/* access token (auth.c); the fields below mutex are under it */
	pg_atomic_uint64 claim;		/* who is issuing a token (pid, serial), or 0 */
	pg_atomic_uint64 generation;	/* bumped at each new token */
	slock_t		mutex;
	uint8		token_creds[KIS_SHA256_LEN];	/* whose token (env, key, secret) */
	char		token[KIS_TOKEN_MAX];	/* "" when none */
	uint8		token_hash[KIS_SHA256_LEN];	/* SHA-256 of the token */
	uint8		rejected_hash[KIS_SHA256_LEN];	/* of the last one KIS rejected */
	uint64		handed_back;	/* generation of a token equal to a rejected one */
	/* times on kis_clock_now()'s clock, never the wall clock */
	TimestampTz issued_at;
	TimestampTz expires_at;
	TimestampTz last_issued;	/* last issuance KIS made for this key */
	TimestampTz retry_after;	/* after a passing tokenP failure */
	TimestampTz claim_deadline; /* the claim may be taken over after it */

	pg_atomic_uint64 counters[KIS_NUM_COUNTERS];
	pg_atomic_uint64 wait_max_us;
};

/* A fresh, empty slot (shmem.c's table, and the fuzz harness's own) */
static inline void
kis_slot_init(KisAppSlot *slot)
{
	memset(slot, 0, sizeof(KisAppSlot));
	SpinLockInit(&slot->mutex);
	pg_atomic_init_u64(&slot->tat, 0);
	pg_atomic_init_u64(&slot->penalty_until, 0);
	pg_atomic_init_u32(&slot->reservations, 0);
	pg_atomic_init_u64(&slot->claim, 0);
	pg_atomic_init_u64(&slot->generation, 0);
	for (int c = 0; c < KIS_NUM_COUNTERS; c++)
		pg_atomic_init_u64(&slot->counters[c], 0);
	pg_atomic_init_u64(&slot->wait_max_us, 0);
}

#endif							/* KIS_SHMEM_INTERNAL_H */
