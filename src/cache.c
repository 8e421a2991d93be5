/*-------------------------------------------------------------------------
 *
 * cache.c
 *	  Shared answers: a request another session has sent and not yet had
 *	  answered is waited for instead of sent again (in-flight sharing), and
 *	  a successful answer younger than the table's cache_ttl_ms is served
 *	  without a request (the answer cache).  docs/cache.md describes both.
 *
 * One store holds both: an entry per answer id (kis_cache_answer_id, a
 * SHA-256: no secret is kept in the clear).  Answer bytes are zeroed when
 * they leave the store (docs/security.md).  An entry is either in flight,
 * owned by the session that sent the request, or ready, holding the
 * answer's bytes.  Waiters register on the entry and have their latch set
 * when the owner stores the answer or gives the request up; they also look
 * again every CACHE_LOOK_AGAIN_US, so a missed wake-up costs a little
 * time, never a hang.
 *
 * The bytes live in fixed-size chunks chained per entry, so the store is
 * one block of exactly kis_fdw.cache_size, carved at startup: no
 * allocation after that, and ready entries are evicted least recently
 * used first when chunks or entries run out.  In-flight entries are never
 * evicted; when every entry is in flight, a request is simply sent
 * unshared.
 *
 * A sender's requests move only while its backend is inside kis_fdw's wait
 * loop; one sitting in a paused cursor (or busy elsewhere in the executor)
 * leaves them where they are.  Each backend says when it left the loop
 * (kis_cache_away, a lock-free slot per PGPROC), and a waiter takes over a
 * request whose sender has been away longer than CACHE_AWAY_GRACE_US.
 *
 * With shared_preload_libraries the store is in shared memory under one
 * LWLock; without it the same store lives in this backend's memory
 * (allocated at first use), so scans of one session still share.  The
 * layout is private to this file: the fetch engine sees answer ids,
 * serials, copied-out answers and the sharing rules' decisions.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/twophase.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "cache.h"
#include "compat.h"
#include "options.h"
#include "shmem.h"
#include "util.h"

#define CACHE_CHUNK			1024	/* bytes of answer per chunk */
#define CACHE_MAX_WAITERS	16	/* latches set directly; others poll */
#define CACHE_MAX_VIEWS		4	/* views of one answer (one per way of
								 * making rows of it) */
#define CACHE_TRANCHE		"kis_fdw answer cache"
#define CACHE_AWAY_GRACE_US	(100 * 1000)	/* a sender between two rows */
#define CACHE_UNSENT_GRACE_US	(500 * 1000)	/* a claim not yet on the wire */
#define CACHE_LOOK_AGAIN_US		(50 * 1000) /* a waiter looks again even unwoken */
/* a download (a master file, published daily) is served from the store this long */
#define CACHE_DOWNLOAD_TTL_MS	(10 * 60 * 1000)

typedef enum EntryState
{
	ENTRY_FREE,
	ENTRY_INFLIGHT,
	ENTRY_READY
} EntryState;

typedef struct CacheEntry
{
	uint8		id[KIS_SHA256_LEN];	/* the answer id */
	EntryState	state;
	int			bucket_next;	/* next in its hash bucket, or -1 */
	int			lru_prev;		/* ready: LRU neighbours; free: next free */
	int			lru_next;
	uint64		serial;			/* of the claim that owns or filled it */
	int			owner_pid;		/* in flight: the sender */
	int			owner_procno;	/* its PGPROC number, or -1 */
	TimestampTz claimed_at;		/* in flight: when claimed, or sent again */
	bool		sent;			/* in flight: on the wire (kis_cache_sending) */
	int			nwaiters;
	int			waiters[CACHE_MAX_WAITERS]; /* PGPROC numbers */
	TimestampTz stored_at;		/* kis_clock_now() */
	TimestampTz answered_at;	/* wall clock: the rows' fetched_at */
	long		http_status;
	char		tr_cont[4];
	uint32		len;
	int			first_chunk;	/* chained through chunk_next, -1 ends */
	int			nchunks;
	bool		secret;			/* private to a user mapping: zeroed when freed */
	bool		is_view;		/* a reader's prepared form of an answer */
	bool		view_read;		/* a view: served since its maker last wanted
								 * a slot for another (second chance) */
	Oid			view_maker;		/* a view: the role that made it */
	uint64		base_serial;	/* a view: the serial of the answer it is of */
	int			views[CACHE_MAX_VIEWS]; /* an answer: its views' entries, or -1
										 * (stale once reused: see live_view) */
} CacheEntry;

