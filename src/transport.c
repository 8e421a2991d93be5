/*-------------------------------------------------------------------------
 *
 * transport.c
 *	  The backend's HTTP transport: one libcurl multi handle, its pool of
 *	  easy handles and connections, the sockets and timer curl asks us to
 *	  watch, a WaitEventSet of those plus our latch, libcurl's wiping
 *	  allocator, TLS settings and the callbacks that collect an answer.
 *
 * The transport lives for the backend, so that keep-alive connections (and
 * their TLS sessions) survive from one query to the next; its users (the
 * fetch engine's fetchers) attach and detach.  After a user ended
 * abnormally the pool's state is unknown: it is torn down as soon as no
 * other user is attached.
 *
 * Waiting never blocks inside libcurl: we wait on curl's sockets, our latch
 * and the next timer in one WaitEventSetWait, then tell curl what happened
 * (curl_multi_socket_action) and run CHECK_FOR_INTERRUPTS, so a cancel is
 * seen within milliseconds.  Nothing here throws from inside a libcurl
 * callback: callbacks only record, and the caller acts after curl returns.
 * curl's own timeouts are off: the fetch engine applies its own
 * (docs/async.md, "The engine's clock").
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/ssl.h>

#include "miscadmin.h"
#include "pgstat.h"
#include "storage/fd.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/wait_event.h"

#include "compat.h"
#include "transport.h"
#include "util.h"

#define KIS_MAX_IDLE_WAIT_MS	1000	/* re-check even if nobody wakes us */
#define KIS_USER_AGENT			"kis_fdw/1.0"

typedef struct KisSocket
{
	curl_socket_t fd;
	int			what;			/* CURL_POLL_IN / OUT / INOUT */
	int			pos;			/* its event's position in the wait set, or -1 */
	bool		dirty;			/* "what" changed since the set was built */
	bool		parked;			/* curl stopped watching it (what 0), but it
								 * is still open and in the wait set */
} KisSocket;

/*
 * The sockets open_socket_cb opened: curl closes them through
 * close_socket_cb, so only they may be parked.  Its own (the threaded
 * resolver's socketpair) it closes itself: their numbers may come back as a
 * new socket's before we wait.
 */
#define KIS_MAX_OWN_SOCKETS		(2 * KIS_MAX_SOCKETS)
static curl_socket_t own_sockets[KIS_MAX_OWN_SOCKETS];
static int	n_own_sockets = 0;

static bool
own_socket(curl_socket_t fd)
{
	for (int i = 0; i < n_own_sockets; i++)
		if (own_sockets[i] == fd)
			return true;
	return false;
}

/* The backend's transport; see the file header */
static struct
{
	CURLM	   *multi;
	KisSocket	sockets[KIS_MAX_SOCKETS];
	int			nsockets;
	bool		sockets_changed;	/* a socket came or went: rebuild the set */
	uint64		socket_gen;		/* bumped with sockets_changed (async waits) */
	bool		events_dirty;	/* only interests changed: ModifyWaitEvent */
	CURL	   *easy_pool[KIS_MAX_SOCKETS]; /* reset handles, reused */
	int			neasy;
	bool		socket_overflow;
	TimestampTz timer_deadline; /* -1: no timer */
	WaitEventSet *wes;
	int			users;			/* attached fetchers */
	long		connections;	/* the sum of their max_connections */
	bool		drop_pool;		/* tear down when the last user goes */
	bool		resolve_blocked;	/* signals blocked for a resolver thread */
	sigset_t	resolve_saved;	/* the mask to restore then */
} transport = {.timer_deadline = -1};

