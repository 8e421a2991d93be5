/*-------------------------------------------------------------------------
 *
 * shims.c
 *	  The few backend symbols that src/response.c, src/requests.c,
 *	  src/endpoints.c, src/auth.c and src/outcome.c need, so that they can be built and
 *	  fuzzed outside the server, against the real server headers of
 *	  PostgreSQL 15 to 18.  What differs between majors is decided in one
 *	  place, "Version differences" below.
 *
 * Memory contexts are real trees whose every chunk is its own malloc()
 * block: AddressSanitizer then sees each palloc chunk with its own red
 * zones, a pfree is a real free (use after free is caught), and deleting a
 * context frees all it holds (so LeakSanitizer reports only what escaped
 * the contexts).  The owning context is stored in the word just before
 * each chunk, as AllocSet did up to 15, so that 15's inline
 * GetMemoryChunkContext() (utils/memutils.h) works unchanged; from 16 on
 * chunk headers are MemoryChunks that only mcxt.c reads, and the shims
 * define GetMemoryChunkContext() themselves.
 *
 * ereport(ERROR) longjmps to PG_exception_stack like the backend does; the
 * harness decides whether that ERROR was a deliberate one.  An ERROR with
 * no handler, a FATAL or a PANIC aborts.
 *
 * The date functions are copies of PostgreSQL 15's date2j, j2date
 * (utils/adt/datetime.c) and tm2timestamp (utils/adt/timestamp.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <time.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "nodes/memnodes.h"
#include "nodes/pg_list.h"
#include "pgtime.h"
#include "storage/s_lock.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "shims.h"
#include "text.h"

/* ----------------------------------------------------------------
 * Version differences (the only place that tests PG_VERSION_NUM)
 * ----------------------------------------------------------------
 */
#if PG_VERSION_NUM >= 160000
/* 16: GetMemoryChunkContext() became a function of mcxt.c (MemoryChunk) */
#define FUZZ_DEFINE_GET_MEMORY_CHUNK_CONTEXT
/* 16: appendBinaryStringInfo() takes its data as const void * */
typedef const void *FuzzBinaryData;
#else
typedef const char *FuzzBinaryData;
#endif

#ifdef USE_ASSERT_CHECKING
/*
 * Headers of an assertion-enabled server (--enable-cassert, as the tests
 * build 18) compile Assert() into calls of this: report as the backend does
 * and abort, so that the fuzzer keeps the input.  Its errorType argument went
 * away in 16.
 */
void
#if PG_VERSION_NUM >= 160000
ExceptionalCondition(const char *conditionName, const char *fileName, int lineNumber)
#else
ExceptionalCondition(const char *conditionName, const char *errorType,
					 const char *fileName, int lineNumber)
#endif
{
	fprintf(stderr, "TRAP: failed Assert(\"%s\"), File: \"%s\", Line: %d\n",
			conditionName, fileName, lineNumber);
	abort();
}
#endif

/* ----------------------------------------------------------------
 * Globals the headers declare
 * ----------------------------------------------------------------
 */
MemoryContext CurrentMemoryContext = NULL;
MemoryContext TopMemoryContext = NULL;
MemoryContext ErrorContext = NULL;
sigjmp_buf *PG_exception_stack = NULL;
ErrorContextCallback *error_context_stack = NULL;
int			MyProcPid = 4242;

/* ----------------------------------------------------------------
 * Memory contexts
 * ----------------------------------------------------------------
 */
typedef struct FuzzChunk
{
	struct FuzzChunk *prev;
	struct FuzzChunk *next;
	Size		size;
	MemoryContext context;		/* must be the word just before the data */
} FuzzChunk;

StaticAssertDecl(sizeof(FuzzChunk) % MAXIMUM_ALIGNOF == 0, "chunk header is not aligned");

typedef struct FuzzContext
{
	MemoryContextData hdr;
	FuzzChunk	chunks;			/* circular list head */
	Size		nchunks;
} FuzzContext;