typedef struct CacheStore
{
	LWLock	   *lock;			/* NULL in a backend's own store */
	bool		shared;
	int			nbuckets;
	int			nentries;
	int			nchunks;
	int			free_entry;
	int			free_chunk;
	int			nfree_chunks;
	int			lru_head;		/* most recently used */
	int			lru_tail;
	uint64		next_serial;
	int			nprocs;			/* away slots (shared store only) */
	/* followed by buckets, entries, chunk_next, chunk data, away slots */
} CacheStore;

static int	kis_cache_size_kb = 16 * 1024;
static CacheStore *store = NULL;
static bool exit_registered = false;
static bool ever_claimed = false;	/* give_back_mine has something to look for */

#define STORE_HEADER		MAXALIGN(sizeof(CacheStore))
#define BUCKETS(s)			((int *) ((char *) (s) + STORE_HEADER))
#define ENTRIES(s)			((CacheEntry *) ((char *) BUCKETS(s) + MAXALIGN(sizeof(int) * (s)->nbuckets)))
#define CHUNK_NEXT(s)		((int *) ((char *) ENTRIES(s) + MAXALIGN(sizeof(CacheEntry) * (s)->nentries)))
#define CHUNK_DATA(s)		((char *) CHUNK_NEXT(s) + MAXALIGN(sizeof(int) * (s)->nchunks))
/* per PGPROC: kis_clock_now() when it left kis_fdw's wait loop, 0 inside */
#define AWAY(s)				((pg_atomic_uint64 *) (CHUNK_DATA(s) + (Size) (s)->nchunks * CACHE_CHUNK))

static Size
layout_size(int nchunks, int nentries)
{
	return STORE_HEADER + MAXALIGN(sizeof(int) * nentries) +	/* as many buckets */
		MAXALIGN(sizeof(CacheEntry) * nentries) +
		MAXALIGN(sizeof(int) * nchunks) + (Size) nchunks * CACHE_CHUNK;
}

/* How many chunks and entries fit in size bytes: about one entry per two chunks */
static void
plan_layout(Size size, int *nchunks, int *nentries)
{
	Size		per_chunk = CACHE_CHUNK + sizeof(int) + (sizeof(CacheEntry) + sizeof(int)) / 2 + 1;
	int			n = (int) Min((size - STORE_HEADER - 64) / per_chunk, (Size) INT_MAX / 2);

	while (n > 1 && layout_size(n, n / 2 + 1) > size)
		n--;
	*nchunks = n;
	*nentries = n / 2 + 1;
}

static Size
store_size(void)
{
	return (Size) kis_cache_size_kb * 1024;
}

static void
init_store(CacheStore *s, Size size, bool shared)
{
	int			nchunks;
	int			nentries;
	CacheEntry *entries;
	int		   *next;
	int			nprocs = shared ? MaxBackends + NUM_AUXILIARY_PROCS + max_prepared_xacts : 0;

	plan_layout(size - sizeof(pg_atomic_uint64) * nprocs, &nchunks, &nentries);
	memset(s, 0, STORE_HEADER);
	s->shared = shared;
	s->nprocs = nprocs;
	s->nbuckets = nentries;
	s->nentries = nentries;
	s->nchunks = nchunks;
	s->lru_head = s->lru_tail = -1;
	s->next_serial = 1;
	for (int i = 0; i < s->nbuckets; i++)
		BUCKETS(s)[i] = -1;
	entries = ENTRIES(s);
	for (int i = 0; i < nentries; i++)
	{
		memset(&entries[i], 0, sizeof(CacheEntry));
		entries[i].state = ENTRY_FREE;
		entries[i].bucket_next = -1;
		entries[i].first_chunk = -1;
		entries[i].lru_next = i + 1 < nentries ? i + 1 : -1;
	}
	s->free_entry = 0;
	next = CHUNK_NEXT(s);
	for (int i = 0; i < nchunks; i++)
		next[i] = i + 1 < nchunks ? i + 1 : -1;
	s->free_chunk = 0;
	s->nfree_chunks = nchunks;
	for (int i = 0; i < nprocs; i++)
		pg_atomic_init_u64(&AWAY(s)[i], 0);
}

/* ----------------------------------------------------------------
 * Setup: called from shmem.c's hooks and _PG_init
 * ----------------------------------------------------------------
 */
void
kis_cache_define_gucs(void)
{
	DefineCustomIntVariable("kis_fdw.cache_size",
							"Shared memory for kis_fdw's answer cache and in-flight sharing.",
							"Least recently used answers are evicted when it is full.",
							&kis_cache_size_kb,
							16 * 1024, 256, INT_MAX / 1024,
							PGC_POSTMASTER, GUC_UNIT_KB,
							NULL, NULL, NULL);
}

void
kis_cache_shmem_request(void)
{
	RequestAddinShmemSpace(store_size());
	RequestNamedLWLockTranche(CACHE_TRANCHE, 1);
}

