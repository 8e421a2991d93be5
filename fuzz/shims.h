/*-------------------------------------------------------------------------
 *
 * shims.h
 *	  What fuzz/shims.c offers the harness beyond the backend's own API:
 *	  the fake clock, the memory ceiling and the last ERROR raised.
 *
 *-------------------------------------------------------------------------
 */
#ifndef KIS_FUZZ_SHIMS_H
#define KIS_FUZZ_SHIMS_H

#include "postgres.h"
#include "datatype/timestamp.h"

/* palloc beyond this many live bytes fails like an out-of-memory backend */
extern Size fuzz_memory_limit;
extern Size fuzz_bytes_live;
extern Size fuzz_bytes_peak;

/* GetCurrentTimestamp() returns this */
extern TimestampTz fuzz_now;

/* The last ereport: level, message, detail and where it was raised */
extern int	fuzz_error_level;
extern char fuzz_error_message[1024];
extern char fuzz_error_detail[1024];
extern const char *fuzz_error_file;
extern int	fuzz_error_line;
extern int	fuzz_error_count;

#endif							/* KIS_FUZZ_SHIMS_H */
