/*-------------------------------------------------------------------------
 *
 * fetch.c
 *	  The fetch engine: requests of one scan run concurrently over libcurl's
 *	  multi interface, at most max_concurrency at a time, each send (retries
 *	  included) passing the rate gate once, and come back in completion
 *	  order.  Failed requests are retried with exponential backoff and
 *	  jitter; a rejected token is replaced once and the request resent.
 *
 * Two layers:
 *
 * - The transport (one per backend): the curl multi handle, the sockets
 *	 curl asks us to watch, curl's timer and a WaitEventSet built from them
 *	 plus our latch.  It lives for the backend so that keep-alive
 *	 connections (and their TLS sessions) survive from one query to the
 *	 next.  Several scans can be open at once (a join of two foreign
 *	 tables), so completions are routed to the fetcher that owns them.
 *
 * - The fetcher (one per scan run): its queues of requests, its easy
 *	 handles and header lists.  It lives in a memory context whose reset
 *	 callback removes and frees every handle it still owns, whether the
 *	 scan ended, was rescanned, failed or was cancelled.  After an abnormal
 *	 end the transport is torn down too (the pool's state is unknown), as
 *	 soon as no other fetcher uses it.
 *
 * Waiting never blocks inside libcurl: we wait on curl's sockets, our
 * latch and the next timer in one WaitEventSetWait, then tell curl what
 * happened (curl_multi_socket_action) and run CHECK_FOR_INTERRUPTS, so a
 * cancel is seen within milliseconds.  Nothing here throws from inside a
 * libcurl callback: callbacks only record, and we act after curl returns.
 *
 * Timeouts (timeout_ms, connect_timeout_ms) are ours, not libcurl's: curl
 * counts wall time since a transfer started and checks it before reading
 * the socket, so a cursor that paused between FETCHes (nothing drives curl
 * then) would find its answers, already in the kernel, timed out.  A
 * request's clock runs only while its scan waits for answers: inside
 * kis_fetch_next or kis_fetch_wait_any, or for an asynchronous scan from
 * kis_fetch_wait_fd (the executor is about to wait on us) to the next
 * kis_fetch_poll.  The time
 * the scan is away (with the executor, or a client between FETCHes) is not
 * counted, and sockets are read before anything expires.  This also covers
 * an answer larger than the socket buffer, or a TLS handshake, stalled
 * while we are away.  (An asynchronous Append woken by another branch may
 * return rows while our clock runs; answers that arrived meanwhile are
 * still read first.)  A tokenP request is the exception: it holds the
 * key's issuing claim, which other sessions respect for timeout_ms of the
 * wall clock only (auth.c), so its clock never stops.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <curl/curl.h>

#include "miscadmin.h"
#include "pgstat.h"
#include "storage/fd.h"
#include "storage/latch.h"
#include "util.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "auth.h"
#include "cache.h"
#include "compat.h"
#include "fetch.h"
#include "limiter.h"
#include "options.h"
#include "outcome.h"
#include "response.h"
#include "shmem.h"
#include "text.h"

#define KIS_MAX_RESPONSE_BYTES	(4 * 1024 * 1024)
#define KIS_MAX_SOCKETS			256
#define KIS_RATE_PENALTY_MS		500 /* after EGW00201, for the whole key */
#define KIS_MAX_IDLE_WAIT_MS	1000	/* re-check even if nobody wakes us */
#define KIS_USER_AGENT			"kis_fdw/1.0"
#define KIS_ASYNC_TICK_MS		100 /* an async wait sees interrupts this often */

typedef enum KisRequestKind
{
	KIS_REQ_DATA,
	KIS_REQ_TOKEN,
	KIS_REQ_FILE				/* a download outside the API: no token, no
								 * gate, the body handed over as received */
} KisRequestKind;

/* Where a data request stands with shared answers (cache.c) */
typedef enum KisShare
{
	KIS_SHARE_UNASKED,			/* not looked up yet */
	KIS_SHARE_OWNER,			/* ours to send; others may wait for it */
	KIS_SHARE_WAITING,			/* waiting for another's send */
	KIS_SHARE_ALONE				/* sent unshared */
} KisShare;

/* One HTTP exchange, possibly sent several times */
typedef struct KisRequest
{
	dlist_node	node;			/* in one of the fetcher's lists */
	struct KisFetcher *fetcher;
	KisRequestKind kind;
	int			flags;			/* KIS_FETCH_* */
	void	   *arg;
	char	   *url;
	const char *tr_id;
	const char *header;			/* an extra request header line, or NULL */
	KisBodyCheck whole;			/* a download's, or NULL */
	char		tr_cont[4];		/* the answer's tr_cont header */
	int			attempts;		/* sends so far */
	int			token_rejections;
	uint64		token_generation;	/* of the token it was sent with */
	TimestampTz not_before;		/* while delayed */
	TimestampTz started_at;
	int64		away_at_start;	/* the fetcher's away_us when it started */
	TimestampTz answered_at;	/* wall clock: the rows' fetched_at */

	/* shared answers: see share_lookup */
	KisShare	share;
	uint8		answer_id[KIS_SHA256_LEN];
	uint64		share_serial;
	TimestampTz share_until;	/* a waiter gives up and sends then */
	dlist_node	owned_node;		/* in the fetcher's owned list */

	/* owned while in flight; freed by release_request */
	CURL	   *easy;
	struct curl_slist *headers;
	char	   *body;			/* response bytes, palloc'd without throwing */
	size_t		body_len;
	size_t		body_cap;
	bool		body_too_large;
	char		errbuf[CURL_ERROR_SIZE];
} KisRequest;

struct KisFetcher
{
	MemoryContext cxt;
	const KisConfig *config;
	KisFetchStats *stats;
	KisAppSlot *slot;			/* the app key's gate, token and counters;
								 * NULL without an app key (public
								 * downloads only) */
	uint8		creds[KIS_SHA256_LEN];	/* whose token we need */
	KisAnswerCheck check;		/* is an answer the one asked for, or NULL */
	KisTokenScan tok;			/* our token, claim and tokenP body */
	bool		has_reservation;	/* a send time reserved at the gate */
	TimestampTz reserved_at;

	dlist_head	ready;			/* may go when a slot and the gate allow */
	dlist_head	delayed;		/* backing off until not_before */
	dlist_head	inflight;		/* added to the multi handle */
	dlist_head	done;			/* completions not yet taken */
	dlist_head	sharing;		/* waiting for another's send */
	dlist_head	owned;			/* requests others may be waiting for */
	int			ndata_inflight;
	int			npending;		/* data requests not yet completed */
	KisRequest *token_req;		/* our tokenP request until its answer is
								 * wiped, so that an error wipes it too */
	ErrorData  *fatal;			/* an error for this scan, raised by its own
								 * kis_fetch_next (another scan's wait loop
								 * may have completed our request) */
	TimestampTz away_since;		/* kis_fetch_next returned then; 0: inside */
	int64		away_us;		/* time spent away before that */

	bool		orderly;		/* kis_fetch_end ran */
	bool		released;
	TimestampTz wake;			/* pump's next time, for an async wait */
	struct KisAsyncWait *async; /* the async wait's descriptors, or NULL */
	dlist_node	active_node;	/* in transport.fetchers */
	MemoryContextCallback cleanup;
};

typedef struct KisSocket
{
	curl_socket_t fd;
	int			what;			/* CURL_POLL_IN / OUT / INOUT */
	int			pos;			/* its event's position in the wait set, or -1 */
	bool		dirty;			/* "what" changed since the set was built */
} KisSocket;

/* The backend's transport; see the file header */
static struct
{
	CURLM	   *multi;
	KisSocket	sockets[KIS_MAX_SOCKETS];
	int			nsockets;
	bool		sockets_changed;	/* a socket came or went: rebuild the set */
	uint64		socket_gen;		/* bumped with sockets_changed (async waits) */
	bool		events_dirty;	/* only interests changed: ModifyWaitEvent */
	CURL	   *easy_pool[KIS_MAX_SOCKETS];	/* reset handles, reused */
	int			neasy;
	bool		socket_overflow;
	TimestampTz timer_deadline; /* -1: no timer */
	WaitEventSet *wes;
	dlist_head	fetchers;		/* open fetchers */
	bool		drop_pool;		/* tear down when the last fetcher goes */
} transport = {.timer_deadline = -1, .fetchers = DLIST_STATIC_INIT(transport.fetchers)};