void
kis_cache_shmem_startup(void)
{
	bool		found;
	CacheStore *s;

	s = ShmemInitStruct("kis_fdw answer cache", store_size(), &found);
	if (!found)
	{
		init_store(s, store_size(), true);
		s->lock = &(GetNamedLWLockTranche(CACHE_TRANCHE))->lock;
	}
	store = s;
}

/* The store: shared if preloaded, else this backend's own */
static CacheStore *
get_store(void)
{
	if (store == NULL)
	{
		(void) kis_shmem_is_shared();	/* says once that sharing is per session */
		if (store == NULL)
		{
			CacheStore *s = MemoryContextAllocHuge(TopMemoryContext, store_size());

			init_store(s, store_size(), false);
			store = s;
		}
	}
	return store;
}

static void
lock_store(CacheStore *s)
{
	if (s->lock)
		LWLockAcquire(s->lock, LW_EXCLUSIVE);
}

static void
unlock_store(CacheStore *s)
{
	if (s->lock)
		LWLockRelease(s->lock);
}

/* ----------------------------------------------------------------
 * Entries, under the lock
 * ----------------------------------------------------------------
 */
static int
bucket_of(CacheStore *s, const uint8 *id)
{
	uint32		h;

	memcpy(&h, id, sizeof(h));
	return (int) (h % (uint32) s->nbuckets);
}

static CacheEntry *
find_entry(CacheStore *s, const uint8 *id)
{
	CacheEntry *entries = ENTRIES(s);

	for (int i = BUCKETS(s)[bucket_of(s, id)]; i >= 0; i = entries[i].bucket_next)
	{
		if (memcmp(entries[i].id, id, KIS_SHA256_LEN) == 0)
			return &entries[i];
	}
	return NULL;
}

static void
lru_unlink(CacheStore *s, CacheEntry *e)
{
	CacheEntry *entries = ENTRIES(s);
	int			i = e - entries;

	if (e->lru_prev >= 0)
		entries[e->lru_prev].lru_next = e->lru_next;
	else if (s->lru_head == i)
		s->lru_head = e->lru_next;
	if (e->lru_next >= 0)
		entries[e->lru_next].lru_prev = e->lru_prev;
	else if (s->lru_tail == i)
		s->lru_tail = e->lru_prev;
	e->lru_prev = e->lru_next = -1;
}

static void
lru_push_head(CacheStore *s, CacheEntry *e)
{
	CacheEntry *entries = ENTRIES(s);
	int			i = e - entries;

	e->lru_prev = -1;
	e->lru_next = s->lru_head;
	if (s->lru_head >= 0)
		entries[s->lru_head].lru_prev = i;
	s->lru_head = i;
	if (s->lru_tail < 0)
		s->lru_tail = i;
}

/* Put v in the LRU list just ahead of e (as recently used) */
static void
lru_insert_before(CacheStore *s, CacheEntry *v, CacheEntry *e)
{
	CacheEntry *entries = ENTRIES(s);

	v->lru_next = e - entries;
	v->lru_prev = e->lru_prev;
	if (e->lru_prev >= 0)
		entries[e->lru_prev].lru_next = v - entries;
	else
		s->lru_head = v - entries;
	e->lru_prev = v - entries;
}

/* The entry at index i, if it is a view of e as it is now */
static CacheEntry *
live_view(CacheStore *s, CacheEntry *e, int i)
{
	CacheEntry *v = i >= 0 ? &ENTRIES(s)[i] : NULL;

	if (v == NULL || v->state != ENTRY_READY || !v->is_view || v->base_serial != e->serial)
		return NULL;
	return v;
}

static void remove_entry(CacheStore *s, CacheEntry *e);

/* An answer leaves or is sent again: its views go with it (zeroed if secret) */
static void
drop_views(CacheStore *s, CacheEntry *e)
{
	if (e->is_view)
		return;
	for (int i = 0; i < CACHE_MAX_VIEWS; i++)
	{
		CacheEntry *v = live_view(s, e, e->views[i]);

		e->views[i] = -1;
		if (v != NULL)
			remove_entry(s, v);
	}
}

/*
 * Give back an entry's chunks, zeroed if they hold an account's answer (or
 * its view): a quote's bytes are everyone's, and a chunk that held a secret
 * was zeroed when it was given back
 */
static void
free_chunks(CacheStore *s, CacheEntry *e)
{
	int		   *next = CHUNK_NEXT(s);
	char	   *data = CHUNK_DATA(s);

	while (e->first_chunk >= 0)
	{
		int			c = e->first_chunk;

		if (e->secret)
			memset(data + (Size) c * CACHE_CHUNK, 0, CACHE_CHUNK);
		e->first_chunk = next[c];
		next[c] = s->free_chunk;
		s->free_chunk = c;
		s->nfree_chunks++;
	}
	e->nchunks = 0;
	e->len = 0;
	e->secret = false;
}