/* ----------------------------------------------------------------
 * libcurl's allocator: the C library's, except that whatever libcurl
 * frees is wiped first.  Its request buffer holds our header lines (the
 * app key, the secret, the bearer token) and the tokenP body, and its
 * receive buffer a token answer; libcurl frees them without wiping.
 *
 * Those two buffers are allocated anew for every transfer (the request
 * buffer at its minimum, 16 kB: CURLOPT_UPLOAD_BUFFERSIZE): freeing them
 * and faulting in fresh pages cost more than wiping them.  So large blocks
 * libcurl frees are wiped and kept (up to KEPT_BLOCKS), and handed back to
 * its next allocation of about their size instead of going back to the C
 * library.
 * Never throws and calls no PostgreSQL code: the resolver thread uses it.
 * ----------------------------------------------------------------
 */
#define KEPT_BLOCKS		16
#define KEPT_MIN_SIZE	4096
#define KEPT_MAX_SIZE	(128 * 1024)

static struct
{
	void	   *blocks[KEPT_BLOCKS];
	size_t		sizes[KEPT_BLOCKS];
	int			n;
	pthread_mutex_t lock;
} kept = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void
wipe_and_free(void *ptr, size_t size)
{
	explicit_bzero(ptr, size);
	free(ptr);
}

static void *
keeping_malloc(size_t size)
{
	void	   *ptr = NULL;

	if (size >= KEPT_MIN_SIZE && size <= KEPT_MAX_SIZE)
	{
		pthread_mutex_lock(&kept.lock);
		for (int i = kept.n - 1; i >= 0; i--)
		{
			/* a block of about the size asked for: no waste kept */
			if (kept.sizes[i] >= size && kept.sizes[i] <= 2 * size)
			{
				ptr = kept.blocks[i];
				kept.n--;
				kept.blocks[i] = kept.blocks[kept.n];
				kept.sizes[i] = kept.sizes[kept.n];
				break;
			}
		}
		pthread_mutex_unlock(&kept.lock);
	}
	return ptr != NULL ? ptr : malloc(size);
}

static void
wiping_free(void *ptr)
{
	size_t		size;

	if (ptr == NULL)
		return;
	size = kis_malloc_usable_size(ptr);
	if (size >= KEPT_MIN_SIZE && size <= KEPT_MAX_SIZE)
	{
		pthread_mutex_lock(&kept.lock);
		if (kept.n < KEPT_BLOCKS)
		{
			explicit_bzero(ptr, size);
			kept.blocks[kept.n] = ptr;
			kept.sizes[kept.n++] = size;
			ptr = NULL;
		}
		pthread_mutex_unlock(&kept.lock);
	}
	if (ptr != NULL)
		wipe_and_free(ptr, size);
}

/* Free the kept blocks (wiped when kept): the transport is torn down */
static void
free_kept_blocks(void)
{
	pthread_mutex_lock(&kept.lock);
	while (kept.n > 0)
		free(kept.blocks[--kept.n]);
	pthread_mutex_unlock(&kept.lock);
}