/* ----------------------------------------------------------------
 * libcurl's allocator: the C library's, except that whatever libcurl
 * frees is wiped first.  Its request buffer holds our header lines (the
 * app key, the secret, the bearer token) and the tokenP body, and its
 * receive buffer a token answer; libcurl frees them without wiping.
 * Never throws and calls no PostgreSQL code: the resolver thread uses it.
 * ----------------------------------------------------------------
 */
static void
wiping_free(void *ptr)
{
	if (ptr != NULL)
	{
		explicit_bzero(ptr, kis_malloc_usable_size(ptr));
		free(ptr);
	}
}

/* Grow by copying, so that the old block is wiped too */
static void *
wiping_realloc(void *ptr, size_t size)
{
	size_t		old;
	void	   *grown;

	if (ptr == NULL)
		return malloc(size);
	old = kis_malloc_usable_size(ptr);
	if (size <= old)
		return ptr;
	grown = malloc(size);
	if (grown == NULL)
		return NULL;
	memcpy(grown, ptr, old);
	wiping_free(ptr);
	return grown;
}

/*
 * At load (_PG_init): initialize libcurl with that allocator.  If another
 * module of this process initialized libcurl first, its allocator stays.
 */
void
kis_fetch_global_init(void)
{
	if (curl_global_init_mem(CURL_GLOBAL_DEFAULT, malloc, wiping_free,
							 wiping_realloc, strdup, calloc) != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("kis_fdw could not initialize libcurl")));
}

/* ----------------------------------------------------------------
 * libcurl callbacks: record only, never throw
 * ----------------------------------------------------------------
 */
static int
socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	int			i;

	for (i = 0; i < transport.nsockets; i++)
	{
		if (transport.sockets[i].fd == fd)
			break;
	}
	if (what == CURL_POLL_REMOVE)
	{
		if (i < transport.nsockets)
			transport.sockets[i] = transport.sockets[--transport.nsockets];
	}
	else if (i < transport.nsockets)
	{
		/* curl changes interest at every request: modify, don't rebuild */
		transport.sockets[i].what = what;
		if (transport.sockets[i].pos >= 0 && (what & CURL_POLL_INOUT) != 0)
		{
			transport.sockets[i].dirty = true;
			transport.events_dirty = true;
			return 0;
		}
	}
	else if (transport.nsockets < KIS_MAX_SOCKETS)
	{
		transport.sockets[i].fd = fd;
		transport.sockets[i].what = what;
		transport.sockets[i].pos = -1;
		transport.sockets[i].dirty = false;
		transport.nsockets++;
	}
	else
	{
		transport.socket_overflow = true;
		return -1;
	}
	transport.sockets_changed = true;
	transport.socket_gen++;
	return 0;
}

static int
timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	if (timeout_ms < 0)
		transport.timer_deadline = -1;
	else
		transport.timer_deadline = kis_clock_now() + (int64) timeout_ms * 1000;
	return 0;
}

/* Sockets are accounted to PostgreSQL's fd budget while curl holds them. */
static curl_socket_t
open_socket_cb(void *clientp, curlsocktype purpose, struct curl_sockaddr *addr)
{
	curl_socket_t fd;

	if (!AcquireExternalFD())
	{
		errno = EMFILE;
		return CURL_SOCKET_BAD;
	}
	fd = socket(addr->family, addr->socktype, addr->protocol);
	if (fd == CURL_SOCKET_BAD)
		ReleaseExternalFD();
	return fd;
}

static int
close_socket_cb(void *clientp, curl_socket_t fd)
{
	int			rc = close(fd);

	ReleaseExternalFD();
	return rc;
}

/* Collect the body, refusing more than KIS_MAX_RESPONSE_BYTES */
static size_t
write_cb(char *data, size_t size, size_t nmemb, void *userp)
{
	KisRequest *req = (KisRequest *) userp;
	size_t		n = size * nmemb;

	if (req->body_len + n > KIS_MAX_RESPONSE_BYTES)
	{
		req->body_too_large = true;
		return 0;				/* makes curl fail with CURLE_WRITE_ERROR */
	}
	if (req->body_len + n + 1 > req->body_cap)
	{
		size_t		cap = Max(req->body_cap * 2, req->body_len + n + 1);
		char	   *grown;

		cap = Max(cap, 8192);
		grown = MemoryContextAllocExtended(req->fetcher->cxt, cap, MCXT_ALLOC_NO_OOM);
		if (grown == NULL)
			return 0;
		if (req->body != NULL)
		{
			memcpy(grown, req->body, req->body_len);
			if (req->kind == KIS_REQ_TOKEN)
				explicit_bzero(req->body, req->body_len);	/* holds a token */
			pfree(req->body);
		}
		req->body = grown;
		req->body_cap = cap;
	}
	memcpy(req->body + req->body_len, data, n);
	req->body_len += n;
	req->body[req->body_len] = '\0';
	return n;
}

/* Keep the answer's tr_cont header (paging); other headers are not needed */
static size_t
header_cb(char *data, size_t size, size_t nmemb, void *userp)
{
	KisRequest *req = (KisRequest *) userp;
	size_t		n = size * nmemb;

	if (n > 8 && pg_strncasecmp(data, "tr_cont:", 8) == 0)
	{
		size_t		i = 8;
		size_t		len = 0;

		while (i < n && (data[i] == ' ' || data[i] == '\t'))
			i++;
		while (i + len < n && len < sizeof(req->tr_cont) - 1 &&
			   data[i + len] != '\r' && data[i + len] != '\n' && data[i + len] != ' ')
			len++;
		memcpy(req->tr_cont, data + i, len);
		req->tr_cont[len] = '\0';
	}
	return n;
}

/* ----------------------------------------------------------------
 * The transport
 * ----------------------------------------------------------------
 */
static CURLM *
transport_multi(void)
{
	if (transport.multi == NULL)
	{
		CURLM	   *multi = curl_multi_init();

		if (multi == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("could not create a libcurl multi handle")));
		kis_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
		kis_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, timer_cb);
		transport.multi = multi;
		transport.nsockets = 0;
		transport.timer_deadline = -1;
		transport.sockets_changed = true;
		transport.socket_gen++;
	}
	return transport.multi;
}

/* Close every pooled connection and the wait set; never throws */
static void
transport_teardown(void)
{
	if (transport.multi != NULL)
	{
		curl_multi_cleanup(transport.multi);
		transport.multi = NULL;
	}
	if (transport.wes != NULL)
	{
		FreeWaitEventSet(transport.wes);
		transport.wes = NULL;
	}
	while (transport.neasy > 0)
		curl_easy_cleanup(transport.easy_pool[--transport.neasy]);
	transport.nsockets = 0;
	transport.timer_deadline = -1;
	transport.sockets_changed = true;
	transport.socket_gen++;
	transport.events_dirty = false;
	transport.socket_overflow = false;
	transport.drop_pool = false;
}

/* WaitEventSet events for curl's CURL_POLL_* interest */
static int
socket_events(int what)
{
	int			events = 0;

	if (what & CURL_POLL_IN)
		events |= WL_SOCKET_READABLE;
	if (what & CURL_POLL_OUT)
		events |= WL_SOCKET_WRITEABLE;
	return events;
}