/* Set the latches of the entry's waiters (they look at the store again) */
static void
wake_waiters(CacheStore *s, CacheEntry *e)
{
	if (s->shared)
	{
		for (int i = 0; i < e->nwaiters; i++)
			SetLatch(&ProcGlobal->allProcs[e->waiters[i]].procLatch);
	}
	e->nwaiters = 0;
}

/* Take an entry out of the store altogether */
static void
remove_entry(CacheStore *s, CacheEntry *e)
{
	CacheEntry *entries = ENTRIES(s);
	int			i = e - entries;
	int		   *link = &BUCKETS(s)[bucket_of(s, e->id)];

	while (*link >= 0 && *link != i)
		link = &entries[*link].bucket_next;
	if (*link == i)
		*link = e->bucket_next;
	if (e->state == ENTRY_READY)
		lru_unlink(s, e);
	drop_views(s, e);
	wake_waiters(s, e);
	free_chunks(s, e);
	e->state = ENTRY_FREE;
	e->bucket_next = -1;
	e->lru_prev = -1;
	e->lru_next = s->free_entry;
	s->free_entry = i;
}

/* Evict the least recently used ready entry; false if there is none */
static bool
evict_one(CacheStore *s)
{
	if (s->lru_tail < 0)
		return false;
	remove_entry(s, &ENTRIES(s)[s->lru_tail]);
	return true;
}

static int
my_procno(void)
{
	return (int) (MyProc - ProcGlobal->allProcs);
}

/*
 * Has the sender of an in-flight entry been outside kis_fdw's wait loop
 * for a while (a cursor paused between FETCHes, say)?  Its request makes
 * no progress until it is back.
 */
static bool
owner_away(CacheStore *s, CacheEntry *e, TimestampTz now)
{
	uint64		since;

	if (!s->shared || e->owner_pid == MyProcPid ||
		e->owner_procno < 0 || e->owner_procno >= s->nprocs)
		return false;
	since = pg_atomic_read_u64(&AWAY(s)[e->owner_procno]);
	return since != 0 && now - (TimestampTz) since >= CACHE_AWAY_GRACE_US;
}

/*
 * Has the sender of an in-flight entry held it unsent for a while?  A claim
 * is made before the sender's own rate gate, token and back-off; behind a
 * gate far slower than ours (another role's server with a tiny rate_limit,
 * say) it would hold us up for as long, so past the grace we send our own.
 */
static bool
owner_stuck(CacheEntry *e, TimestampTz now)
{
	return e->owner_pid != MyProcPid && !e->sent &&
		now - e->claimed_at >= CACHE_UNSENT_GRACE_US;
}

static void
add_waiter(CacheStore *s, CacheEntry *e)
{
	int			me;

	if (!s->shared || MyProc == NULL)
		return;
	me = my_procno();
	for (int i = 0; i < e->nwaiters; i++)
		if (e->waiters[i] == me)
			return;
	if (e->nwaiters < CACHE_MAX_WAITERS)
		e->waiters[e->nwaiters++] = me;
}

/* Has the sender of an in-flight entry gone without giving it back? */
static bool
owner_gone(CacheStore *s, CacheEntry *e)
{
	return s->shared && e->owner_pid != MyProcPid &&
		kill(e->owner_pid, 0) < 0 && errno == ESRCH;
}

static void give_back_mine(int code, Datum arg);

/* Make e an in-flight entry owned by this backend; returns its serial */
static uint64
claim(CacheStore *s, CacheEntry *e)
{
	if (e->state == ENTRY_READY)
	{
		lru_unlink(s, e);
		drop_views(s, e);
		free_chunks(s, e);
	}
	ever_claimed = true;
	e->state = ENTRY_INFLIGHT;
	e->owner_pid = MyProcPid;
	e->owner_procno = s->shared && MyProc != NULL ? my_procno() : -1;
	e->claimed_at = kis_clock_now();
	e->sent = false;
	e->serial = s->next_serial++;
	return e->serial;
}

/* A free entry for id, in its bucket (state still free), or NULL */
static CacheEntry *
new_entry(CacheStore *s, const uint8 *id)
{
	CacheEntry *e;
	int			i;

	if (s->free_entry < 0 && !evict_one(s))
		return NULL;
	i = s->free_entry;
	e = &ENTRIES(s)[i];
	s->free_entry = e->lru_next;
	memcpy(e->id, id, KIS_SHA256_LEN);
	e->nwaiters = 0;
	e->first_chunk = -1;
	e->is_view = false;
	e->base_serial = 0;
	for (int k = 0; k < CACHE_MAX_VIEWS; k++)
		e->views[k] = -1;
	e->lru_prev = e->lru_next = -1;
	e->bucket_next = BUCKETS(s)[bucket_of(s, id)];
	BUCKETS(s)[bucket_of(s, id)] = i;
	return e;
}