Size		fuzz_bytes_live = 0;
Size		fuzz_bytes_peak = 0;

static void
fuzz_oom(const char *what, Size size)
{
	ereport(ERROR,
			(errcode(ERRCODE_OUT_OF_MEMORY),
			 errmsg("out of memory"),
			 errdetail("Failed on request of size %zu in %s.", size, what)));
}

static void *
chunk_alloc(MemoryContext context, Size size, int flags)
{
	FuzzContext *fc = (FuzzContext *) context;
	FuzzChunk  *ch;

	if (context == NULL)
		abort();
	if (!((flags & MCXT_ALLOC_HUGE) ? AllocHugeSizeIsValid(size) : AllocSizeIsValid(size)))
		elog(ERROR, "invalid memory alloc request size %zu", size);
	if (fuzz_bytes_live + size > fuzz_memory_limit)
	{
		if (flags & MCXT_ALLOC_NO_OOM)
			return NULL;
		fuzz_oom(context->name, size);
	}
	ch = malloc(sizeof(FuzzChunk) + size);
	if (ch == NULL)
	{
		if (flags & MCXT_ALLOC_NO_OOM)
			return NULL;
		fuzz_oom(context->name, size);
	}
	ch->size = size;
	ch->context = context;
	ch->next = fc->chunks.next;
	ch->prev = &fc->chunks;
	fc->chunks.next->prev = ch;
	fc->chunks.next = ch;
	fc->nchunks++;
	context->isReset = false;
	context->mem_allocated += size;
	fuzz_bytes_live += size;
	if (fuzz_bytes_live > fuzz_bytes_peak)
		fuzz_bytes_peak = fuzz_bytes_live;
	if (flags & MCXT_ALLOC_ZERO)
		memset(ch + 1, 0, size);
	return ch + 1;
}

static FuzzChunk *
chunk_of(void *pointer)
{
	FuzzChunk  *ch = ((FuzzChunk *) pointer) - 1;

	if (ch->context == NULL || ch->context->type != T_AllocSetContext)
	{
		fprintf(stderr, "shims: pfree/repalloc of a pointer that is not a chunk: %p\n", pointer);
		abort();
	}
	return ch;
}

static void
chunk_free(FuzzChunk *ch)
{
	FuzzContext *fc = (FuzzContext *) ch->context;

	ch->prev->next = ch->next;
	ch->next->prev = ch->prev;
	fc->nchunks--;
	fc->hdr.mem_allocated -= ch->size;
	fuzz_bytes_live -= ch->size;
	ch->context = NULL;
	free(ch);
}

MemoryContext
AllocSetContextCreateInternal(MemoryContext parent, const char *name,
							  Size minContextSize, Size initBlockSize,
							  Size maxBlockSize)
{
	FuzzContext *fc = calloc(1, sizeof(FuzzContext));

	if (fc == NULL)
		abort();
	fc->hdr.type = T_AllocSetContext;
	fc->hdr.isReset = true;
	fc->hdr.name = name;
	fc->hdr.parent = parent;
	fc->chunks.next = fc->chunks.prev = &fc->chunks;
	if (parent != NULL)
	{
		fc->hdr.nextchild = parent->firstchild;
		if (parent->firstchild != NULL)
			parent->firstchild->prevchild = &fc->hdr;
		parent->firstchild = &fc->hdr;
	}
	return &fc->hdr;
}

static void
run_callbacks(MemoryContext context)
{
	MemoryContextCallback *cb;

	while ((cb = context->reset_cbs) != NULL)
	{
		context->reset_cbs = cb->next;
		cb->func(cb->arg);
	}
}

static void
free_chunks(MemoryContext context)
{
	FuzzContext *fc = (FuzzContext *) context;

	while (fc->chunks.next != &fc->chunks)
		chunk_free(fc->chunks.next);
	context->isReset = true;
}

