/*-------------------------------------------------------------------------
 *
 * util.h
 *	  Small helpers with no home of their own: the monotonic clock, SHA-256,
 *	  string lists and carved memory (util.c).
 *
 * src/util.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef KIS_UTIL_H
#define KIS_UTIL_H

#include "datatype/timestamp.h"
#include "nodes/pg_list.h"

#define KIS_SHA256_LEN 32

/*
 * Memory carved one piece after another from blocks of a context, for
 * many small pieces freed only all together (with the context): no chunk
 * header and no rounding up per piece.  Set up again after a reset.
 */
typedef struct KisCarve
{
	MemoryContext cxt;
	char	   *next;
	Size		left;
} KisCarve;

extern TimestampTz kis_clock_now(void);
extern void kis_clock_check(void);
extern void kis_sha256_init(void);
extern void kis_sha256(const void *data, size_t len, uint8 *out);
extern int	kis_compare_strings(const ListCell *a, const ListCell *b);
extern List *kis_sort_unique_strings(List *values);
extern char *kis_printable(const char *s);
extern void kis_carve_init(KisCarve *c, MemoryContext cxt);
extern void *kis_carve(KisCarve *c, Size n);

#endif							/* KIS_UTIL_H */