/* Put len bytes into e's chunks (enough are free) */
static void
write_chunks(CacheStore *s, CacheEntry *e, const char *body, size_t len, int need)
{
	int		   *next = CHUNK_NEXT(s);
	char	   *data = CHUNK_DATA(s);
	int		   *link = &e->first_chunk;
	size_t		done = 0;

	for (int n = 0; n < need; n++)
	{
		int			c = s->free_chunk;
		size_t		part = Min(CACHE_CHUNK, len - done);

		s->free_chunk = next[c];
		s->nfree_chunks--;
		memcpy(data + (Size) c * CACHE_CHUNK, body + done, part);
		done += part;
		*link = c;
		link = &next[c];
	}
	*link = -1;
	e->nchunks = need;
	e->len = (uint32) len;
}

static void
copy_out(CacheStore *s, CacheEntry *e, KisCachedAnswer *answer, MemoryContext cxt)
{
	int		   *next = CHUNK_NEXT(s);
	char	   *data = CHUNK_DATA(s);
	uint32		done = 0;

	answer->body = MemoryContextAlloc(cxt, e->len + 1);
	for (int c = e->first_chunk; c >= 0 && done < e->len; c = next[c])
	{
		uint32		n = Min(CACHE_CHUNK, e->len - done);

		memcpy(answer->body + done, data + (Size) c * CACHE_CHUNK, n);
		done += n;
	}
	answer->body[e->len] = '\0';
	answer->len = e->len;
	answer->http_status = e->http_status;
	answer->answered_at = e->answered_at;
	memcpy(answer->tr_cont, e->tr_cont, sizeof(answer->tr_cont));
	answer->view = e->is_view;
}

/*
 * A ready answer is read: the reader's view of it if there is one (made of
 * this very answer: same serial), else the answer itself.
 */
static void
read_ready(CacheStore *s, CacheEntry *e, const uint8 *view_id,
		   KisCachedAnswer *answer, MemoryContext cxt)
{
	CacheEntry *v = view_id ? find_entry(s, view_id) : NULL;

	if (v != NULL && v->state == ENTRY_READY && v->is_view && v->base_serial == e->serial)
	{
		copy_out(s, v, answer, cxt);
		v->view_read = true;
		answer->answered_at = e->answered_at;
		memcpy(answer->tr_cont, e->tr_cont, sizeof(answer->tr_cont));
		lru_unlink(s, v);
		lru_push_head(s, v);
	}
	else
		copy_out(s, e, answer, cxt);
	answer->serial = e->serial;
	lru_unlink(s, e);
	lru_push_head(s, e);
}

/* ----------------------------------------------------------------
 * The interface of the fetch engine: the sharing rules
 * ----------------------------------------------------------------
 */

/*
 * The answer id of one request: the SHA-256 of the environment, the URL,
 * tr_id and extra header and, for an answer private to the user mapping
 * (an account's), the credential (creds: kis_hash_credentials, of app key,
 * secret and origin) and the account.  Quotes are the same whoever asks.
 */
void
kis_cache_answer_id(const KisConfig *config, const uint8 *creds, bool private_answer,
					bool unchecked, const char *url, const char *tr_id, const char *header,
					uint8 *id)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "%s%c%s%c%s%c%s%c",
					 config->environment == KIS_ENV_VIRTUAL ? "virtual" : "real", '\0',
					 url, '\0', tr_id ? tr_id : "", '\0', header ? header : "", '\0');
	/* an answer no check confirmed never stands for one that would be */
	appendStringInfoChar(&buf, unchecked ? 'u' : 'c');
	if (private_answer)
	{
		appendBinaryStringInfo(&buf, (const char *) creds, KIS_SHA256_LEN);
		if (config->account)
			appendBinaryStringInfo(&buf, config->account, strlen(config->account) + 1);
	}
	kis_sha256(buf.data, buf.len, id);
	explicit_bzero(buf.data, buf.len);
	pfree(buf.data);
}

/* How old a stored answer may be served: a download's at least 10 minutes */
int
kis_cache_ttl_ms(int cache_ttl_ms, bool download)
{
	return download ? Max(cache_ttl_ms, CACHE_DOWNLOAD_TTL_MS) : cache_ttl_ms;
}