void
MemoryContextDelete(MemoryContext context)
{
	if (context == NULL)
		abort();
	while (context->firstchild != NULL)
		MemoryContextDelete(context->firstchild);
	run_callbacks(context);
	if (context->parent != NULL)
	{
		if (context->prevchild != NULL)
			context->prevchild->nextchild = context->nextchild;
		else
			context->parent->firstchild = context->nextchild;
		if (context->nextchild != NULL)
			context->nextchild->prevchild = context->prevchild;
	}
	free_chunks(context);
	if (CurrentMemoryContext == context)
		CurrentMemoryContext = NULL;	/* a later palloc aborts: a finding */
	context->type = T_Invalid;
	free(context);
}

void
MemoryContextDeleteChildren(MemoryContext context)
{
	while (context->firstchild != NULL)
		MemoryContextDelete(context->firstchild);
}

void
MemoryContextReset(MemoryContext context)
{
	MemoryContextDeleteChildren(context);
	run_callbacks(context);
	free_chunks(context);
}

void
MemoryContextResetOnly(MemoryContext context)
{
	run_callbacks(context);
	free_chunks(context);
}

void
MemoryContextRegisterResetCallback(MemoryContext context, MemoryContextCallback *cb)
{
	cb->next = context->reset_cbs;
	context->reset_cbs = cb;
}

Size
MemoryContextMemAllocated(MemoryContext context, bool recurse)
{
	Size		total = context->mem_allocated;

	if (recurse)
	{
		for (MemoryContext child = context->firstchild; child; child = child->nextchild)
			total += MemoryContextMemAllocated(child, true);
	}
	return total;
}

void *
MemoryContextAlloc(MemoryContext context, Size size)
{
	return chunk_alloc(context, size, 0);
}

void *
MemoryContextAllocZero(MemoryContext context, Size size)
{
	return chunk_alloc(context, size, MCXT_ALLOC_ZERO);
}

void *
MemoryContextAllocZeroAligned(MemoryContext context, Size size)
{
	return chunk_alloc(context, size, MCXT_ALLOC_ZERO);
}

void *
MemoryContextAllocExtended(MemoryContext context, Size size, int flags)
{
	return chunk_alloc(context, size, flags);
}

void *
palloc(Size size)
{
	return chunk_alloc(CurrentMemoryContext, size, 0);
}

void *
palloc0(Size size)
{
	return chunk_alloc(CurrentMemoryContext, size, MCXT_ALLOC_ZERO);
}

void *
palloc_extended(Size size, int flags)
{
	return chunk_alloc(CurrentMemoryContext, size, flags);
}

void
pfree(void *pointer)
{
	chunk_free(chunk_of(pointer));
}

#ifdef FUZZ_DEFINE_GET_MEMORY_CHUNK_CONTEXT
MemoryContext
GetMemoryChunkContext(void *pointer)
{
	return chunk_of(pointer)->context;
}
#endif

void *
repalloc(void *pointer, Size size)
{
	FuzzChunk  *ch = chunk_of(pointer);
	void	   *grown = chunk_alloc(ch->context, size, 0);

	memcpy(grown, pointer, Min(size, ch->size));
	chunk_free(ch);
	return grown;
}

void *
repalloc_huge(void *pointer, Size size)
{
	FuzzChunk  *ch = chunk_of(pointer);
	void	   *grown = chunk_alloc(ch->context, size, MCXT_ALLOC_HUGE);

	memcpy(grown, pointer, Min(size, ch->size));
	chunk_free(ch);
	return grown;
}

char *
MemoryContextStrdup(MemoryContext context, const char *string)
{
	Size		len = strlen(string) + 1;
	char	   *copy = chunk_alloc(context, len, 0);

	memcpy(copy, string, len);
	return copy;
}

char *
pstrdup(const char *in)
{
	return MemoryContextStrdup(CurrentMemoryContext, in);
}

char *
pnstrdup(const char *in, Size len)
{
	char	   *out;

	len = strnlen(in, len);
	out = palloc(len + 1);
	memcpy(out, in, len);
	out[len] = '\0';
	return out;
}