static void
transport_rebuild_wait_set(void)
{
	if (transport.wes != NULL)
	{
		FreeWaitEventSet(transport.wes);
		transport.wes = NULL;
	}
	transport.wes = kis_create_wait_event_set(transport.nsockets + 2);
	AddWaitEventToSet(transport.wes, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(transport.wes, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	for (int i = 0; i < transport.nsockets; i++)
	{
		int			events = socket_events(transport.sockets[i].what);

		transport.sockets[i].pos = events == 0 ? -1 :
			AddWaitEventToSet(transport.wes, events, transport.sockets[i].fd, NULL, NULL);
		transport.sockets[i].dirty = false;
	}
	transport.sockets_changed = false;
	transport.events_dirty = false;
}

/* Bring the wait set up to date: rebuilt if sockets came or went, else modified */
static void
transport_update_wait_set(void)
{
	if (transport.sockets_changed || transport.wes == NULL)
		transport_rebuild_wait_set();
	else if (transport.events_dirty)
	{
		for (int i = 0; i < transport.nsockets; i++)
		{
			if (transport.sockets[i].dirty)
			{
				ModifyWaitEvent(transport.wes, transport.sockets[i].pos,
								socket_events(transport.sockets[i].what), NULL);
				transport.sockets[i].dirty = false;
			}
		}
		transport.events_dirty = false;
	}
}

/*
 * Tell curl about one socket event or its timer; never throws.
 *
 * This is where libcurl starts its work, and so its threaded resolver: a
 * host name is resolved by getaddrinfo on a short-lived thread, while this
 * backend keeps waiting on its latch (cancellable, bounded by
 * connect_timeout_ms).  The thread calls no PostgreSQL code; so that no
 * PostgreSQL signal handler ever runs on it either, it is started with
 * every asynchronous signal blocked (a thread inherits its creator's mask).
 * Signals arriving meanwhile are delivered when the mask is restored.
 * See docs/design.md, "Name resolution".
 */
static void
transport_action(curl_socket_t fd, int mask)
{
	sigset_t	blocked;
	sigset_t	saved;
	int			running;

	sigfillset(&blocked);
	sigdelset(&blocked, SIGSEGV);
	sigdelset(&blocked, SIGBUS);
	sigdelset(&blocked, SIGFPE);
	sigdelset(&blocked, SIGILL);
	pthread_sigmask(SIG_SETMASK, &blocked, &saved);
	curl_multi_socket_action(transport.multi, fd, mask, &running);
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
}

/* ----------------------------------------------------------------
 * Requests
 * ----------------------------------------------------------------
 */

/* Free what curl holds for a request; never throws */
static void
release_request(KisRequest *req)
{
	if (req->easy != NULL)
	{
		if (transport.multi != NULL)
			curl_multi_remove_handle(transport.multi, req->easy);
		/*
		 * Keep it for the next request (a new handle costs a few µs); but
		 * not a tokenP request's: libcurl 8 keeps the sent bytes (the
		 * secret) in buffers a reset does not free, which a cleanup frees
		 * through the wiping allocator.
		 */
		if (transport.neasy < KIS_MAX_SOCKETS && req->kind != KIS_REQ_TOKEN)
		{
			curl_easy_reset(req->easy);
			transport.easy_pool[transport.neasy++] = req->easy;
		}
		else
			curl_easy_cleanup(req->easy);
		req->easy = NULL;
	}
	if (req->headers != NULL)
	{
		/* they hold the app key, the secret and the token: wipe our copies */
		for (struct curl_slist *l = req->headers; l != NULL; l = l->next)
			explicit_bzero(l->data, strlen(l->data));
		curl_slist_free_all(req->headers);
		req->headers = NULL;
	}
}

/* A tokenP answer holds a token: wipe it before its memory is given back */
static void
wipe_token_body(KisRequest *req)
{
	if (req->body != NULL && req->kind == KIS_REQ_TOKEN)
		explicit_bzero(req->body, req->body_len);
}

/* The body buffer is only needed until the answer is parsed */
static void
forget_body(KisRequest *req)
{
	wipe_token_body(req);
	if (req->kind == KIS_REQ_TOKEN)
		req->fetcher->token_req = NULL;
	if (req->body != NULL)
		pfree(req->body);
	req->body = NULL;
	req->body_len = req->body_cap = 0;
}

/* Keep what curl_slist_append returned; the list stays the request's */
static void
keep_headers(KisRequest *req, struct curl_slist *list)
{
	if (list == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory while building a KIS request")));
	req->headers = list;
}

/* Append a header line */
static void
add_header(KisRequest *req, const char *line)
{
	keep_headers(req, curl_slist_append(req->headers, line));
}

/*
 * Append "name: value"; our copy is wiped, as the value may be a secret
 * (libcurl keeps its own copy until the request is released).  The line
 * is built in a buffer sized at once and wiped before anything may
 * throw: psprintf would free a first, too short attempt (a 180-character
 * secret, a token) unwiped.
 */
static void
add_header_value(KisRequest *req, const char *name, const char *value)
{
	size_t		name_len = strlen(name);
	size_t		value_len = strlen(value);
	char	   *line;
	struct curl_slist *list;

	/* a CR or LF would end the header and start another request: refuse */
	if (!kis_is_printable_ascii(value))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("kis_fdw refused to send request header \"%.*s\"",
						(int) strcspn(name, ":"), name),
				 errdetail("Its value holds a control character or a non-ASCII byte; it is not shown.")));
	line = palloc(name_len + value_len + 1);

	memcpy(line, name, name_len);
	memcpy(line + name_len, value, value_len + 1);
	list = curl_slist_append(req->headers, line);
	explicit_bzero(line, name_len + value_len);
	pfree(line);
	keep_headers(req, list);
}

/*
 * Create the easy handle and hand it to the multi handle.  The request is
 * on the inflight list before anything is created, so the cleanup callback
 * finds whatever exists if something below throws.
 */
static void
start_request(KisFetcher *f, KisRequest *req)
{
	const KisConfig *config = f->config;
	CURL	   *easy;
	CURLMcode	mrc;
	bool		plain_http = strncmp(req->url, "http://", 7) == 0;
	KisHeader	headers[KIS_AUTH_MAX_HEADERS];
	int			nheaders = 0;

	dlist_push_tail(&f->inflight, &req->node);
	req->body_len = 0;
	req->body_too_large = false;
	req->errbuf[0] = '\0';
	req->tr_cont[0] = '\0';
	req->attempts++;
	req->started_at = kis_clock_now();
	req->away_at_start = f->away_us;
	if (req->share == KIS_SHARE_OWNER)
		kis_cache_sending(req->answer_id, req->share_serial, true);

	req->easy = easy = transport.neasy > 0 ?
		transport.easy_pool[--transport.neasy] : curl_easy_init();
	if (easy == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a libcurl handle")));

	kis_easy_setopt(easy, CURLOPT_URL, req->url);
	kis_easy_setopt(easy, CURLOPT_PRIVATE, req);
	kis_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	/* releasing a transfer that is still resolving must not wait for DNS */
#ifdef KIS_HAVE_CURLOPT_QUICK_EXIT
	kis_easy_setopt(easy, CURLOPT_QUICK_EXIT, 1L);
#endif
	/* validated: plain http only to a loopback test server */
	kis_easy_setopt(easy, kis_curl_protocols_option, kis_curl_protocols(!plain_http));
	kis_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
	kis_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);
	kis_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);
	if (config->ca_file)
		kis_easy_setopt(easy, CURLOPT_CAINFO, config->ca_file);
	/* no wall-clock limits in curl: expire_requests applies ours */
	kis_easy_setopt(easy, CURLOPT_TIMEOUT_MS, 0L);
	kis_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long) INT_MAX);
	kis_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
	kis_easy_setopt(easy, CURLOPT_USERAGENT, KIS_USER_AGENT);
	kis_easy_setopt(easy, CURLOPT_ERRORBUFFER, req->errbuf);
	kis_easy_setopt(easy, CURLOPT_WRITEFUNCTION, write_cb);
	kis_easy_setopt(easy, CURLOPT_WRITEDATA, req);
	kis_easy_setopt(easy, CURLOPT_HEADERFUNCTION, header_cb);
	kis_easy_setopt(easy, CURLOPT_HEADERDATA, req);
	kis_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, open_socket_cb);
	kis_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, close_socket_cb);

	if (req->kind == KIS_REQ_TOKEN)
		nheaders = kis_token_headers(headers);
	else if (req->kind == KIS_REQ_DATA)
		nheaders = kis_auth_headers(config, f->tok.token, req->tr_id, headers);
	for (int i = 0; i < nheaders; i++)
	{
		if (headers[i].value == NULL)
			add_header(req, headers[i].name);
		else
			add_header_value(req, headers[i].name, headers[i].value);
	}

	if (req->kind == KIS_REQ_TOKEN)
	{
		kis_easy_setopt(easy, CURLOPT_POSTFIELDS, f->tok.request_body);
		kis_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, (long) strlen(f->tok.request_body));
	}
	else
	{
		if (req->header != NULL)
			add_header(req, req->header);
		f->ndata_inflight++;
		f->stats->requests++;
		if (req->kind == KIS_REQ_DATA)
			kis_slot_count(f->slot, KIS_CTR_REQUESTS, 1);
	}
	kis_easy_setopt(easy, CURLOPT_HTTPHEADER, req->headers);

	mrc = curl_multi_add_handle(transport_multi(), easy);
	if (mrc != CURLM_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not start a KIS request: %s", curl_multi_strerror(mrc))));
}

static KisRequest *
new_request(KisFetcher *f, KisRequestKind kind, const char *url, const char *tr_id,
			int flags, void *arg)
{
	KisRequest *req = MemoryContextAllocZero(f->cxt, sizeof(KisRequest));

	req->fetcher = f;
	req->kind = kind;
	req->flags = flags;
	req->url = MemoryContextStrdup(f->cxt, url);
	req->tr_id = tr_id;
	req->arg = arg;
	return req;
}