/*
 * Whether a successful answer may be kept for others.  An answer private to
 * a user mapping only when its reader asked for caching (cache_ttl_ms):
 * nobody's holdings stay in shared memory unasked (docs/security.md).  An
 * answer that may continue (a cursor-paged listing's first page) only when
 * no page follows (tr_cont is neither M nor F): a listing's pages are never
 * mixed with another moment's.
 */
bool
kis_cache_may_keep(bool private_answer, bool may_continue, int cache_ttl_ms,
				   const char *tr_cont)
{
	if (private_answer && cache_ttl_ms <= 0)
		return false;
	if (!may_continue)
		return true;
	return strcmp(tr_cont, "M") != 0 && strcmp(tr_cont, "F") != 0;
}

/*
 * How long a waiter waits for another session's send: one timeout_ms, then
 * it sends its own (the sender may be slow, retrying, or in a cursor that
 * stopped; kis_cache_poll hands a request over at once when its sender is
 * away).
 */
int64
kis_cache_patience_us(int timeout_ms)
{
	return (int64) timeout_ms * 1000;
}

/* When a waiter that gives up at "until" looks at the store again */
TimestampTz
kis_cache_next_look(TimestampTz now, TimestampTz until)
{
	return Min(until, now + CACHE_LOOK_AGAIN_US);
}

/* ----------------------------------------------------------------
 * The interface of the fetch engine: the store
 * ----------------------------------------------------------------
 */

/* e is a ready answer younger than ttl_ms */
static bool
fresh(const CacheEntry *e, int ttl_ms, TimestampTz now)
{
	return e != NULL && e->state == ENTRY_READY && ttl_ms > 0 &&
		now - e->stored_at < (int64) ttl_ms * 1000;
}

/*
 * When a request is made: a ready answer younger than ttl_ms is copied into
 * answer as kis_cache_lookup's HIT is (true); else nothing changes (false),
 * and the request is looked up again before it goes to the gate.
 */
bool
kis_cache_read(const uint8 *id, const uint8 *view_id, int ttl_ms, TimestampTz now,
			   KisCachedAnswer *answer, MemoryContext cxt)
{
	CacheStore *s = get_store();
	CacheEntry *e;
	bool		hit;

	lock_store(s);
	e = find_entry(s, id);
	hit = fresh(e, ttl_ms, now);
	if (hit)
		read_ready(s, e, view_id, answer, cxt);
	unlock_store(s);
	return hit;
}

/*
 * Before a request goes to the rate gate.  HIT: a ready answer younger
 * than ttl_ms, copied into answer (body allocated in cxt).  WAIT: another
 * send of it is in flight; poll with kis_cache_poll(*serial).  OWNER: the
 * caller now owns the request (*serial): it must end with kis_cache_store
 * or kis_cache_abandon.  SEND: nothing to share; send it unshared.
 */
KisCacheResult
kis_cache_lookup(const uint8 *id, const uint8 *view_id, int ttl_ms, TimestampTz now,
				 uint64 *serial, KisCachedAnswer *answer, MemoryContext cxt)
{
	CacheStore *s = get_store();
	CacheEntry *e;
	KisCacheResult result;

	if (s->shared && !exit_registered)
	{
		on_shmem_exit(give_back_mine, (Datum) 0);
		exit_registered = true;
	}
	lock_store(s);
	e = find_entry(s, id);
	if (fresh(e, ttl_ms, now))
	{
		read_ready(s, e, view_id, answer, cxt);
		result = KIS_CACHE_HIT;
	}
	else if (e != NULL && e->state == ENTRY_INFLIGHT && !owner_gone(s, e) &&
			 !owner_away(s, e, now) && !owner_stuck(e, now))
	{
		add_waiter(s, e);
		*serial = e->serial;
		result = KIS_CACHE_WAIT;
	}
	else if (e != NULL)
	{
		/*
		 * Stale, or its sender died, is away or holds it unsent: ours now
		 * (waiters adopt the new send; the old sender's answer is not
		 * stored over it)
		 */
		*serial = claim(s, e);
		result = KIS_CACHE_OWNER;
	}
	else if ((e = new_entry(s, id)) != NULL)
	{
		*serial = claim(s, e);
		result = KIS_CACHE_OWNER;
	}
	else
		result = KIS_CACHE_SEND;	/* every entry is in flight */
	unlock_store(s);
	return result;
}

/*
 * A waiter looks again.  HIT: the answer it waited for (or a later one)
 * is in.  WAIT: still in flight (perhaps sent again by another).  SEND:
 * the sender gave it up, failed or is gone: send it yourself.  OWNER: the
 * sender is away, or has held it unsent past the grace; the caller now owns
 * the request (*serial), as after kis_cache_lookup.
 */