/* Grow by copying, so that the old block is wiped too */
static void *
wiping_realloc(void *ptr, size_t size)
{
	size_t		old;
	void	   *grown;

	if (ptr == NULL)
		return keeping_malloc(size);
	old = kis_malloc_usable_size(ptr);
	if (size <= old)
		return ptr;
	grown = keeping_malloc(size);
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
kis_transport_global_init(void)
{
	if (curl_global_init_mem(CURL_GLOBAL_DEFAULT, keeping_malloc, wiping_free,
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
		if (i >= transport.nsockets)
			return 0;
		if (transport.sockets[i].pos >= 0 && own_socket(fd))
		{
			/*
			 * A connection back in curl's pool: parked, most often taken by
			 * the next request before we wait again, which then costs no
			 * new wait set (close_socket_cb says when it really goes).
			 */
			transport.sockets[i].what = 0;
			transport.sockets[i].parked = true;
			transport.sockets[i].dirty = true;
			transport.events_dirty = true;
			return 0;
		}
		transport.sockets[i] = transport.sockets[--transport.nsockets];
	}
	else if (i < transport.nsockets)
	{
		/* curl changes interest at every request: modify, don't rebuild */
		transport.sockets[i].what = what;
		transport.sockets[i].parked = false;
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
		transport.sockets[i].parked = false;
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
	else if (n_own_sockets < KIS_MAX_OWN_SOCKETS)
		own_sockets[n_own_sockets++] = fd;
	return fd;
}

static int
close_socket_cb(void *clientp, curl_socket_t fd)
{
	int			rc;

	/*
	 * A closed socket leaves every epoll set by itself, and its number may
	 * come back as another socket's: forget it, build the sets anew.
	 */
	for (int i = 0; i < transport.nsockets; i++)
	{
		if (transport.sockets[i].fd == fd)
		{
			transport.sockets[i] = transport.sockets[--transport.nsockets];
			transport.sockets_changed = true;
			transport.socket_gen++;
			break;
		}
	}
	for (int i = 0; i < n_own_sockets; i++)
	{
		if (own_sockets[i] == fd)
		{
			own_sockets[i] = own_sockets[--n_own_sockets];
			break;
		}
	}
	rc = close(fd);

	ReleaseExternalFD();
	return rc;
}

/* Collect the body, refusing more than KIS_MAX_RESPONSE_BYTES */
static size_t
write_cb(char *data, size_t size, size_t nmemb, void *userp)
{
	KisTransfer *x = (KisTransfer *) userp;
	size_t		n = size * nmemb;

	if (x->body_len + n > KIS_MAX_RESPONSE_BYTES)
	{
		x->body_too_large = true;
		return 0;				/* makes curl fail with CURLE_WRITE_ERROR */
	}
	if (x->body_len + n + 1 > x->body_cap)
	{
		size_t		cap = Max(x->body_cap * 2, x->body_len + n + 1);
		char	   *grown;

		cap = Max(cap, 8192);
		grown = MemoryContextAllocExtended(x->cxt, cap, MCXT_ALLOC_NO_OOM);
		if (grown == NULL)
			return 0;
		if (x->body != NULL)
		{
			memcpy(grown, x->body, x->body_len);
			if (x->secret)
				explicit_bzero(x->body, x->body_len);	/* holds a token */
			pfree(x->body);
		}
		x->body = grown;
		x->body_cap = cap;
	}
	memcpy(x->body + x->body_len, data, n);
	x->body_len += n;
	x->body[x->body_len] = '\0';
	return n;
}

/* Keep the reply header the transfer asked for; the others are not needed */
static size_t
header_cb(char *data, size_t size, size_t nmemb, void *userp)
{
	KisTransfer *x = (KisTransfer *) userp;
	size_t		n = size * nmemb;
	size_t		name_len = x->keep_header ? strlen(x->keep_header) : 0;

	if (name_len > 0 && n > name_len + 1 &&
		pg_strncasecmp(data, x->keep_header, name_len) == 0 && data[name_len] == ':')
	{
		size_t		i = name_len + 1;
		size_t		len = 0;

		while (i < n && (data[i] == ' ' || data[i] == '\t'))
			i++;
		while (i + len < n && len < sizeof(x->kept) - 1 &&
			   data[i + len] != '\r' && data[i + len] != '\n' && data[i + len] != ' ')
			len++;
		memcpy(x->kept, data + i, len);
		x->kept[len] = '\0';
	}
	return n;
}

/* ----------------------------------------------------------------
 * The multi handle and its users
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
		kis_multi_setopt(multi, CURLMOPT_MAXCONNECTS, 1 + transport.connections);
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
	free_kept_blocks();
	transport.nsockets = 0;
	transport.timer_deadline = -1;
	transport.sockets_changed = true;
	transport.socket_gen++;
	transport.events_dirty = false;
	transport.socket_overflow = false;
	transport.drop_pool = false;
}

/*
 * A fetcher that may use up to max_connections at once starts using the
 * transport; never throws.  kis_transport_size_pool then makes room.
 */
void
kis_transport_attach(int max_connections)
{
	transport.users++;
	transport.connections += max_connections;
}

/*
 * Room in the pool for every attached user's connections (async siblings).
 * The multi handle itself is made by the first transfer: a scan answered
 * from the cache needs none.
 */
void
kis_transport_size_pool(void)
{
	if (transport.multi != NULL)
		kis_multi_setopt(transport.multi, CURLMOPT_MAXCONNECTS, 1 + transport.connections);
}

/*
 * A user is done (its transfers released).  After an abnormal end the pool
 * goes with the last user.  Never throws: cleanup callbacks call it.
 */
void
kis_transport_detach(int max_connections, bool orderly)
{
	transport.users--;
	transport.connections -= max_connections;
	if (!orderly)
		transport.drop_pool = true;
	if (transport.drop_pool && transport.users == 0)
		transport_teardown();
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
	/* parked sockets are not watched: out of the set, and of the array */
	for (int i = transport.nsockets - 1; i >= 0; i--)
	{
		if (transport.sockets[i].parked)
		{
			transport.sockets[i] = transport.sockets[--transport.nsockets];
			transport.socket_gen++;
		}
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

/*
 * Bring the wait set up to date: rebuilt if sockets came or went or one is
 * still parked (watching it for nothing is not possible: a closing peer
 * would wake us at once, again and again), else modified
 */
static void
transport_update_wait_set(void)
{
	bool		parked = false;

	for (int i = 0; i < transport.nsockets && transport.events_dirty; i++)
		parked |= transport.sockets[i].parked;
	if (transport.sockets_changed || transport.wes == NULL || parked)
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
 * Signals and curl's threaded resolver: a host name is resolved by
 * getaddrinfo on a short-lived thread, while this backend keeps waiting on
 * its latch (cancellable, bounded by connect_timeout_ms).  The thread calls
 * no PostgreSQL code; so that no PostgreSQL signal handler ever runs on it
 * either, it must start with every asynchronous signal blocked (a thread
 * inherits its creator's mask).  curl calls resolver_start_cb on this
 * thread right before it starts a resolve: that blocks them, and
 * transport_action restores our mask as soon as curl returns.  Signals
 * arriving meanwhile are delivered then.  Every other call of curl (an
 * answer read, a request sent) runs with our mask untouched, at no system
 * call.  See docs/design.md, "Name resolution".  Never throws.
 */
static int
resolver_start_cb(void *resolver_state, void *reserved, void *userdata)
{
	sigset_t	blocked;

	if (transport.resolve_blocked)
		return 0;
	sigfillset(&blocked);
	sigdelset(&blocked, SIGSEGV);
	sigdelset(&blocked, SIGBUS);
	sigdelset(&blocked, SIGFPE);
	sigdelset(&blocked, SIGILL);
	pthread_sigmask(SIG_SETMASK, &blocked, &transport.resolve_saved);
	transport.resolve_blocked = true;
	return 0;
}

/* After any curl call that may have started a resolve */
static void
restore_after_resolve(void)
{
	if (transport.resolve_blocked)
	{
		transport.resolve_blocked = false;
		pthread_sigmask(SIG_SETMASK, &transport.resolve_saved, NULL);
	}
}

/* Tell curl about one socket event or its timer */
static void
transport_action(curl_socket_t fd, int mask)
{
	int			running;

	curl_multi_socket_action(transport.multi, fd, mask, &running);
	restore_after_resolve();
}

/*
 * Wait for a socket, the latch or "wake" (-1: none; a second at most), let
 * curl work, then see interrupts.  kis_transport_next_done hands back what
 * finished.
 */
void
kis_transport_wait(TimestampTz wake)
{
	WaitEvent	events[16];
	TimestampTz now = kis_clock_now();
	TimestampTz deadline = kis_earliest(wake, transport.timer_deadline);
	long		timeout = KIS_MAX_IDLE_WAIT_MS;
	int			n;

	if (deadline >= 0)
		timeout = Min(timeout, (long) Max(0, (deadline - now + 999) / 1000));

	if (transport.socket_overflow)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many KIS connections open in this session (more than %d)",
						KIS_MAX_SOCKETS)));

	/*
	 * curl's timer already ran out (it starts the transfers just added so):
	 * let it work first, and come back without waiting.  A connection it
	 * parked then is most often taken again, and the wait set stays.
	 */
	if (transport.timer_deadline >= 0 && now >= transport.timer_deadline)
	{
		transport.timer_deadline = -1;
		transport_action(CURL_SOCKET_TIMEOUT, 0);
		CHECK_FOR_INTERRUPTS();
		return;
	}
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
}

/*
 * The next transfer curl finished, with its result and HTTP status; false
 * when there is none.  The caller releases it (kis_transfer_release).
 */
bool
kis_transport_next_done(KisTransfer **x, CURLcode *rc, long *status)
{
	CURLMsg    *msg;
	int			left;

	while (transport.multi != NULL &&
		   (msg = curl_multi_info_read(transport.multi, &left)) != NULL)
	{
		char	   *priv = NULL;

		if (msg->msg != CURLMSG_DONE)
			continue;
		*rc = msg->data.result;
		*status = 0;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
		*x = (KisTransfer *) priv;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, status);
		return true;
	}
	return false;
}

/* When curl's timer next fires (-1: never) */
TimestampTz
kis_transport_timer(void)
{
	return transport.timer_deadline;
}

/* Bumped whenever a socket came or went (positions below are stable until) */
uint64
kis_transport_socket_gen(void)
{
	return transport.socket_gen;
}

int
kis_transport_nsockets(void)
{
	return transport.nsockets;
}

/* Socket i, and whether curl wants to read or write it */
void
kis_transport_socket(int i, int *fd, bool *readable, bool *writable)
{
	*fd = transport.sockets[i].fd;
	*readable = (transport.sockets[i].what & CURL_POLL_IN) != 0;
	*writable = (transport.sockets[i].what & CURL_POLL_OUT) != 0;
}

/* ----------------------------------------------------------------
 * TLS record buffers
 *
 * libcurl asks OpenSSL to free a connection's record buffers (about 17 kB
 * each way) whenever they are empty: on a kept-alive connection, that is
 * a malloc, a free and fresh pages for every request and answer.  We keep
 * them for the connection's life instead (a backend holds at most
 * KIS_MAX_SOCKETS connections), and have OpenSSL wipe each record's
 * plaintext once handed over, so that a kept buffer holds no token answer.
 * Where OpenSSL cannot wipe (before 3.0), libcurl's default stays.  Only
 * when libcurl's TLS is the OpenSSL we were built with: another library's
 * context is not ours to touch.  See docs/tokens-and-rate.md, "Secrets in
 * memory".
 * ----------------------------------------------------------------
 */
static CURLcode
ssl_ctx_cb(CURL *easy, void *ssl_ctx, void *userp)
{
	SSL_CTX_clear_mode((SSL_CTX *) ssl_ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_options((SSL_CTX *) ssl_ctx, SSL_OP_CLEANSE_PLAINTEXT);
	return CURLE_OK;
}

static bool
curl_tls_is_ours(void)
{
	static int	ours = -1;

	if (ours < 0)
	{
		const curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
		char		prefix[32];

		snprintf(prefix, sizeof(prefix), "OpenSSL/%d.",
				 (int) (OPENSSL_VERSION_NUMBER >> 28));
		ours = KIS_SSL_CAN_CLEANSE && v != NULL && v->ssl_version != NULL &&
			strncmp(v->ssl_version, prefix, strlen(prefix)) == 0;
	}
	return ours;
}

/* ----------------------------------------------------------------
 * Transfers
 * ----------------------------------------------------------------
 */

/*
 * Take a handle for x and set it up for url; then headers and a body may
 * be added, and kis_transfer_submit puts it on the wire.  The caller owns
 * x from here (kis_transfer_release frees what exists if something throws).
 */
void
kis_transfer_begin(KisTransfer *x, const char *url, const char *ca_file)
{
	CURL	   *easy;
	bool		plain_http = strncmp(url, "http://", 7) == 0;

	x->body_len = 0;
	x->body_too_large = false;
	if (x->errbuf == NULL)
		x->errbuf = MemoryContextAlloc(x->cxt, CURL_ERROR_SIZE);
	x->errbuf[0] = '\0';
	x->kept[0] = '\0';

	x->easy = easy = transport.neasy > 0 ?
		transport.easy_pool[--transport.neasy] : curl_easy_init();
	if (easy == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a libcurl handle")));

	kis_easy_setopt(easy, CURLOPT_URL, url);
	kis_easy_setopt(easy, CURLOPT_PRIVATE, x);
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
	if (curl_tls_is_ours())
		kis_easy_setopt(easy, CURLOPT_SSL_CTX_FUNCTION, ssl_ctx_cb);
	if (ca_file)
		kis_easy_setopt(easy, CURLOPT_CAINFO, ca_file);
	/* no wall-clock limits in curl: the fetch engine applies its own */
	kis_easy_setopt(easy, CURLOPT_TIMEOUT_MS, 0L);
	kis_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long) INT_MAX);
	kis_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
	kis_easy_setopt(easy, CURLOPT_UPLOAD_BUFFERSIZE, 16384L);	/* its minimum */
	kis_easy_setopt(easy, CURLOPT_USERAGENT, KIS_USER_AGENT);
	kis_easy_setopt(easy, CURLOPT_ERRORBUFFER, x->errbuf);
	kis_easy_setopt(easy, CURLOPT_WRITEFUNCTION, write_cb);
	kis_easy_setopt(easy, CURLOPT_WRITEDATA, x);
	kis_easy_setopt(easy, CURLOPT_HEADERFUNCTION, header_cb);
	kis_easy_setopt(easy, CURLOPT_HEADERDATA, x);
	kis_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, open_socket_cb);
	kis_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, close_socket_cb);
	kis_easy_setopt(easy, CURLOPT_RESOLVER_START_FUNCTION, resolver_start_cb);
}

/* Keep what curl_slist_append returned; the list stays the transfer's */
static void
keep_headers(KisTransfer *x, struct curl_slist *list)
{
	if (list == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory while building a KIS request")));
	x->headers = list;
}

/* Append a header line */
void
kis_transfer_add_header(KisTransfer *x, const char *line)
{
	keep_headers(x, curl_slist_append(x->headers, line));
}

/*
 * Append "name: value"; our copy is wiped, as the value may be a secret
 * (libcurl keeps its own copy until the transfer is released).  The line
 * is built in a buffer sized at once and wiped before anything may
 * throw: psprintf would free a first, too short attempt (a 180-character
 * secret, a token) unwiped.
 */
void
kis_transfer_add_header_value(KisTransfer *x, const char *name, const char *value)
{
	size_t		name_len = strlen(name);
	size_t		value_len = strlen(value);
	char	   *line;
	struct curl_slist *list;

	/* a CR or LF would end the header and start another request: refuse */
	for (const unsigned char *p = (const unsigned char *) value; *p; p++)
	{
		if (*p < 0x20 || *p > 0x7e)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("kis_fdw refused to send request header \"%.*s\"",
							(int) strcspn(name, ":"), name),
					 errdetail("Its value holds a control character or a non-ASCII byte; it is not shown.")));
	}
	line = palloc(name_len + value_len + 1);

	memcpy(line, name, name_len);
	memcpy(line + name_len, value, value_len + 1);
	list = curl_slist_append(x->headers, line);
	explicit_bzero(line, name_len + value_len);
	pfree(line);
	keep_headers(x, list);
}