/* ----------------------------------------------------------------
 * Shared answers (cache.c).  A request is looked up before it goes to the
 * rate gate, so neither a cached answer nor waiting for another session's
 * send of the same request costs a slot.  docs/cache.md has the rules.
 * ----------------------------------------------------------------
 */

/* The owner is done with a request: waiters stop waiting; never throws */
static void
share_done(KisRequest *req)
{
	if (req->share == KIS_SHARE_OWNER)
	{
		kis_cache_abandon(req->answer_id, req->share_serial);
		dlist_delete(&req->owned_node);
		req->share = KIS_SHARE_ALONE;
	}
}

/* A successful answer arrived: keep it for those waiting and the cache */
static void
share_answer(KisFetcher *f, KisRequest *req, long http_status)
{
	req->answered_at = GetCurrentTimestamp();
	if (req->share == KIS_SHARE_OWNER &&
		kis_cache_may_keep((req->flags & KIS_FETCH_PRIVATE) != 0,
						   (req->flags & KIS_FETCH_MAY_CONTINUE) != 0,
						   f->config->cache_ttl_ms, req->tr_cont))
		kis_cache_store(req->answer_id, req->share_serial,
						req->body ? req->body : "", req->body_len,
						req->tr_cont, http_status, req->answered_at);
}

static void complete_request(KisFetcher *f, KisRequest *req, KisResponse *resp,
							 MemoryContext rcxt, TimestampTz now);