char *
pchomp(const char *in)
{
	size_t		n = strlen(in);

	while (n > 0 && in[n - 1] == '\n')
		n--;
	return pnstrdup(in, n);
}

/* ----------------------------------------------------------------
 * Formatting (PostgreSQL's own snprintf is not needed: no %m here)
 * ----------------------------------------------------------------
 */
size_t
pvsnprintf(char *buf, size_t len, const char *fmt, va_list args)
{
	int			n = vsnprintf(buf, len, fmt, args);

	if (n < 0)
		elog(ERROR, "vsnprintf failed: %s", fmt);
	if ((size_t) n >= len)
		return (size_t) n + 1;
	return (size_t) n;
}

char *
psprintf(const char *fmt,...)
{
	size_t		len = 128;

	for (;;)
	{
		char	   *result = palloc(len);
		va_list		args;
		size_t		need;

		va_start(args, fmt);
		need = pvsnprintf(result, len, fmt, args);
		va_end(args);
		if (need < len)
			return result;
		pfree(result);
		len = need;
	}
}

/* StringInfo, as lib/stringinfo.c has it */
void
initStringInfo(StringInfo str)
{
	str->data = palloc(1024);
	str->maxlen = 1024;
	resetStringInfo(str);
}

#if PG_VERSION_NUM >= 170000
/* 17: PostgreSQL's JSON parser (libpgcommon, json_pick.c) frees its strings so */
void
destroyStringInfo(StringInfo str)
{
	pfree(str->data);
	pfree(str);
}
#endif

StringInfo
makeStringInfo(void)
{
	StringInfo	res = palloc(sizeof(StringInfoData));

	initStringInfo(res);
	return res;
}

void
resetStringInfo(StringInfo str)
{
	str->data[0] = '\0';
	str->len = 0;
	str->cursor = 0;
}

void
enlargeStringInfo(StringInfo str, int needed)
{
	int			newlen;

	if (needed < 0 || ((Size) needed) >= (MaxAllocSize - (Size) str->len))
		elog(ERROR, "out of memory: cannot enlarge string buffer containing %d bytes by %d more bytes",
			 str->len, needed);
	needed += str->len + 1;
	if (needed <= str->maxlen)
		return;
	newlen = 2 * str->maxlen;
	while (needed > newlen)
		newlen = 2 * newlen;
	if (newlen > (int) MaxAllocSize)
		newlen = (int) MaxAllocSize;
	str->data = repalloc(str->data, newlen);
	str->maxlen = newlen;
}

int
appendStringInfoVA(StringInfo str, const char *fmt, va_list args)
{
	int			avail = str->maxlen - str->len;
	size_t		nprinted;

	nprinted = pvsnprintf(str->data + str->len, (size_t) avail, fmt, args);
	if (nprinted < (size_t) avail)
	{
		str->len += (int) nprinted;
		return 0;
	}
	str->data[str->len] = '\0';
	return (int) nprinted;
}

void
appendStringInfo(StringInfo str, const char *fmt,...)
{
	for (;;)
	{
		va_list		args;
		int			needed;

		va_start(args, fmt);
		needed = appendStringInfoVA(str, fmt, args);
		va_end(args);
		if (needed == 0)
			break;
		enlargeStringInfo(str, needed);
	}
}

void
appendBinaryStringInfo(StringInfo str, FuzzBinaryData data, int datalen)
{
	enlargeStringInfo(str, datalen);
	memcpy(str->data + str->len, data, datalen);
	str->len += datalen;
	str->data[str->len] = '\0';
}

void
appendStringInfoString(StringInfo str, const char *s)
{
	appendBinaryStringInfo(str, s, strlen(s));
}

void
appendStringInfoChar(StringInfo str, char ch)
{
	if (str->len + 1 >= str->maxlen)
		enlargeStringInfo(str, 1);
	str->data[str->len] = ch;
	str->len++;
	str->data[str->len] = '\0';
}

