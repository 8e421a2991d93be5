/*-------------------------------------------------------------------------
 *
 * util.c
 *	  Small helpers with no home of their own: the clock every schedule of
 *	  kis_fdw runs on, SHA-256, sorting lists of strings, and memory carved
 *	  in pieces that are freed only all together.
 *
 * The clock is CLOCK_MONOTONIC in microseconds: system-wide on Linux, so
 * comparable between the backends sharing shared memory, and never stepped
 * by NTP or an administrator (docs/tokens-and-rate.md).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <time.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#include "lib/stringinfo.h"

#include "compat.h"
#include "util.h"

/*
 * Microseconds on the monotonic clock.  Never throws (libcurl's timer
 * callback calls it): kis_clock_check, at load, made sure the clock
 * exists, and then clock_gettime cannot fail.
 */
TimestampTz
kis_clock_now(void)
{
	struct timespec ts;

	(void) clock_gettime(CLOCK_MONOTONIC, &ts);
	return (TimestampTz) ts.tv_sec * USECS_PER_SEC + ts.tv_nsec / 1000;
}

/* At load: refuse to run without a monotonic clock */
void
kis_clock_check(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("kis_fdw needs CLOCK_MONOTONIC: %m")));
}

/*
 * The SHA-256 implementation, looked up once per process (compat.h), at
 * load: with shared_preload_libraries every backend inherits it from the
 * postmaster.  Failing there is no error (it would stop the server): the
 * first digest then tries again and fails the query.
 */
static const EVP_MD *sha256_md = NULL;

void
kis_sha256_init(void)
{
	if (sha256_md == NULL)
	{
		sha256_md = kis_fetch_sha256();
		if (sha256_md == NULL)
			ERR_clear_error();
	}
}

/* SHA-256 of data into out (KIS_SHA256_LEN bytes) */
void
kis_sha256(const void *data, size_t len, uint8 *out)
{
	unsigned int outlen;

	kis_sha256_init();
	if (sha256_md == NULL ||
		EVP_Digest(data, len, out, &outlen, sha256_md, NULL) != 1)
	{
		ERR_clear_error();
		elog(ERROR, "kis_fdw: SHA-256 failed");
	}
}

/* list_sort comparator for lists of C strings */
int
kis_compare_strings(const ListCell *a, const ListCell *b)
{
	return strcmp(lfirst(a), lfirst(b));
}

/* Sort a list of strings and drop repeats, in place */
List *
kis_sort_unique_strings(List *values)
{
	List	   *unique = NIL;
	ListCell   *lc;

	list_sort(values, kis_compare_strings);
	foreach(lc, values)
	{
		if (unique == NIL || strcmp(llast(unique), lfirst(lc)) != 0)
			unique = lappend(unique, lfirst(lc));
	}
	list_free(values);
	return unique;
}

/*
 * A copy of s for a message: control characters as \xNN, so that a value
 * echoed in an error cannot start a line of its own in the server log.
 */
char *
kis_printable(const char *s)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (const unsigned char *p = (const unsigned char *) s; *p; p++)
	{
		if (*p < 0x20 || *p == 0x7f)
			appendStringInfo(&buf, "\\x%02x", *p);
		else
			appendStringInfoChar(&buf, (char) *p);
	}
	return buf.data;
}

/* Carve from cxt from now on (after a reset of cxt too) */
void
kis_carve_init(KisCarve *c, MemoryContext cxt)
{
	c->cxt = cxt;
	c->next = NULL;
	c->left = 0;
}

/*
 * n bytes, MAXALIGNed.  Blocks stay under AllocSet's chunk limit, so that
 * they come from the context's blocks (the join arena's kept one) rather
 * than from a malloc of their own.
 */
#define KIS_CARVE_BLOCK		(8 * 1024)

void *
kis_carve(KisCarve *c, Size n)
{
	n = MAXALIGN(n);
	if (n > c->left)
	{
		Size		block = Max(n, KIS_CARVE_BLOCK);

		c->next = MemoryContextAlloc(c->cxt, block);
		c->left = block;
	}
	c->next += n;
	c->left -= n;
	return c->next - n;
}