/* Complete a request with a shared answer (from the cache, or another's send) */
static void
complete_shared(KisFetcher *f, KisRequest *req, KisCachedAnswer *answer, bool hit)
{
	MemoryContext rcxt = AllocSetContextCreate(f->cxt, "kis_fdw response",
											   ALLOCSET_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(rcxt);
	KisResponse resp;

	if (req->kind == KIS_REQ_FILE)
	{
		/* a download's body as received (finish_file_request) */
		char	   *body = palloc(answer->len + 1);

		memcpy(body, answer->body, answer->len + 1);
		memset(&resp, 0, sizeof(resp));
		resp.outcome = KIS_OUTCOME_OK;
		resp.http_status = answer->http_status;
		resp.body = body;
		resp.body_len = answer->len;
	}
	else
		kis_response_read(&resp, answer->http_status, answer->body, answer->len);
	MemoryContextSwitchTo(old);
	pfree(answer->body);
	memcpy(req->tr_cont, answer->tr_cont, sizeof(req->tr_cont));
	req->answered_at = answer->answered_at;
	if (hit)
	{
		f->stats->cache_hits++;
		kis_slot_count(f->slot, KIS_CTR_CACHE_HITS, 1);
	}
	else
	{
		f->stats->shared_waits++;
		kis_slot_count(f->slot, KIS_CTR_SHARED_WAITS, 1);
	}
	complete_request(f, req, &resp, rcxt, kis_clock_now());
}

/*
 * The request at the head of the ready queue, before the gate: answered
 * from the cache, or set waiting for another's send (true: it left the
 * queue), or to be sent, perhaps as the send others wait for.
 */
static bool
share_lookup(KisFetcher *f, KisRequest *req, TimestampTz now)
{
	const KisConfig *config = f->config;
	KisCachedAnswer answer;

	if (req->share != KIS_SHARE_UNASKED)
		return false;
	req->share = KIS_SHARE_ALONE;
	if ((req->flags & KIS_FETCH_SHARED) == 0)
		return false;			/* a paged listing's next page, say */

	kis_cache_answer_id(config, f->creds, (req->flags & KIS_FETCH_PRIVATE) != 0,
						req->url, req->tr_id, req->header, req->answer_id);
	switch (kis_cache_lookup(req->answer_id,
							 kis_cache_ttl_ms(config->cache_ttl_ms, req->kind == KIS_REQ_FILE),
							 now, &req->share_serial, &answer, f->cxt))
	{
		case KIS_CACHE_SEND:
			break;
		case KIS_CACHE_OWNER:
			req->share = KIS_SHARE_OWNER;
			dlist_push_tail(&f->owned, &req->owned_node);
			break;
		case KIS_CACHE_HIT:
			dlist_delete(&req->node);
			complete_shared(f, req, &answer, true);
			return true;
		case KIS_CACHE_WAIT:
			dlist_delete(&req->node);
			req->share = KIS_SHARE_WAITING;
			req->share_until = now + kis_cache_patience_us(config->timeout_ms);
			dlist_push_tail(&f->sharing, &req->node);
			return true;
	}
	return false;
}

/*
 * Look at the requests waiting for others' sends: take the answers that
 * came, send those whose sender gave up (or that waited long enough).
 * Returns when to look again.
 */
static TimestampTz
share_poll(KisFetcher *f, TimestampTz now)
{
	TimestampTz wake = -1;
	dlist_mutable_iter iter;

	dlist_foreach_modify(iter, &f->sharing)
	{
		KisRequest *req = dlist_container(KisRequest, node, iter.cur);
		KisCachedAnswer answer;
		KisCacheResult r;

		r = kis_cache_poll(req->answer_id, &req->share_serial, &answer, f->cxt);
		if (r == KIS_CACHE_WAIT && now < req->share_until)
		{
			TimestampTz next = kis_cache_next_look(now, req->share_until);

			wake = wake < 0 ? next : Min(wake, next);
			continue;
		}
		dlist_delete(&req->node);
		if (r == KIS_CACHE_HIT)
			complete_shared(f, req, &answer, false);
		else if (r == KIS_CACHE_OWNER)
		{
			/* taken over from a sender that is away: others may wait for us */
			req->share = KIS_SHARE_OWNER;
			dlist_push_tail(&f->owned, &req->owned_node);
			dlist_push_head(&f->ready, &req->node);
		}
		else
		{
			req->share = KIS_SHARE_ALONE;
			dlist_push_head(&f->ready, &req->node);
		}
	}
	return wake;
}

/*
 * Keep an error that ends this fetcher's scan, to be raised by the scan's
 * own kis_fetch_next: the request may have been completed while another
 * scan (another cursor, say) was waiting.  The first error wins.  The
 * error is built by a real ereport (constant, translatable texts), here or
 * in auth.c ("raise", a statement that throws), and caught at once;
 * nothing between here and the throw holds a resource.
 */
#define FAIL_FETCHER(f, raise) \
	do { \
		if ((f)->fatal == NULL) \
		{ \
			MemoryContext fail_cxt = CurrentMemoryContext; \
			PG_TRY(); \
			{ \
				raise; \
			} \
			PG_CATCH(); \
			{ \
				keep_fatal(f, fail_cxt); \
			} \
			PG_END_TRY(); \
		} \
	} while (0)

static void
keep_fatal(KisFetcher *f, MemoryContext back_to)
{
	MemoryContextSwitchTo(f->cxt);
	f->fatal = CopyErrorData();
	FlushErrorState();
	MemoryContextSwitchTo(back_to);
}

static void
raise_fatal(KisFetcher *f)
{
	if (f->fatal != NULL)
		ReThrowError(f->fatal);
}

/*
 * Hand a finished data request to the scan.  The completion and its parsed
 * answer live in their own small context, freed by kis_fetch_forget.
 */
static void
complete_request(KisFetcher *f, KisRequest *req, KisResponse *resp,
				 MemoryContext rcxt, TimestampTz now)
{
	KisCompletion *c = MemoryContextAllocZero(rcxt, sizeof(KisCompletion));

	c->cxt = rcxt;
	c->arg = req->arg;
	memcpy(c->tr_cont, req->tr_cont, sizeof(c->tr_cont));
	c->resp = *resp;
	c->attempts = req->attempts;
	/* the row's fetched_at: when KIS answered, a shared answer too */
	c->completed_at = req->answered_at != 0 ? req->answered_at : GetCurrentTimestamp();
	share_done(req);
	if (resp->outcome != KIS_OUTCOME_OK && resp->outcome != KIS_OUTCOME_FAILED)
	{
		/* retries exhausted: report it as this key's failure */
		MemoryContext old = MemoryContextSwitchTo(rcxt);

		kis_outcome_give_up(&c->resp, req->attempts);
		MemoryContextSwitchTo(old);
	}
	if (c->resp.outcome != KIS_OUTCOME_OK)
	{
		f->stats->failures++;
		kis_slot_count(f->slot, KIS_CTR_ERR_KEY, 1);
	}
	f->npending--;
	dlist_push_tail(&f->done, &c->node);
}

/* Send it again after a back-off (KIS_ACTION_RETRY) */
static void
retry_later(KisFetcher *f, KisRequest *req, MemoryContext rcxt, TimestampTz now)
{
	MemoryContextDelete(rcxt);
	if (req->share == KIS_SHARE_OWNER)	/* unsent again while it backs off */
		kis_cache_sending(req->answer_id, req->share_serial, false);
	f->stats->retries++;
	kis_slot_count(f->slot, KIS_CTR_RETRIES, 1);
	req->not_before = now + kis_backoff_us(req->attempts);
	dlist_push_tail(&f->delayed, &req->node);
}

static bool
curl_error_is_tls_trust(CURLcode rc)
{
	return rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CACERT_BADFILE ||
		rc == CURLE_SSL_CERTPROBLEM || rc == CURLE_SSL_ISSUER_ERROR ||
		rc == CURLE_SSL_PINNEDPUBKEYNOTMATCH;
}

static const char *
curl_error_text(KisRequest *req, CURLcode rc)
{
	return req->errbuf[0] ? req->errbuf : curl_easy_strerror(rc);
}

static void
finish_token_request(KisFetcher *f, KisRequest *req, CURLcode rc, long status,
					 TimestampTz now)
{
	KisTokenNext next;

	if (rc != CURLE_OK)
	{
		forget_body(req);		/* a part of an answer may hold a token */
		if (kis_token_no_answer(&f->tok, f->slot, curl_error_is_tls_trust(rc),
								f->config->max_retries, now) == KIS_TOKEN_NEXT_FAIL)
			FAIL_FETCHER(f, kis_token_raise_unreached(curl_error_text(req, rc),
													  f->config->base_url,
													  curl_error_is_tls_trust(rc)));
		return;
	}

	next = kis_token_answer(&f->tok, f->slot, f->creds, status,
							req->body ? req->body : "", req->body_len,
							f->config->max_retries, now);
	forget_body(req);
	if (f->tok.result == KIS_TOKEN_OK)
		f->stats->tokens_issued++;
	/* KIS_TOKEN_NEXT_AGAIN: pump asks again once the schedule allows */
	if (next == KIS_TOKEN_NEXT_FAIL)
		FAIL_FETCHER(f, kis_token_raise(&f->tok));
}

static void
finish_data_request(KisFetcher *f, KisRequest *req, CURLcode rc, long status,
					TimestampTz now)
{
	KisResponse resp;
	MemoryContext rcxt;
	MemoryContext old;

	f->ndata_inflight--;
	if (rc != CURLE_OK && curl_error_is_tls_trust(rc))
	{
		FAIL_FETCHER(f, ereport(ERROR,
								(errcode(ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
								 errmsg("could not verify the TLS certificate of the KIS server"),
								 errdetail("%s", curl_error_text(req, rc)),
								 errhint("Check the server's ca_file option, and that base_url names the host the certificate is for."))));
		return;
	}

	kis_slot_count(f->slot, KIS_CTR_BYTES, req->body_len);
	rcxt = AllocSetContextCreate(f->cxt, "kis_fdw response", ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(rcxt);
	if (rc == CURLE_OK)
		kis_response_read(&resp, status, req->body ? req->body : "", req->body_len);
	else
	{
		memset(&resp, 0, sizeof(resp));
		resp.http_status = status;
		if (req->body_too_large)
		{
			resp.outcome = KIS_OUTCOME_FAILED;
			resp.problem = psprintf("answer larger than %d bytes", KIS_MAX_RESPONSE_BYTES);
		}
		else
		{
			resp.outcome = KIS_OUTCOME_RETRY;
			resp.problem = psprintf("network error: %s", curl_error_text(req, rc));
		}
	}
	if (rc == CURLE_OK && resp.outcome == KIS_OUTCOME_OK && f->check != NULL &&
		(resp.problem = f->check(req->arg, &resp)) != NULL)
	{
		/* another request's answer: this key's failure, in our words */
		resp.outcome = KIS_OUTCOME_FAILED;
		resp.msg_cd = NULL;
	}
	MemoryContextSwitchTo(old);
	if (rc == CURLE_OK && resp.outcome == KIS_OUTCOME_OK)
		share_answer(f, req, status);
	forget_body(req);

	if (resp.outcome == KIS_OUTCOME_RETRY_RATE)
	{
		f->stats->rate_limited++;
		kis_slot_count(f->slot, KIS_CTR_RATE_LIMITED, 1);
		kis_limiter_back_off(f->slot, now + KIS_RATE_PENALTY_MS * 1000);
	}
	else if (resp.outcome == KIS_OUTCOME_RETRY)
		kis_slot_count(f->slot, KIS_CTR_ERR_TRANSIENT, 1);
	else if (resp.outcome == KIS_OUTCOME_TOKEN)
		req->token_rejections++;

	switch (kis_outcome_action(resp.outcome, req->attempts, f->config->max_retries,
							   req->token_rejections))
	{
		case KIS_ACTION_DONE:
		case KIS_ACTION_GIVE_UP:
			complete_request(f, req, &resp, rcxt, now);
			break;
		case KIS_ACTION_RETRY:
			retry_later(f, req, rcxt, now);
			break;
		case KIS_ACTION_RENEW_TOKEN:
			/* replace the token once for everyone; resend without charge */
			MemoryContextDelete(rcxt);
			kis_slot_count(f->slot, KIS_CTR_ERR_TOKEN, 1);
			kis_token_invalidate(f->slot, req->token_generation);
			if (req->share == KIS_SHARE_OWNER)	/* unsent until a new token */
				kis_cache_sending(req->answer_id, req->share_serial, false);
			req->attempts--;
			dlist_push_head(&f->ready, &req->node);
			break;
		case KIS_ACTION_TOKEN_FAILED:
			FAIL_FETCHER(f, kis_token_raise_rejected(f->slot, req->token_generation,
													 kis_response_summary(&resp)));
			break;
		case KIS_ACTION_FAIL:
			kis_slot_count(f->slot, KIS_CTR_ERR_FATAL, 1);
			FAIL_FETCHER(f, ereport(ERROR,
									(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
									 errmsg("KIS refused the request"),
									 errdetail("%s", kis_server_message(kis_response_summary(&resp))),
									 errhint("Check app_key and app_secret in the user mapping, and that the key is for the server's environment (real or virtual)."))));
			break;
	}
}

/*
 * A download: HTTP 200 hands the body over (resp.body); a network error or
 * a 5xx is retried, any other status is the key's failure.
 */
static void
finish_file_request(KisFetcher *f, KisRequest *req, CURLcode rc, long status,
					TimestampTz now)
{
	MemoryContext rcxt = AllocSetContextCreate(f->cxt, "kis_fdw response",
											   ALLOCSET_DEFAULT_SIZES);
	MemoryContext old;
	KisResponse resp;

	f->ndata_inflight--;
	memset(&resp, 0, sizeof(resp));
	resp.http_status = status;
	if (rc != CURLE_OK && curl_error_is_tls_trust(rc))
	{
		MemoryContextDelete(rcxt);
		FAIL_FETCHER(f, ereport(ERROR,
								(errcode(ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
								 errmsg("could not verify the TLS certificate of the download server"),
								 errdetail("%s", curl_error_text(req, rc)),
								 errhint("Check the server's ca_file and master_url options."))));
		return;
	}
	old = MemoryContextSwitchTo(rcxt);
	if (rc == CURLE_OK && status == 200)
	{
		char	   *body = MemoryContextAllocExtended(rcxt, req->body_len + 1, MCXT_ALLOC_NO_OOM);

		if (body != NULL)
		{
			memcpy(body, req->body ? req->body : "", req->body_len);
			body[req->body_len] = '\0';
			resp.outcome = KIS_OUTCOME_OK;
			resp.body = body;
			resp.body_len = req->body_len;
			/* kept for others unless plainly not whole (a cut transfer) */
			if (req->whole == NULL || req->whole(body, req->body_len))
				share_answer(f, req, status);
		}
		else
		{
			resp.outcome = KIS_OUTCOME_FAILED;
			resp.problem = pstrdup("out of memory");
		}
	}
	else if (rc == CURLE_OK)
	{
		resp.outcome = status >= 500 ? KIS_OUTCOME_RETRY : KIS_OUTCOME_FAILED;
		resp.problem = psprintf("HTTP %ld", status);
	}
	else
	{
		resp.outcome = req->body_too_large ? KIS_OUTCOME_FAILED : KIS_OUTCOME_RETRY;
		resp.problem = req->body_too_large ?
			psprintf("download larger than %d bytes", KIS_MAX_RESPONSE_BYTES) :
			psprintf("network error: %s", curl_error_text(req, rc));
	}
	MemoryContextSwitchTo(old);
	forget_body(req);
	if (kis_outcome_action(resp.outcome, req->attempts, f->config->max_retries, 0) ==
		KIS_ACTION_RETRY)
		retry_later(f, req, rcxt, now);
	else
		complete_request(f, req, &resp, rcxt, now);
}

/* The earlier of two times, -1 meaning none */
static TimestampTz
earliest(TimestampTz a, TimestampTz b)
{
	if (a < 0)
		return b;
	if (b < 0)
		return a;
	return Min(a, b);
}

/* Act on a transfer that ended; curl no longer holds it */
static void
finish_request(KisRequest *req, CURLcode rc, long status, TimestampTz now)
{
	KisFetcher *f = req->fetcher;

	f->stats->http_ms += (double) (now - req->started_at) / 1000.0;

	/*
	 * Its fetcher's next time may now be earlier (a retry's back-off, a
	 * free transfer, a token to ask for), and the step doing this work may
	 * be another fetcher's (kis_fetch_wait_any, kis_fetch_wait_fd): say
	 * "now", so that no wait trusts the time saved before; the fetcher's
	 * next poll works out the real one.
	 */
	f->wake = now;
	if (req->kind == KIS_REQ_TOKEN)
		finish_token_request(f, req, rc, status, now);
	else if (req->kind == KIS_REQ_FILE)
		finish_file_request(f, req, rc, status, now);
	else
		finish_data_request(f, req, rc, status, now);
}

/* Take curl's finished transfers and route them to their fetchers */
static void
drain_completions(void)
{
	CURLMsg    *msg;
	int			left;

	while (transport.multi != NULL &&
		   (msg = curl_multi_info_read(transport.multi, &left)) != NULL)
	{
		KisRequest *req;
		char	   *priv = NULL;
		CURLcode	rc = msg->data.result;
		long		status = 0;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
		req = (KisRequest *) priv;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);

		dlist_delete(&req->node);
		release_request(req);
		finish_request(req, rc, status, kis_clock_now());
	}
}

/*
 * How long req's scan has waited for it: the time since it was sent, less
 * the time the scan was away (see the file header).
 */
static int64
waited_us(const KisFetcher *f, const KisRequest *req, TimestampTz now)
{
	int64		away = f->away_us - req->away_at_start;

	/*
	 * Except a tokenP request's: it holds the key's issuing claim, which
	 * other sessions take over after a wall-clock time (auth.c), so its own
	 * clock must not stop either.
	 */
	if (req->kind == KIS_REQ_TOKEN)
		return now - req->started_at;

	if (f->away_since != 0)
		away += now - f->away_since;
	return now - req->started_at - away;
}

/*
 * Give up on f's requests waited for longer than timeout_ms, or than
 * connect_timeout_ms while still connecting (curl has not got as far as
 * sending); they end as a network error, retried like any other.  Called
 * after the sockets were read, so an answer that is there wins.  Returns
 * when the next one would expire, or -1.
 */
static TimestampTz
expire_requests(KisFetcher *f, TimestampTz now)
{
	TimestampTz next = -1;
	dlist_mutable_iter iter;

	dlist_foreach_modify(iter, &f->inflight)
	{
		KisRequest *req = dlist_container(KisRequest, node, iter.cur);
		int64		waited = waited_us(f, req, now);
		int64		limit = (int64) f->config->timeout_ms * 1000;
		curl_off_t	sending_at = 0;
		bool		connecting;
		size_t		received = req->body_len;

		if (req->easy == NULL)
			continue;
		curl_easy_getinfo(req->easy, CURLINFO_PRETRANSFER_TIME_T, &sending_at);
		connecting = sending_at == 0;
		if (connecting)
			limit = Min(limit, (int64) f->config->connect_timeout_ms * 1000);
		if (waited < limit)
		{
			next = earliest(next, now + (limit - waited));
			continue;
		}

		dlist_delete(&req->node);
		release_request(req);
		if (connecting)
			snprintf(req->errbuf, sizeof(req->errbuf),
					 "not connected within connect_timeout_ms (%d ms)",
					 f->config->connect_timeout_ms);
		else
			snprintf(req->errbuf, sizeof(req->errbuf),
					 "no answer within timeout_ms (%d ms), %zu bytes received",
					 f->config->timeout_ms, received);
		finish_request(req, CURLE_OPERATION_TIMEDOUT, 0, now);
	}
	return next;
}

/*
 * The scan is back (or, for an asynchronous scan, the executor is about to
 * wait for it): stop counting time away.  True if it had been away while
 * requests were in flight.
 */
static bool
end_away(KisFetcher *f)
{
	kis_cache_away(false);
	if (f->away_since == 0)
		return false;
	f->away_us += kis_clock_now() - f->away_since;
	f->away_since = 0;
	return !dlist_is_empty(&f->inflight);
}

/* ----------------------------------------------------------------
 * The loop
 * ----------------------------------------------------------------
 */
/*
 * Start whatever may start now.  Returns when something of ours next
 * becomes possible (a backoff ends, our reserved send time comes, a token
 * may be issued or another session's issuance may have finished), or -1
 * if only curl's events can move us on.
 */
static TimestampTz
pump(KisFetcher *f, TimestampTz now)
{
	TimestampTz wake = -1;
	TimestampTz token_wake = -1;
	dlist_mutable_iter iter;
	bool		api_ready = false;

	dlist_foreach_modify(iter, &f->delayed)
	{
		KisRequest *req = dlist_container(KisRequest, node, iter.cur);

		if (req->not_before <= now)
		{
			dlist_delete(&req->node);
			dlist_push_tail(&f->ready, &req->node);
		}
		else
			wake = earliest(wake, req->not_before);
	}
	wake = earliest(wake, share_poll(f, now));

	/*
	 * Downloads need neither a token nor the API's gate; those that must
	 * wait for max_concurrency wait here, not at the token below.
	 */
	dlist_foreach_modify(iter, &f->ready)
	{
		KisRequest *req = dlist_container(KisRequest, node, iter.cur);

		if (req->kind != KIS_REQ_FILE)
		{
			api_ready = true;
			continue;
		}
		if (f->fatal != NULL || f->ndata_inflight >= f->config->max_concurrency)
			continue;
		if (share_lookup(f, req, now))
			continue;			/* from the store, or another's download */
		dlist_delete(&req->node);
		start_request(f, req);
	}

	if (f->fatal != NULL || f->tok.claim != 0 || !api_ready)
		return wake;

	switch (kis_token_for_scan(&f->tok, f->slot, f->creds, f->config->timeout_ms,
							   now, &token_wake))
	{
		case KIS_TOKEN_READY:
			break;
		case KIS_TOKEN_ISSUE:
			f->token_req = new_request(f, KIS_REQ_TOKEN, kis_token_url(f->config),
									   NULL, 0, NULL);
			start_request(f, f->token_req);
			return wake;
		case KIS_TOKEN_WAIT:
		case KIS_TOKEN_WAIT_CLAIM:
		case KIS_TOKEN_WAIT_INTERVAL:
			return earliest(wake, token_wake);
	}

	while (!dlist_is_empty(&f->ready) &&
		   f->ndata_inflight < f->config->max_concurrency)
	{
		KisRequest *req;

		req = dlist_container(KisRequest, node, dlist_head_node(&f->ready));
		if (share_lookup(f, req, now))
			continue;

		/*
		 * One reservation at a time: a cancelled scan wastes one slot at
		 * most.  One that went stale (a cursor paused) or lies further
		 * ahead than the gate now justifies is renewed.
		 */
		if (f->has_reservation &&
			!kis_limiter_holds(f->slot, f->config->rate_limit, f->reserved_at, now))
		{
			kis_limiter_release(f->slot);
			f->has_reservation = false;
		}
		if (!f->has_reservation)
		{
			f->reserved_at = kis_limiter_reserve(f->slot, f->config->rate_limit, now);
			f->has_reservation = true;
			if (f->reserved_at > now)
			{
				f->stats->rate_wait_ms += (double) (f->reserved_at - now) / 1000.0;
				kis_slot_note_wait(f->slot, (uint64) (f->reserved_at - now));
			}
		}
		if (f->reserved_at > now)
		{
			wake = earliest(wake, f->reserved_at);
			break;
		}
		kis_limiter_release(f->slot);
		f->has_reservation = false;
		req = dlist_container(KisRequest, node, dlist_pop_head_node(&f->ready));
		req->token_generation = f->tok.generation;
		start_request(f, req);
	}
	return wake;
}

/* Wait for a socket, the latch or "wake", let curl work, then take its results */
static void
wait_and_work(TimestampTz wake)
{
	WaitEvent	events[16];
	TimestampTz now = kis_clock_now();
	TimestampTz deadline = earliest(wake, transport.timer_deadline);
	long		timeout = KIS_MAX_IDLE_WAIT_MS;
	int			n;

	if (deadline >= 0)
		timeout = Min(timeout, (long) Max(0, (deadline - now + 999) / 1000));

	if (transport.socket_overflow)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many KIS connections open in this session (more than %d)",
						KIS_MAX_SOCKETS)));
	transport_update_wait_set();

	n = WaitEventSetWait(transport.wes, timeout, events, lengthof(events),
						 PG_WAIT_EXTENSION);
	for (int i = 0; i < n; i++)
	{
		if (events[i].events & WL_LATCH_SET)
			ResetLatch(MyLatch);
		else if (events[i].events & WL_SOCKET_MASK)
		{
			int			mask = 0;

			if (events[i].events & WL_SOCKET_READABLE)
				mask |= CURL_CSELECT_IN;
			if (events[i].events & WL_SOCKET_WRITEABLE)
				mask |= CURL_CSELECT_OUT;
			transport_action(events[i].fd, mask);
		}
	}
	if (transport.timer_deadline >= 0 && kis_clock_now() >= transport.timer_deadline)
	{
		transport.timer_deadline = -1;
		transport_action(CURL_SOCKET_TIMEOUT, 0);
	}

	CHECK_FOR_INTERRUPTS();
	drain_completions();
}

