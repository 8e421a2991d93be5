/*-------------------------------------------------------------------------
 *
 * arena.h
 *	  A backend's reusable memory for the batched join's fetched rows,
 *	  kept between queries (arena.c).
 *
 * src/arena.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef KIS_ARENA_H
#define KIS_ARENA_H

#include "utils/palloc.h"

extern MemoryContext kis_arena_take(MemoryContext owner);

#endif							/* KIS_ARENA_H */
