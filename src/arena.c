/*-------------------------------------------------------------------------
 *
 * arena.c
 *	  A backend's reusable memory for the batched join's fetched rows.
 *
 * A dashboard runs the same join again and again.  Its rows are a few
 * hundred kilobytes; freed at the end of each query, they are handed back
 * to the kernel (malloc trims the heap) and faulted in again by the next
 * query, which costs more than the join itself.  The arena is one memory
 * context that outlives queries: its first KIS_ARENA_KEEP bytes stay
 * allocated, and a reset only empties them.  It is lent to one owner at a
 * time and emptied when the owner's context is reset or deleted, so an
 * error cannot leave rows behind; a second borrower meanwhile (a cursor
 * open over another join) gets an ordinary context.  docs/batched-join.md,
 * "Memory", says what it keeps and why.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/memutils.h"

#include "arena.h"

/* kept between queries; what a join needs beyond it is freed at its end */
#define KIS_ARENA_KEEP		(512 * 1024)
#define KIS_ARENA_BLOCK		(64 * 1024)

static MemoryContext arena = NULL;
static bool lent = false;

/* The owner's context is reset or deleted: empty the arena, take it back */
static void
give_back(void *arg)
{
	MemoryContextReset(arena);
	lent = false;
}

/*
 * The arena, empty, lent until owner is reset or deleted; or, when it is
 * lent already, a new context under owner.  Either way what is allocated
 * in it is gone with owner.
 */
MemoryContext
kis_arena_take(MemoryContext owner)
{
	MemoryContextCallback *cb;

	if (lent)
		return AllocSetContextCreate(owner, "kis_fdw join rows",
									 ALLOCSET_DEFAULT_SIZES);
	if (arena == NULL)
		arena = AllocSetContextCreate(TopMemoryContext, "kis_fdw join arena",
									  KIS_ARENA_KEEP, KIS_ARENA_BLOCK,
									  ALLOCSET_DEFAULT_MAXSIZE);
	cb = MemoryContextAlloc(owner, sizeof(MemoryContextCallback));
	cb->func = give_back;
	cb->arg = NULL;
	MemoryContextRegisterResetCallback(owner, cb);
	lent = true;
	return arena;
}