/* ----------------------------------------------------------------
 * The fetcher's life
 * ----------------------------------------------------------------
 */

static void async_wait_release(KisFetcher *f);

/*
 * Memory-context reset callback: give back everything libcurl holds for
 * this fetcher.  Runs on normal end, rescan, ERROR and cancel alike; must
 * not throw or wait.
 */
static void
fetcher_cleanup(void *arg)
{
	KisFetcher *f = (KisFetcher *) arg;
	dlist_mutable_iter iter;

	if (f->released)
		return;
	f->released = true;

	dlist_foreach_modify(iter, &f->inflight)
	{
		KisRequest *req = dlist_container(KisRequest, node, iter.cur);

		dlist_delete(&req->node);
		release_request(req);
	}
	dlist_foreach_modify(iter, &f->owned)
		share_done(dlist_container(KisRequest, owned_node, iter.cur));
	if (f->token_req != NULL)
		wipe_token_body(f->token_req);	/* its memory goes with the context */
	kis_token_scan_end(&f->tok, f->slot);
	if (f->has_reservation)
		kis_limiter_release(f->slot);
	async_wait_release(f);
	if (f->slot != NULL)
		kis_app_slot_detach(f->slot);

	dlist_delete(&f->active_node);
	if (!f->orderly)
		transport.drop_pool = true;
	if (transport.drop_pool && dlist_is_empty(&transport.fetchers))
		transport_teardown();
}