KisCacheResult
kis_cache_poll(const uint8 *id, const uint8 *view_id, uint64 *serial,
			   KisCachedAnswer *answer, MemoryContext cxt)
{
	CacheStore *s = get_store();
	CacheEntry *e;
	KisCacheResult result = KIS_CACHE_SEND;

	lock_store(s);
	e = find_entry(s, id);
	if (e != NULL && e->state == ENTRY_READY && e->serial >= *serial)
	{
		read_ready(s, e, view_id, answer, cxt);
		result = KIS_CACHE_HIT;
	}
	else if (e != NULL && e->state == ENTRY_INFLIGHT)
	{
		if (owner_gone(s, e))
			remove_entry(s, e);
		else if (owner_away(s, e, kis_clock_now()) || owner_stuck(e, kis_clock_now()))
		{
			*serial = claim(s, e);
			result = KIS_CACHE_OWNER;
		}
		else
		{
			add_waiter(s, e);
			result = KIS_CACHE_WAIT;
		}
	}
	unlock_store(s);
	return result;
}

/*
 * The owner's request goes on the wire (sending), or will go again later,
 * after a back-off or with a new token (!sending): until it is sent, a
 * waiter takes it over once CACHE_UNSENT_GRACE_US has passed.
 */
void
kis_cache_sending(const uint8 *id, uint64 serial, bool sending)
{
	CacheStore *s = get_store();
	CacheEntry *e;

	lock_store(s);
	e = find_entry(s, id);
	if (e != NULL && e->state == ENTRY_INFLIGHT && e->serial == serial)
	{
		e->sent = sending;
		if (!sending)
			e->claimed_at = kis_clock_now();
	}
	unlock_store(s);
}

/*
 * The owner's request succeeded: keep the answer and wake the waiters.
 * An answer larger than the whole store is not kept (the waiters send
 * their own).  A secret one (an account's) is zeroed when it goes.
 */
void
kis_cache_store(const uint8 *id, uint64 serial, const char *body, size_t len,
				const char *tr_cont, long http_status, TimestampTz answered_at,
				bool secret)
{
	CacheStore *s = get_store();
	CacheEntry *e;
	int			need = (int) ((len + CACHE_CHUNK - 1) / CACHE_CHUNK);

	lock_store(s);
	e = find_entry(s, id);
	if (e == NULL || e->state != ENTRY_INFLIGHT || e->serial != serial)
	{
		unlock_store(s);
		return;
	}
	if (len > (size_t) s->nchunks * CACHE_CHUNK)
	{
		remove_entry(s, e);
		unlock_store(s);
		return;
	}
	while (s->nfree_chunks < need && evict_one(s))
		;
	write_chunks(s, e, body, len, need);
	e->secret = secret;
	e->http_status = http_status;
	e->answered_at = answered_at;
	e->stored_at = kis_clock_now();
	strlcpy(e->tr_cont, tr_cont, sizeof(e->tr_cont));
	e->state = ENTRY_READY;
	lru_push_head(s, e);
	wake_waiters(s, e);
	unlock_store(s);
}

/*
 * A slot of e's for one more view made by role, or -1.  When all are taken,
 * a view role made and nobody has read since role last wanted a slot gives
 * its own up; else role's views lose their marks, and its next want takes
 * the first still unread.  A way of reading that ended (its table or
 * database dropped, its settings no longer used) so leaves within two
 * wants of its maker, while ways still read keep theirs: four ways read in
 * turn with a fifth keep their views, instead of each pushing out the
 * next.  Another role's views are never given up for one: trying setting
 * after setting, it only ever pushes out its own.
 */
static int
free_view_slot(CacheStore *s, CacheEntry *e, Oid role)
{
	int			unread = -1;

	for (int i = 0; i < CACHE_MAX_VIEWS; i++)
	{
		CacheEntry *v = live_view(s, e, e->views[i]);

		if (v == NULL)
			return i;
		if (v->view_maker == role && !v->view_read && unread < 0)
			unread = i;
	}
	if (unread >= 0)
	{
		remove_entry(s, &ENTRIES(s)[e->views[unread]]);
		e->views[unread] = -1;
		return unread;
	}
	for (int i = 0; i < CACHE_MAX_VIEWS; i++)
	{
		CacheEntry *v = &ENTRIES(s)[e->views[i]];

		if (v->view_maker == role)
			v->view_read = false;
	}
	return -1;
}

/*
 * Keep a reader's prepared form of a stored answer (a view: docs/cache.md)
 * under view_id, if the answer is still the one of that serial.  It is
 * served instead of the answer to readers asking for the same view, while
 * the answer is; it is evicted like an answer (never making room for itself
 * at the expense of anything used more recently than its answer).
 */
