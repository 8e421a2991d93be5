/*-------------------------------------------------------------------------
 *
 * jansson_probe.c
 *	  A stand-in for another extension that uses jansson in the same
 *	  backend as kis_fdw (built and loaded by test/behaviour/misc.py,
 *	  test_jansson_untouched).  jansson's allocator is a process-wide
 *	  setting: had kis_fdw pointed it at palloc, this module's documents
 *	  would live in whatever memory context happened to be current and be
 *	  freed under it.  jansson_probe_allocator() says whether jansson still
 *	  allocates with malloc and free.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <stdlib.h>

#include <jansson.h>

#include "fmgr.h"

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(jansson_probe_allocator);

Datum
jansson_probe_allocator(PG_FUNCTION_ARGS)
{
	json_malloc_t m;
	json_free_t f;

	json_get_alloc_funcs(&m, &f);
	PG_RETURN_BOOL(m == malloc && f == free);
}