KisFetcher *
kis_fetch_begin(MemoryContext run_cxt, const KisConfig *config, KisFetchStats *stats)
{
	KisFetcher *f = MemoryContextAllocZero(run_cxt, sizeof(KisFetcher));
	uint8		app_key_hash[KIS_SHA256_LEN];

	f->cxt = run_cxt;
	f->config = config;
	f->stats = stats;
	dlist_init(&f->ready);
	dlist_init(&f->delayed);
	dlist_init(&f->inflight);
	dlist_init(&f->done);
	dlist_init(&f->sharing);
	dlist_init(&f->owned);

	if (config->app_key != NULL)
	{
		kis_hash_app_key(config->app_key, app_key_hash);
		kis_hash_credentials(config, f->creds);
		f->slot = kis_app_slot_attach(f->creds, app_key_hash);
		kis_slot_count(f->slot, KIS_CTR_SCANS, 1);
	}

	/* from here on, the callback owns what the fetcher opens (and the slot) */
	dlist_push_tail(&transport.fetchers, &f->active_node);
	f->cleanup.func = fetcher_cleanup;
	f->cleanup.arg = f;
	MemoryContextRegisterResetCallback(run_cxt, &f->cleanup);

	if (config->app_key != NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(run_cxt);

		kis_token_scan_begin(&f->tok, config);
		MemoryContextSwitchTo(old);
	}
	/* room in the pool for every open scan's connections (async siblings) */
	{
		long		maxconnects = 1;
		dlist_iter	it;

		dlist_foreach(it, &transport.fetchers)
			maxconnects += dlist_container(KisFetcher, active_node, it.cur)->config->max_concurrency;
		kis_multi_setopt(transport_multi(), CURLMOPT_MAXCONNECTS, maxconnects);
	}
	return f;
}

/*
 * Queue one data request: path_and_query is appended to base_url; header
 * (a string constant, or NULL) is sent as an extra request header; flags
 * (KIS_FETCH_*) say what may be done with its answer.
 */
void
kis_fetch_add(KisFetcher *f, const char *path_and_query, const char *tr_id,
			  const char *header, int flags, void *arg)
{
	char	   *url;
	KisRequest *req;

	/* only a public endpoint's scan has no key, and it makes no API request */
	if (f->slot == NULL)
		elog(ERROR, "kis_fdw: an API request for a scan without an app key");
	url = psprintf("%s%s", f->config->base_url, path_and_query);
	req = new_request(f, KIS_REQ_DATA, url, tr_id, flags, arg);
	req->header = header;		/* a string constant */
	dlist_push_tail(&f->ready, &req->node);
	f->npending++;
	pfree(url);
}

/* Check each OK answer with check before it is shared or handed back */
void
kis_fetch_set_check(KisFetcher *f, KisAnswerCheck check)
{
	f->check = check;
}

/*
 * Queue one download of url (outside the API: no token, no rate gate),
 * shared with others when whole (NULL: always) says its body is whole.
 */
void
kis_fetch_add_file(KisFetcher *f, const char *url, KisBodyCheck whole, void *arg)
{
	KisRequest *req = new_request(f, KIS_REQ_FILE, url, NULL, KIS_FETCH_SHARED, arg);

	req->whole = whole;
	dlist_push_tail(&f->ready, &req->node);
	f->npending++;
}

/*
 * The next finished request, in completion order, waiting as needed; NULL
 * when every request has finished and been taken.
 */
KisCompletion *
kis_fetch_next(KisFetcher *f)
{
	KisCompletion *c = NULL;
	TimestampTz expiry = -1;

	/* back from the executor: first read what arrived meanwhile */
	if (end_away(f))
	{
		wait_and_work(kis_clock_now());
		expiry = expire_requests(f, kis_clock_now());
	}

	for (;;)
	{
		TimestampTz wake;

		raise_fatal(f);
		if (!dlist_is_empty(&f->done))
		{
			/*
			 * Before the scan goes off with a row (to a client that may pause
			 * between FETCHes), start what may start and let curl send what
			 * it can without waiting: nothing moves while we are away.
			 */
			if (f->npending > 0)
			{
				TimestampTz now = kis_clock_now();

				(void) pump(f, now);
				wait_and_work(now);
			}
			c = dlist_container(KisCompletion, node, dlist_pop_head_node(&f->done));
			break;
		}
		if (f->npending == 0)
			break;
		wake = pump(f, kis_clock_now());
		if (!dlist_is_empty(&f->done))
			continue;			/* answered from the cache */
		wait_and_work(earliest(wake, expiry));
		expiry = expire_requests(f, kis_clock_now());
	}
	f->away_since = kis_clock_now();
	kis_cache_away(true);
	return c;
}

/* The scan has used a completion; free it and its parsed answer */
void
kis_fetch_forget(KisCompletion *completion)
{
	MemoryContextDelete(completion->cxt);
}

/*
 * The scan is done with this fetcher in an orderly way (end or rescan):
 * the pooled connections stay for the next query.  The memory-context
 * callback frees the rest when the caller deletes the context.
 */
void
kis_fetch_end(KisFetcher *f)
{
	f->orderly = true;
}