void
kis_cache_keep_view(const uint8 *id, uint64 serial, const uint8 *view_id,
					const char *bytes, size_t len)
{
	CacheStore *s = get_store();
	CacheEntry *e;
	CacheEntry *v;
	int			slot;
	int			need = (int) ((len + CACHE_CHUNK - 1) / CACHE_CHUNK);
	Oid			maker = GetUserId();

	lock_store(s);
	e = find_entry(s, id);
	if (e == NULL || e->state != ENTRY_READY || e->serial != serial ||
		len > (size_t) (s->nchunks / 2) * CACHE_CHUNK)
	{
		unlock_store(s);
		return;
	}
	v = find_entry(s, view_id);
	if (v != NULL && (!v->is_view || v->state != ENTRY_READY))
	{
		unlock_store(s);		/* not a view: never replaced by one */
		return;
	}
	if (v != NULL)
		remove_entry(s, v);

	/* a few ways of making rows of one answer, not one per setting tried */
	slot = free_view_slot(s, e, maker);
	if (slot < 0)
	{
		unlock_store(s);
		return;
	}

	/*
	 * Room for it from what was used less recently than its answer only,
	 * and it takes its answer's place: keeping a view is no use of the
	 * answer, and must not push out answers used since (a scan that keeps
	 * the views of many answers at its end would evict its newest ones).
	 */
	while ((s->nfree_chunks < need || s->free_entry < 0) &&
		   s->lru_tail >= 0 && s->lru_tail != e - ENTRIES(s))
		evict_one(s);
	v = s->nfree_chunks >= need && s->free_entry >= 0 ? new_entry(s, view_id) : NULL;
	if (v == NULL)
	{
		unlock_store(s);
		return;
	}
	write_chunks(s, v, bytes, len, need);
	v->secret = e->secret;
	v->is_view = true;
	v->view_read = true;
	v->view_maker = maker;
	v->base_serial = serial;
	v->serial = s->next_serial++;
	v->http_status = e->http_status;
	v->answered_at = e->answered_at;
	v->stored_at = e->stored_at;
	memcpy(v->tr_cont, e->tr_cont, sizeof(v->tr_cont));
	v->state = ENTRY_READY;
	lru_insert_before(s, v, e);
	e->views[slot] = v - ENTRIES(s);
	unlock_store(s);
}

/*
 * The owner gives a request up (failed, cancelled, not to be shared):
 * the waiters are woken and send their own.  Never throws: the fetcher's
 * cleanup calls it.
 */
void
kis_cache_abandon(const uint8 *id, uint64 serial)
{
	CacheStore *s = store;
	CacheEntry *e;

	if (s == NULL)
		return;
	lock_store(s);
	e = find_entry(s, id);
	if (e != NULL && e->state == ENTRY_INFLIGHT && e->serial == serial)
		remove_entry(s, e);
	unlock_store(s);
}

/* At backend exit: give back whatever this backend still has in flight */
static void
give_back_mine(int code, Datum arg)
{
	CacheStore *s = store;
	CacheEntry *entries;

	if (s == NULL)
		return;
	if (s->lock && LWLockHeldByMe(s->lock))
		LWLockRelease(s->lock);
	if (!ever_claimed)
		return;					/* nothing of ours can be in flight */
	lock_store(s);
	entries = ENTRIES(s);
	for (int i = 0; i < s->nentries; i++)
	{
		if (entries[i].state == ENTRY_INFLIGHT && entries[i].owner_pid == MyProcPid)
			remove_entry(s, &entries[i]);
	}
	unlock_store(s);
}

/*
 * This backend leaves kis_fdw's wait loop (returns a row to the executor)
 * or comes back: while it is away, nothing it sent moves.  One atomic
 * write, no lock.
 */
void
kis_cache_away(bool away)
{
	CacheStore *s = store;
	int			me;

	if (s == NULL || !s->shared || MyProc == NULL)
		return;
	me = my_procno();
	if (me < s->nprocs)
		pg_atomic_write_u64(&AWAY(s)[me], away ? (uint64) kis_clock_now() : 0);
}

/* Bytes of answers held (whole chunks), for kis_fdw_stats */
int64
kis_cache_bytes(void)
{
	CacheStore *s = get_store();
	int64		bytes;

	lock_store(s);
	bytes = (int64) (s->nchunks - s->nfree_chunks) * CACHE_CHUNK;
	unlock_store(s);
	return bytes;
}

/* Forget every ready answer and view (in-flight requests stay); how many answers */
int64
kis_cache_reset(void)
{
	CacheStore *s = get_store();
	int64		n = 0;

	lock_store(s);
	while (s->lru_tail >= 0)
	{
		n += ENTRIES(s)[s->lru_tail].is_view ? 0 : 1;
		evict_one(s);
	}
	unlock_store(s);
	return n;
}