/* Send body (a string that stays put until the transfer ends) as a POST */
void
kis_transfer_post(KisTransfer *x, const char *body)
{
	kis_easy_setopt(x->easy, CURLOPT_POSTFIELDS, body);
	kis_easy_setopt(x->easy, CURLOPT_POSTFIELDSIZE, (long) strlen(body));
}

/* Hand the transfer to the multi handle: it goes on the wire */
void
kis_transfer_submit(KisTransfer *x)
{
	CURLMcode	mrc;

	kis_easy_setopt(x->easy, CURLOPT_HTTPHEADER, x->headers);
	mrc = curl_multi_add_handle(transport_multi(), x->easy);
	restore_after_resolve();	/* should a curl version resolve here */
	if (mrc != CURLM_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not start a KIS request: %s", curl_multi_strerror(mrc))));
}

/* Whether the transfer is still connecting (curl has not begun to send) */
bool
kis_transfer_connecting(KisTransfer *x)
{
	curl_off_t	sending_at = 0;

	curl_easy_getinfo(x->easy, CURLINFO_PRETRANSFER_TIME_T, &sending_at);
	return sending_at == 0;
}

/* Free what curl holds for a transfer; never throws */
void
kis_transfer_release(KisTransfer *x)
{
	if (x->easy != NULL)
	{
		if (transport.multi != NULL)
		{
			curl_multi_remove_handle(transport.multi, x->easy);
			restore_after_resolve();
		}

		/*
		 * Keep it for the next transfer (a new handle costs a few µs); but
		 * not a secret one's: libcurl 8 keeps the sent bytes (the secret) in
		 * buffers a reset does not free, which a cleanup frees through the
		 * wiping allocator.
		 */
		if (transport.neasy < KIS_MAX_SOCKETS && !x->secret)
		{
			curl_easy_reset(x->easy);
			transport.easy_pool[transport.neasy++] = x->easy;
		}
		else
			curl_easy_cleanup(x->easy);
		x->easy = NULL;
	}
	if (x->headers != NULL)
	{
		/* they hold the app key, the secret and the token: wipe our copies */
		for (struct curl_slist *l = x->headers; l != NULL; l = l->next)
			explicit_bzero(l->data, strlen(l->data));
		curl_slist_free_all(x->headers);
		x->headers = NULL;
	}
}

/* A secret answer (a token) is wiped before its memory is given back */
void
kis_transfer_wipe_body(KisTransfer *x)
{
	if (x->body != NULL && x->secret)
		explicit_bzero(x->body, x->body_len);
}

/* The body buffer is only needed until the answer is read */
void
kis_transfer_forget_body(KisTransfer *x)
{
	kis_transfer_wipe_body(x);
	if (x->body != NULL)
		pfree(x->body);
	x->body = NULL;
	x->body_len = x->body_cap = 0;
}

/* What went wrong, in curl's words */
const char *
kis_transfer_error(KisTransfer *x, CURLcode rc)
{
	return x->errbuf && x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc);
}

/* Say why a released transfer failed, for kis_transfer_error */
void
kis_transfer_set_error(KisTransfer *x, const char *fmt,...)
{
	va_list		args;

	Assert(x->errbuf != NULL);
	va_start(args, fmt);
	vsnprintf(x->errbuf, CURL_ERROR_SIZE, fmt, args);
	va_end(args);
}

/* The transfer will not be sent again: free what it kept (its error text) */
void
kis_transfer_done(KisTransfer *x)
{
	if (x->errbuf != NULL)
		pfree(x->errbuf);
	x->errbuf = NULL;
}

/* Whether the server's certificate was not trusted (no retry will help) */
bool
kis_transfer_untrusted(CURLcode rc)
{
	return rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CACERT_BADFILE ||
		rc == CURLE_SSL_CERTPROBLEM || rc == CURLE_SSL_ISSUER_ERROR ||
		rc == CURLE_SSL_PINNEDPUBKEYNOTMATCH;
}