/* ----------------------------------------------------------------
 * Lists (the array-based List of 13 and later, enough for lappend)
 * ----------------------------------------------------------------
 */
static List *
new_list(NodeTag type, int min_size)
{
	int			max_size = Max(min_size, 4);
	List	   *list = palloc(offsetof(List, initial_elements) + max_size * sizeof(ListCell));

	list->type = type;
	list->length = min_size;
	list->max_length = max_size;
	list->elements = list->initial_elements;
	return list;
}

static void
enlarge_list(List *list, int min_size)
{
	int			new_max_len = Max(16, list->max_length * 2);

	while (new_max_len < min_size)
		new_max_len *= 2;
	if (list->elements == list->initial_elements)
	{
		list->elements = MemoryContextAlloc(GetMemoryChunkContext(list),
											new_max_len * sizeof(ListCell));
		memcpy(list->elements, list->initial_elements, list->length * sizeof(ListCell));
	}
	else
		list->elements = repalloc(list->elements, new_max_len * sizeof(ListCell));
	list->max_length = new_max_len;
}

List *
lappend(List *list, void *datum)
{
	if (list == NIL)
		list = new_list(T_List, 1);
	else
	{
		if (list->length >= list->max_length)
			enlarge_list(list, list->length + 1);
		list->length++;
	}
	llast(list) = datum;
	return list;
}

List *
list_make1_impl(NodeTag t, ListCell datum1)
{
	List	   *list = new_list(t, 1);

	list->elements[0] = datum1;
	return list;
}

List *
list_make2_impl(NodeTag t, ListCell datum1, ListCell datum2)
{
	List	   *list = new_list(t, 2);

	list->elements[0] = datum1;
	list->elements[1] = datum2;
	return list;
}

bool
list_member_ptr(const List *list, const void *datum)
{
	const ListCell *cell;

	foreach(cell, list)
	{
		if (lfirst(cell) == datum)
			return true;
	}
	return false;
}

void
list_free(List *list)
{
	if (list == NIL)
		return;
	if (list->elements != list->initial_elements)
		pfree(list->elements);
	pfree(list);
}

void
list_sort(List *list, list_sort_comparator cmp)
{
	if (list != NIL && list->length > 1)
		qsort(list->elements, list->length, sizeof(ListCell),
			  (int (*) (const void *, const void *)) cmp);
}

/* ----------------------------------------------------------------
 * Errors
 * ----------------------------------------------------------------
 */
int			fuzz_error_level = 0;
char		fuzz_error_message[1024];
char		fuzz_error_detail[1024];
const char *fuzz_error_file = NULL;
int			fuzz_error_line = 0;
int			fuzz_error_count = 0;

bool
errstart(int elevel, const char *domain)
{
	fuzz_error_level = elevel;
	fuzz_error_message[0] = '\0';
	fuzz_error_detail[0] = '\0';
	return true;
}

bool
errstart_cold(int elevel, const char *domain)
{
	return errstart(elevel, domain);
}

void
errfinish(const char *filename, int lineno, const char *funcname)
{
	fuzz_error_file = filename;
	fuzz_error_line = lineno;
	if (fuzz_error_level < ERROR)
		return;
	fuzz_error_count++;
	if (fuzz_error_level == ERROR && PG_exception_stack != NULL)
		siglongjmp(*PG_exception_stack, 1);
	fprintf(stderr, "shims: unhandled %s at %s:%d (%s): %s [%s]\n",
			fuzz_error_level >= PANIC ? "PANIC" : fuzz_error_level >= FATAL ? "FATAL" : "ERROR",
			filename, lineno, funcname, fuzz_error_message, fuzz_error_detail);
	abort();
}

/* PG_RE_THROW(): on to the next PG_TRY out, as errfinish goes */
void
pg_re_throw(void)
{
	if (PG_exception_stack != NULL)
		siglongjmp(*PG_exception_stack, 1);
	fprintf(stderr, "shims: PG_RE_THROW with no PG_TRY around it\n");
	abort();
}