/* ----------------------------------------------------------------
 * Asynchronous use (the children of an Append)
 *
 * An async scan never waits here: the Append waits for all its children
 * at once, on one descriptor per child, and calls back the child whose
 * descriptor became readable.  A fetcher's descriptor is an epoll
 * instance of its own holding curl's sockets (with the interest curl asked
 * for) and a timerfd armed for the fetcher's next deadline: the gate's
 * next slot, a backoff's end, a token wait, curl's timer, or "now" when
 * an answer is already waiting for the scan.  So waits without a socket
 * still wake the Append, which waits with no timeout of its own.
 *
 * Why one epoll per fetcher rather than one for the backend: the Append
 * adds each child's descriptor to its wait set, and the same descriptor
 * cannot be added twice; and a fetcher's deadlines are its own.  curl's
 * sockets are shared (one multi handle), so each fetcher's epoll watches
 * all of them: whichever child is called back services every transfer
 * and routes the finished ones to their fetchers, whose timerfds then
 * fire at once.
 *
 * The Append's wait set holds no latch, so the timer is never set further
 * than KIS_ASYNC_TICK_MS ahead: a cancel is seen that often at least.
 * docs/async.md describes the executor protocol this relies on.
 * ----------------------------------------------------------------
 */
typedef struct KisAsyncWait
{
	int			epoll_fd;		/* -1 when closed */
	int			timer_fd;
	uint64		socket_gen;		/* transport.socket_gen the epoll was built for */
	uint32		events[KIS_MAX_SOCKETS];	/* registered, per transport socket */
} KisAsyncWait;

/* Close the async wait's descriptors; never throws (the cleanup callback) */
static void
async_wait_release(KisFetcher *f)
{
	KisAsyncWait *w = f->async;

	if (w == NULL)
		return;
	if (w->epoll_fd >= 0)
	{
		close(w->epoll_fd);
		ReleaseExternalFD();
		w->epoll_fd = -1;
	}
	if (w->timer_fd >= 0)
	{
		close(w->timer_fd);
		ReleaseExternalFD();
		w->timer_fd = -1;
	}
	f->async = NULL;
}

/* Account a descriptor about to be opened; ERROR when the budget is spent */
static void
async_acquire_fd(void)
{
	if (!AcquireExternalFD())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("too many open files for an asynchronous KIS scan"),
				 errhint("Raise max_files_per_process, or set the foreign table's async_capable option to false.")));
}

static void
async_epoll_ctl(int epoll_fd, int op, int fd, uint32 events)
{
	struct epoll_event ev;

	ev.events = events;
	ev.data.fd = fd;
	if (epoll_ctl(epoll_fd, op, fd, &ev) < 0)
		ereport(ERROR,
				(errcode_for_socket_access(),
				 errmsg("could not watch a KIS connection for an asynchronous scan: %m")));
}

/* A fresh epoll instance holding the timerfd; curl's sockets come after */
static void
async_epoll_rebuild(KisAsyncWait *w)
{
	if (w->epoll_fd >= 0)
	{
		close(w->epoll_fd);
		ReleaseExternalFD();
		w->epoll_fd = -1;
	}
	async_acquire_fd();
	w->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (w->epoll_fd < 0)
	{
		ReleaseExternalFD();
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("could not create an epoll instance for an asynchronous KIS scan: %m")));
	}
	async_epoll_ctl(w->epoll_fd, EPOLL_CTL_ADD, w->timer_fd, EPOLLIN);
	memset(w->events, 0, sizeof(w->events));
	w->socket_gen = transport.socket_gen;
}

static KisAsyncWait *
async_wait_create(KisFetcher *f)
{
	KisAsyncWait *w = MemoryContextAllocZero(f->cxt, sizeof(KisAsyncWait));

	/* owned by the fetcher's cleanup callback from here on */
	w->epoll_fd = -1;
	w->timer_fd = -1;
	f->async = w;

	async_acquire_fd();
	w->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (w->timer_fd < 0)
	{
		ReleaseExternalFD();
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("could not create a timer for an asynchronous KIS scan: %m")));
	}
	async_epoll_rebuild(w);
	return w;
}

/*
 * Make the epoll instance watch curl's sockets as curl wants them watched
 * now.  Positions in transport.sockets are stable while socket_gen is, so
 * only changed interests are modified; a socket that came or went means a
 * new instance (a closed socket leaves epoll by itself, and its number may
 * already belong to a new one).
 */
static void
async_epoll_sync(KisAsyncWait *w)
{
	if (w->socket_gen != transport.socket_gen)
		async_epoll_rebuild(w);
	for (int i = 0; i < transport.nsockets; i++)
	{
		uint32		events = 0;

		if (transport.sockets[i].what & CURL_POLL_IN)
			events |= EPOLLIN;
		if (transport.sockets[i].what & CURL_POLL_OUT)
			events |= EPOLLOUT;
		if (events == w->events[i])
			continue;
		async_epoll_ctl(w->epoll_fd,
						w->events[i] == 0 ? EPOLL_CTL_ADD :
						events == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD,
						transport.sockets[i].fd, events);
		w->events[i] = events;
	}
}

/*
 * One step that never waits: start what may start, let curl work on what
 * is ready, give up on what waited too long, start what the finished
 * transfers made room for, then hand back the next finished request if
 * there is one.  KIS_POLL_END when every request has finished and been
 * taken; KIS_POLL_WAIT when the scan must wait on kis_fetch_wait_fd.
 */
KisPoll
kis_fetch_poll(KisFetcher *f, KisCompletion **completion)
{
	KisPoll		result;

	*completion = NULL;
	(void) end_away(f);
	raise_fatal(f);
	if (f->npending > 0)
	{
		TimestampTz now = kis_clock_now();
		TimestampTz expiry;

		(void) pump(f, now);
		wait_and_work(now);		/* a timeout of 0: nothing waits */
		expiry = expire_requests(f, kis_clock_now());
		raise_fatal(f);
		f->wake = earliest(pump(f, kis_clock_now()), expiry);
	}
	if (!dlist_is_empty(&f->done))
	{
		*completion = dlist_container(KisCompletion, node, dlist_pop_head_node(&f->done));
		result = KIS_POLL_ROW;
	}
	else
		result = f->npending == 0 ? KIS_POLL_END : KIS_POLL_WAIT;
	f->away_since = kis_clock_now();
	kis_cache_away(true);
	return result;
}

/*
 * Wait until one of several fetchers may move on, after kis_fetch_poll
 * said KIS_POLL_WAIT for each (the partitions of a batched join, each with
 * its own gate).  curl's sockets are shared, so one wait serves them all;
 * it ends at the earliest of their deadlines, and their requests' clocks
 * run meanwhile.  The next kis_fetch_poll of each does the work.
 */
void
kis_fetch_wait_any(KisFetcher **fetchers, int nfetchers)
{
	TimestampTz wake = -1;
	bool		ready = false;

	for (int i = 0; i < nfetchers; i++)
	{
		KisFetcher *f = fetchers[i];

		(void) end_away(f);
		if (!dlist_is_empty(&f->done) || f->fatal != NULL)
			ready = true;
		wake = earliest(wake, f->wake);
	}
	if (!ready)
		wait_and_work(wake);
}

/*
 * The descriptor an async scan waits on after kis_fetch_poll said
 * KIS_POLL_WAIT: it becomes readable when curl has something to do or the
 * fetcher's next deadline comes (see above).  Valid until the next call.
 */
int
kis_fetch_wait_fd(KisFetcher *f)
{
	KisAsyncWait *w = f->async != NULL ? f->async : async_wait_create(f);
	TimestampTz now = kis_clock_now();
	TimestampTz deadline = earliest(f->wake, transport.timer_deadline);
	int64		delay_us;
	struct itimerspec spec;

	(void) end_away(f);			/* the executor waits for us from here */

	/* another scan's step may have finished our requests meanwhile */
	if (!dlist_is_empty(&f->done) || f->fatal != NULL)
		deadline = now;
	delay_us = deadline < 0 ? KIS_ASYNC_TICK_MS * 1000 :
		Min(deadline - now, KIS_ASYNC_TICK_MS * 1000);
	delay_us = Max(delay_us, 1);	/* 0 would disarm the timer */

	async_epoll_sync(w);
	memset(&spec, 0, sizeof(spec));
	spec.it_value.tv_sec = delay_us / USECS_PER_SEC;
	spec.it_value.tv_nsec = (delay_us % USECS_PER_SEC) * 1000;
	/* re-arming also forgets an expiry nobody read */
	if (timerfd_settime(w->timer_fd, 0, &spec, NULL) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not arm the timer of an asynchronous KIS scan: %m")));
	return w->epoll_fd;
}