int
errcode(int sqlerrcode)
{
	return 0;
}

#define FORMAT_INTO(buf, fmt) \
	do { \
		va_list		args; \
		va_start(args, fmt); \
		vsnprintf((buf), sizeof(buf), (fmt), args); \
		va_end(args); \
	} while (0)

int
errmsg(const char *fmt,...)
{
	FORMAT_INTO(fuzz_error_message, fmt);
	return 0;
}

int
errmsg_internal(const char *fmt,...)
{
	FORMAT_INTO(fuzz_error_message, fmt);
	return 0;
}

int
errdetail(const char *fmt,...)
{
	FORMAT_INTO(fuzz_error_detail, fmt);
	return 0;
}

int
errdetail_internal(const char *fmt,...)
{
	FORMAT_INTO(fuzz_error_detail, fmt);
	return 0;
}

int
errhint(const char *fmt,...)
{
	char		hint[1024];

	FORMAT_INTO(hint, fmt);
	return 0;
}

int
errcontext_msg(const char *fmt,...)
{
	char		context[1024];

	FORMAT_INTO(context, fmt);
	return 0;
}

int
set_errcontext_domain(const char *domain)
{
	return 0;
}

/* ----------------------------------------------------------------
 * Odds and ends
 * ----------------------------------------------------------------
 */

/* A fixed clock: 2025-12-30 10:00 KST, the mock's default "today" */
TimestampTz fuzz_now = 0;

TimestampTz
GetCurrentTimestamp(void)
{
	return fuzz_now;
}

/* utils/adt/timestamp.c's, in UTC (a live table's REST rows say when) */
const char *
timestamptz_to_str(TimestampTz t)
{
	static char buf[64];
	time_t		secs = (time_t) (t / USECS_PER_SEC) +
		(POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY;
	int			usecs = (int) (t % USECS_PER_SEC);
	struct tm	tm;

	if (usecs < 0)
	{
		secs--;
		usecs += USECS_PER_SEC;
	}
	gmtime_r(&secs, &tm);
	snprintf(buf, sizeof(buf), "%04d-%02d-%02d %02d:%02d:%02d.%06d+00",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			 tm.tm_sec, usecs);
	return buf;
}

int
s_lock(volatile slock_t *lock, const char *file, int line, const char *func)
{
	fprintf(stderr, "shims: spinlock contention at %s:%d (the harness is single-threaded: a lock was never released)\n",
			file, line);
	abort();
}

#if !HAVE_DECL_STRLCPY
size_t
strlcpy(char *dst, const char *src, size_t siz)
{
	size_t		n = strlen(src);

	if (siz > 0)
	{
		size_t		c = Min(n, siz - 1);

		memcpy(dst, src, c);
		dst[c] = '\0';
	}
	return n;
}
#endif

/* Only kis_endpoint_table_ddl uses these, and the harness never calls it */
const char *
quote_identifier(const char *ident)
{
	return ident;
}

char *
quote_literal_cstr(const char *rawstr)
{
	return psprintf("'%s'", rawstr);
}

/* src/text.c's, for a UTF-8 database: auth.c's token errors use it */
char *
kis_server_message(const char *utf8)
{
	return (char *) utf8;
}

/* utils/adt/datetime.c (PostgreSQL 15) */
int
date2j(int y, int m, int d)
{
	int			julian;
	int			century;

	if (m > 2)
	{
		m += 1;
		y += 4800;
	}
	else
	{
		m += 13;
		y += 4799;
	}

	century = y / 100;
	julian = y * 365 - 32167;
	julian += y / 4 - century + century / 4;
	julian += 7834 * m / 256 + d;

	return julian;
}

void
j2date(int jd, int *year, int *month, int *day)
{
	unsigned int julian;
	unsigned int quad;
	unsigned int extra;
	int			y;

	julian = jd;
	julian += 32044;
	quad = julian / 146097;
	extra = (julian - quad * 146097) * 4 + 3;
	julian += 60 + quad * 3 + extra / 146097;
	quad = julian / 1461;
	julian -= quad * 1461;
	y = julian * 4 / 1461;
	julian = ((y != 0) ? ((julian + 305) % 365) : ((julian + 306) % 366))
		+ 123;
	y += quad * 4;
	*year = y - 4800;
	quad = julian * 2141 / 65536;
	*day = julian - 7834 * quad / 256;
	*month = (quad + 10) % MONTHS_PER_YEAR + 1;
}

/* utils/adt/timestamp.c (PostgreSQL 15) */
static TimeOffset
time2t(const int hour, const int min, const int sec, const fsec_t fsec)
{
	return (((((hour * MINS_PER_HOUR) + min) * SECS_PER_MINUTE) + sec) * USECS_PER_SEC) + fsec;
}

static Timestamp
dt2local(Timestamp dt, int timezone)
{
	dt -= (timezone * USECS_PER_SEC);
	return dt;
}

int
tm2timestamp(struct pg_tm *tm, fsec_t fsec, int *tzp, Timestamp *result)
{
	TimeOffset	date;
	TimeOffset	time;

	/* Prevent overflow in Julian-day routines */
	if (!IS_VALID_JULIAN(tm->tm_year, tm->tm_mon, tm->tm_mday))
	{
		*result = 0;			/* keep compiler quiet */
		return -1;
	}

	date = date2j(tm->tm_year, tm->tm_mon, tm->tm_mday) - POSTGRES_EPOCH_JDATE;
	time = time2t(tm->tm_hour, tm->tm_min, tm->tm_sec, fsec);

	*result = date * USECS_PER_DAY + time;
	/* check for major overflow */
	if ((*result - time) / USECS_PER_DAY != date)
	{
		*result = 0;			/* keep compiler quiet */
		return -1;
	}
	/* check for just-barely overflow (okay except time-of-day wraps) */
	/* caution: we want to allow 1999-12-31 24:00:00 */
	if ((*result < 0 && date > 0) ||
		(*result > 0 && date < -1))
	{
		*result = 0;			/* keep compiler quiet */
		return -1;
	}
	if (tzp != NULL)
		*result = dt2local(*result, -(*tzp));

	/* final range check catches just-out-of-range timestamps */
	if (!IS_VALID_TIMESTAMP(*result))
	{
		*result = 0;			/* keep compiler quiet */
		return -1;
	}

	return 0;
}

/* The harness's database is in UTF-8 (text.c's conversions are none) */
int
GetDatabaseEncoding(void)
{
	return PG_UTF8;
}

/* mbutils.c's, for json_pick.c: the check itself is libpgcommon's */
bool
pg_verify_mbstr(int encoding, const char *mbstr, int len, bool noError)
{
	if (!noError)
	{
		fprintf(stderr, "shims: pg_verify_mbstr only answers, it reports no error\n");
		abort();
	}
	return pg_encoding_verifymbstr(encoding, mbstr, len) == len;
}

/*
 * Encoding conversion (master.c): the harness has no conversion procs, so
 * UHC text becomes valid UTF-8 of the same shape, each double-byte
 * character U+AC00.  pg_encoding_verifymbstr, the check that decides what
 * reaches here, is PostgreSQL's own (libpgcommon).
 */
unsigned char *
pg_do_encoding_conversion(unsigned char *src, int len, int src_encoding,
						  int dest_encoding)
{
	unsigned char *out = palloc((Size) len * 3 / 2 + 4);
	int			n = 0;

	for (int i = 0; i < len; i++)
	{
		if (src[i] < 0x80)
			out[n++] = src[i];
		else
		{
			if (i + 1 >= len)
			{
				fprintf(stderr, "shims: pg_do_encoding_conversion given a lead byte without its trail (not verified?)\n");
				abort();
			}
			out[n++] = 0xEA;
			out[n++] = 0xB0;
			out[n++] = 0x80;
			i++;
		}
	}
	out[n] = '\0';
	return out;
}
