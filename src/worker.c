/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The live worker: one background worker per channel (an app key and
 *	  its WebSocket URL) holding KIS's real-time WebSocket.  It sends the
 *	  subscriptions backends ask for, echoes PINGPONG, writes each record
 *	  to its entry and trades to the tick ring, reconnects with back-off
 *	  and subscribes everything again, and stops when nothing is
 *	  subscribed.
 *
 * WebSocket framing is wslay's, which has no event loop of its own: the
 * worker waits in a WaitEventSet on its latch, the socket and postmaster
 * death.  It reads no catalog; backends hand it the approval key through
 * shared memory (live.c).  docs/live.md tells the protocol.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <wslay/wslay.h>

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "live.h"
#include "live_internal.h"

PGDLLEXPORT void kis_live_worker_main(Datum main_arg);

#define CONNECT_TIMEOUT_MS	3000
#define HANDSHAKE_TIMEOUT_MS 5000
#define HANDSHAKE_MAX		8192
#define MAX_MESSAGE			(1024 * 1024)	/* frames beyond 8 kB happen */
#define BACKOFF_MAX_MS		5000

/* One connection */
typedef struct KisSocket
{
	KisLiveChannel *ch;
	int			index;			/* the channel's, in the ring's ticks */
	uint64		generation;		/* the channel's owner, likewise */
	pgsocket	sock;
	wslay_event_context_ptr ctx;
	char	   *early;			/* bytes read with the handshake's answer */
	size_t		early_len;
	size_t		early_off;
	bool		changed;		/* broadcast the channel's cv */
	bool		got_tick;
} KisSocket;

static KisLiveChannel *channel;
static int	channel_index;

/* Say what went wrong, for the view */
static void
note_error(KisLiveChannel *ch, const char *fmt,...) pg_attribute_printf(2, 3);

static void
note_error(KisLiveChannel *ch, const char *fmt,...)
{
	char		text[KIS_LIVE_TEXT_MAX];
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	SpinLockAcquire(&ch->mutex);
	strlcpy(ch->last_error, text, KIS_LIVE_TEXT_MAX);
	ch->last_error_at = GetCurrentTimestamp();
	SpinLockRelease(&ch->mutex);
}

static void
set_socket_state(KisLiveChannel *ch, KisSocketState state)
{
	SpinLockAcquire(&ch->mutex);
	if (!(ch->socket == KIS_SOCKET_IN_USE && state == KIS_SOCKET_BACKOFF))
		ch->socket = state;
	SpinLockRelease(&ch->mutex);
}

/* ---- waiting ---- */

/*
 * Wait for events on sock (or only the latch, sock PGINVALID_SOCKET) until
 * timeout_ms; the latch is reset and interrupts processed.
 */
static int
wait_for(pgsocket sock, int events, long timeout_ms)
{
	int			rc;

	rc = WaitLatchOrSocket(MyLatch,
						   WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH |
						   (sock != PGINVALID_SOCKET ? events : 0),
						   sock, timeout_ms, PG_WAIT_EXTENSION);
	if (rc & WL_LATCH_SET)
		ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
	return rc;
}

/* ---- connecting ---- */

/* A TCP connection to host:port, or PGINVALID_SOCKET (the error noted) */
static pgsocket
connect_to(KisLiveChannel *ch, const char *host, const char *port)
{
	struct addrinfo hints;
	struct addrinfo *res = NULL;
	pgsocket	sock = PGINVALID_SOCKET;
	int			rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0)
	{
		note_error(ch, "could not resolve %s: %s", host, gai_strerror(rc));
		return PGINVALID_SOCKET;
	}
	for (struct addrinfo *ai = res; ai != NULL && sock == PGINVALID_SOCKET; ai = ai->ai_next)
	{
		TimestampTz deadline = GetCurrentTimestamp() + CONNECT_TIMEOUT_MS * 1000L;
		int			one = 1;

		sock = socket(ai->ai_family, SOCK_STREAM, 0);
		if (sock == PGINVALID_SOCKET)
			continue;
		(void) setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (!pg_set_noblock(sock) ||
			(connect(sock, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS))
		{
			note_error(ch, "could not connect to %s:%s: %m", host, port);
			closesocket(sock);
			sock = PGINVALID_SOCKET;
			continue;
		}
		for (;;)
		{
			long		left = (long) ((deadline - GetCurrentTimestamp()) / 1000);
			int			err = 0;
			socklen_t	len = sizeof(err);

			if (left <= 0)
			{
				note_error(ch, "could not connect to %s:%s: timed out", host, port);
				closesocket(sock);
				sock = PGINVALID_SOCKET;
				break;
			}
			if (!(wait_for(sock, WL_SOCKET_WRITEABLE, left) & WL_SOCKET_WRITEABLE))
				continue;
			if (getsockopt(sock, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0)
			{
				errno = err;
				note_error(ch, "could not connect to %s:%s: %m", host, port);
				closesocket(sock);
				sock = PGINVALID_SOCKET;
			}
			break;
		}
	}
	freeaddrinfo(res);
	return sock;
}

/* base64 of SHA-1(key + RFC 6455's GUID): the accept value the server owes */
static void
expected_accept(const char *key, char *out)
{
	unsigned char digest[SHA_DIGEST_LENGTH];
	char	   *text = psprintf("%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);

	SHA1((const unsigned char *) text, strlen(text), digest);
	EVP_EncodeBlock((unsigned char *) out, digest, SHA_DIGEST_LENGTH);
	pfree(text);
}

/* A header's value in an HTTP answer (case-insensitive name), or NULL */
static char *
header_value(const char *head, const char *name)
{
	size_t		nlen = strlen(name);

	for (const char *line = strstr(head, "\r\n"); line != NULL;
		 line = strstr(line + 2, "\r\n"))
	{
		const char *p = line + 2;

		if (pg_strncasecmp(p, name, nlen) == 0 && p[nlen] == ':')
		{
			p += nlen + 1;
			while (*p == ' ' || *p == '\t')
				p++;
			return pnstrdup(p, strcspn(p, "\r\n"));
		}
	}
	return NULL;
}

/* Send all of buf before the deadline */
static bool
send_all(pgsocket sock, const char *buf, size_t len, TimestampTz deadline)
{
	while (len > 0)
	{
		ssize_t		n = send(sock, buf, len, MSG_NOSIGNAL);

		if (n > 0)
		{
			buf += n;
			len -= n;
			continue;
		}
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			return false;
		if (GetCurrentTimestamp() >= deadline)
			return false;
		(void) wait_for(sock, WL_SOCKET_WRITEABLE, 100);
	}
	return true;
}

/*
 * RFC 6455's opening handshake (wslay frames only).  Bytes that came after
 * the answer's head are kept for wslay's first read.
 */
static bool
handshake(KisSocket *ws, const char *host, const char *port, const char *path)
{
	TimestampTz deadline = GetCurrentTimestamp() + HANDSHAKE_TIMEOUT_MS * 1000L;
	uint8		nonce[16];
	char		key[32];
	char		accept[64];
	char	   *request;
	char	   *head = palloc(HANDSHAKE_MAX + 1);
	size_t		have = 0;
	char	   *end = NULL;
	char	   *value;
	bool		ok;

	if (!pg_strong_random(nonce, sizeof(nonce)))
		elog(ERROR, "could not generate a WebSocket key");
	EVP_EncodeBlock((unsigned char *) key, nonce, sizeof(nonce));
	expected_accept(key, accept);
	request = psprintf("GET %s HTTP/1.1\r\nHost: %s:%s\r\nUpgrade: websocket\r\n"
					   "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
					   "Sec-WebSocket-Version: 13\r\n\r\n", path, host, port, key);
	if (!send_all(ws->sock, request, strlen(request), deadline))
	{
		note_error(ws->ch, "could not send the WebSocket handshake: %m");
		return false;
	}
	while (end == NULL)
	{
		ssize_t		n = recv(ws->sock, head + have, HANDSHAKE_MAX - have, 0);

		if (n > 0)
		{
			have += n;
			head[have] = '\0';
			end = strstr(head, "\r\n\r\n");
			if (end == NULL && have >= HANDSHAKE_MAX)
			{
				note_error(ws->ch, "the WebSocket handshake's answer is larger than %d bytes",
						   HANDSHAKE_MAX);
				return false;
			}
			continue;
		}
		if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
		{
			note_error(ws->ch, "the server closed the connection during the WebSocket handshake");
			return false;
		}
		if (GetCurrentTimestamp() >= deadline)
		{
			note_error(ws->ch, "no answer to the WebSocket handshake in %d ms",
					   HANDSHAKE_TIMEOUT_MS);
			return false;
		}
		(void) wait_for(ws->sock, WL_SOCKET_READABLE, 100);
	}
	end[2] = '\0';				/* the head, with its last line's CRLF */
	if (strncmp(head, "HTTP/1.1 101", 12) != 0)
	{
		note_error(ws->ch, "the WebSocket handshake was refused: %.*s",
				   (int) strcspn(head, "\r\n"), head);
		return false;
	}
	value = header_value(head, "Sec-WebSocket-Accept");
	ok = value != NULL && strcmp(value, accept) == 0;
	if (!ok)
	{
		note_error(ws->ch, "the WebSocket handshake's Sec-WebSocket-Accept is wrong");
		return false;
	}
	ws->early_off = 0;
	ws->early_len = have - (end + 4 - head);
	ws->early = ws->early_len > 0 ? end + 4 : NULL;
	return true;
}

/* ---- wslay's callbacks ---- */

static ssize_t
ws_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *user_data)
{
	KisSocket  *ws = user_data;
	ssize_t		n;

	if (ws->early_off < ws->early_len)
	{
		n = Min(len, ws->early_len - ws->early_off);
		memcpy(buf, ws->early + ws->early_off, n);
		ws->early_off += n;
		return n;
	}
	n = recv(ws->sock, buf, len, 0);
	if (n > 0)
		return n;
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
	else
	{
		if (n == 0)
			note_error(ws->ch, "KIS closed the WebSocket");
		else
			note_error(ws->ch, "could not read from the WebSocket: %m");
		wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
	}
	return -1;
}

static ssize_t
ws_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
		void *user_data)
{
	KisSocket  *ws = user_data;
	ssize_t		n = send(ws->sock, data, len, MSG_NOSIGNAL);

	if (n >= 0)
		return n;
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
		wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
	else
	{
		note_error(ws->ch, "could not write to the WebSocket: %m");
		wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
	}
	return -1;
}

static int
ws_genmask(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *user_data)
{
	return pg_strong_random(buf, len) ? 0 : -1;
}

/* Queue one text message */
static void
queue_text(KisSocket *ws, const char *text, size_t len)
{
	struct wslay_event_msg msg;

	msg.opcode = WSLAY_TEXT_FRAME;
	msg.msg = (const uint8_t *) text;
	msg.msg_length = len;
	(void) wslay_event_queue_msg(ws->ctx, &msg);	/* wslay copies it */
}

/* ---- what KIS sends ---- */

/* Write one record into its entry, and trades into the ring */
static void
store_record(KisSocket *ws, KisLiveKind kind, const char *rec, size_t len,
			 TimestampTz now)
{
	KisLiveChannel *ch = ws->ch;
	KisLiveShared *shared = kis_live_shared();
	size_t		keylen = strcspn(rec, "^");
	KisLiveEntry *entry = NULL;

	if (keylen >= KIS_LIVE_TR_KEY_MAX || keylen >= len)
		return;
	SpinLockAcquire(&ch->mutex);
	for (int e = 0; e < KIS_LIVE_MAX_ENTRIES; e++)
	{
		KisLiveEntry *candidate = &ch->entries[e];

		if (candidate->state != KIS_SUB_FREE && candidate->kind == kind &&
			strncmp(candidate->tr_key, rec, keylen) == 0 &&
			candidate->tr_key[keylen] == '\0')
		{
			entry = candidate;
			break;
		}
	}
	SpinLockRelease(&ch->mutex);
	if (entry == NULL)
		return;					/* unsubscribed meanwhile */

	if (len < KIS_LIVE_RECORD_MAX)
	{
		pg_atomic_fetch_add_u32(&entry->change, 1);
		memcpy(entry->record, rec, len);
		entry->len = len;
		entry->received_at = now;
		pg_atomic_fetch_add_u32(&entry->change, 1);
	}
	else
		note_error(ch, "a %s record of %zu bytes was too long to keep",
				   kis_live_tr_id(kind), len);

	if (kis_live_kinds[kind].ringed && len < KIS_LIVE_TICK_MAX)
	{
		uint64		seq = pg_atomic_add_fetch_u64(&shared->next_seq, 1);
		KisLiveTick *tick = &shared->ring[(seq - 1) % shared->ring_size];
		uint64		tick_seq = pg_atomic_read_u64(&ch->tick_seq) + 1;

		pg_atomic_write_u64(&tick->seq, 0);
		pg_write_barrier();
		tick->channel = ws->index;
		tick->generation = ws->generation;
		tick->tick_seq = tick_seq;
		tick->received_at = now;
		memcpy(tick->record, rec, len);
		tick->len = len;
		pg_write_barrier();
		pg_atomic_write_u64(&tick->seq, seq);
		/* published once written: a reader counts as lost only what it misses */
		pg_atomic_write_u64(&ch->tick_seq, tick_seq);
	}
	pg_atomic_fetch_add_u64(&ch->ticks, 1);
	pg_atomic_write_u64(&ch->last_tick, (uint64) now);
	ws->changed = true;
	ws->got_tick = true;
}

/* The stream of a TR_ID, or -1 */
static int
kind_of(const char *tr_id)
{
	for (int k = 0; k < KIS_LIVE_NUM_KINDS; k++)
		if (strcmp(tr_id, kis_live_kinds[k].tr_id) == 0)
			return k;
	return -1;
}

/* flag|TR_ID|NNN|f1^f2^...: NNN records of equally many fields */
static void
data_frame(KisSocket *ws, const char *msg, size_t len)
{
	const char *bar1 = memchr(msg, '|', len);
	const char *bar2;
	const char *bar3;
	const char *payload;
	const char *end = msg + len;
	char		tr_id[16];
	int			kind;
	long		count;
	long		nfields = 1;
	long		per;
	TimestampTz now = GetCurrentTimestamp();

	if (bar1 == NULL || (bar2 = memchr(bar1 + 1, '|', end - bar1 - 1)) == NULL ||
		(bar3 = memchr(bar2 + 1, '|', end - bar2 - 1)) == NULL)
		return;
	if (msg[0] != '0')
		return;					/* encrypted: no stream of ours */
	if (bar2 - bar1 - 1 >= (long) sizeof(tr_id))
		return;
	memcpy(tr_id, bar1 + 1, bar2 - bar1 - 1);
	tr_id[bar2 - bar1 - 1] = '\0';
	kind = kind_of(tr_id);
	if (kind < 0)
		return;
	count = strtol(bar2 + 1, NULL, 10);
	payload = bar3 + 1;
	for (const char *p = payload; p < end; p++)
		if (*p == '^')
			nfields++;
	if (count <= 0 || nfields % count != 0 ||
		(per = nfields / count) < kis_live_kinds[kind].nfields)
	{
		note_error(ws->ch, "a %s frame of %ld records had %ld fields", tr_id, count, nfields);
		return;
	}
	/* records follow each other, per fields each: newer ones may have more */
	for (const char *rec = payload; count-- > 0 && rec < end;)
	{
		const char *p = rec;
		long		n = 0;

		while (p < end && !(*p == '^' && ++n == per))
			p++;
		store_record(ws, (KisLiveKind) kind, rec, p - rec, now);
		rec = p + 1;
	}
}

/* A subscription's ack: move its entry on */
static void
ack(KisSocket *ws, const char *tr_id, const char *tr_key, const char *rt_cd,
	const char *msg_cd, const char *msg1)
{
	KisLiveChannel *ch = ws->ch;
	int			kind;
	bool		in_use = msg_cd && strcmp(msg_cd, KIS_LIVE_IN_USE_CODE) == 0;

	kind = tr_id ? kind_of(tr_id) : -1;
	SpinLockAcquire(&ch->mutex);
	if (in_use)
		ch->socket = KIS_SOCKET_IN_USE;
	for (int e = 0; kind >= 0 && tr_key && e < KIS_LIVE_MAX_ENTRIES; e++)
	{
		KisLiveEntry *entry = &ch->entries[e];

		if (entry->state == KIS_SUB_FREE || entry->kind != kind ||
			strcmp(entry->tr_key, tr_key) != 0)
			continue;
		if (msg_cd && (strcmp(msg_cd, "OPSP0000") == 0 || strcmp(msg_cd, "OPSP0002") == 0))
		{
			if (entry->state == KIS_SUB_SENT)
				entry->state = KIS_SUB_ACTIVE;
			if (ch->socket == KIS_SOCKET_IN_USE)
				ch->socket = KIS_SOCKET_OPEN;
		}
		else if (entry->state == KIS_SUB_DROPPING)
		{
			/* unsubscribed, or KIS would not: either way it is no longer ours */
			entry->state = entry->rewant ? KIS_SUB_WANTED : KIS_SUB_FREE;
			entry->rewant = false;
		}
		else if (rt_cd && strcmp(rt_cd, "0") != 0 && entry->state == KIS_SUB_SENT)
		{
			int			active = 0;

			entry->state = KIS_SUB_REFUSED;
			snprintf(entry->refusal, KIS_LIVE_TEXT_MAX, "%s %s",
					 msg_cd ? msg_cd : "", msg1 ? msg1 : "");

			/*
			 * Not the limit, nor the key held elsewhere: perhaps the approval
			 * key (KIS has no documented code for it); the next read obtains
			 * a new one
			 */
			if (!in_use && !(msg_cd && strcmp(msg_cd, "OPSP0008") == 0))
				explicit_bzero(ch->approval_key, KIS_LIVE_APPROVAL_MAX);
			if (msg_cd && strcmp(msg_cd, "OPSP0008") == 0)
			{
				for (int a = 0; a < KIS_LIVE_MAX_ENTRIES; a++)
					if (ch->entries[a].state == KIS_SUB_ACTIVE)
						active++;
				ch->limit = Max(active, 1);
				ch->limit_at = GetCurrentTimestamp();
			}
		}
		break;
	}
	if (rt_cd && strcmp(rt_cd, "0") != 0 && !(msg_cd && strcmp(msg_cd, "OPSP0002") == 0))
	{
		snprintf(ch->last_error, KIS_LIVE_TEXT_MAX, "%s %s", msg_cd ? msg_cd : "",
				 msg1 ? msg1 : "");
		ch->last_error_at = GetCurrentTimestamp();
	}
	SpinLockRelease(&ch->mutex);
	ws->changed = true;
}

/* A JSON message: PINGPONG (echoed as sent) or an ack */
static void
json_message(KisSocket *ws, const char *msg, size_t len)
{
	json_t	   *root = json_loadb(msg, len, 0, NULL);
	json_t	   *header;
	json_t	   *body;
	const char *tr_id;

	if (root == NULL)
		return;
	header = json_object_get(root, "header");
	body = json_object_get(root, "body");
	tr_id = json_string_value(json_object_get(header, "tr_id"));
	if (tr_id && strcmp(tr_id, "PINGPONG") == 0)
		queue_text(ws, msg, len);	/* KIS wants the same text back */
	else if (body != NULL)
		ack(ws, tr_id, json_string_value(json_object_get(header, "tr_key")),
			json_string_value(json_object_get(body, "rt_cd")),
			json_string_value(json_object_get(body, "msg_cd")),
			json_string_value(json_object_get(body, "msg1")));
	json_decref(root);
}

static void
ws_on_message(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
			  void *user_data)
{
	KisSocket  *ws = user_data;
	const char *msg = (const char *) arg->msg;

	if (arg->opcode != WSLAY_TEXT_FRAME || arg->msg_length == 0)
		return;					/* wslay answers pings and closes itself */
	if ((msg[0] == '0' || msg[0] == '1') && arg->msg_length > 1 && msg[1] == '|')
		data_frame(ws, msg, arg->msg_length);
	else
		json_message(ws, msg, arg->msg_length);
}

/* ---- subscriptions ---- */

static void
queue_subscription(KisSocket *ws, const char *approval_key, KisLiveKind kind,
				   const char *tr_key, bool subscribe)
{
	json_t	   *root = json_pack("{s:{s:s,s:s,s:s,s:s},s:{s:{s:s,s:s}}}",
								 "header", "approval_key", approval_key, "custtype", "P",
								 "tr_type", subscribe ? "1" : "2", "content-type", "utf-8",
								 "body", "input", "tr_id", kis_live_tr_id(kind),
								 "tr_key", tr_key);
	char	   *text = root ? json_dumps(root, JSON_COMPACT) : NULL;

	if (text != NULL)
	{
		queue_text(ws, text, strlen(text));
		explicit_bzero(text, strlen(text));
		free(text);
	}
	json_decref(root);
}

/*
 * What nobody read for kis_fdw.live_idle_s goes, unless pinned: whether
 * KIS has it (connected: unsubscribed) or not (a wish never sent, a
 * refusal, or, with no socket, anything: KIS forgot it with the socket).
 */
static void
expire_idle(KisLiveChannel *ch, TimestampTz now, bool connected)
{
	TimestampTz idle_before = now - (int64) kis_live_idle_s * USECS_PER_SEC;

	SpinLockAcquire(&ch->mutex);
	for (int e = 0; e < KIS_LIVE_MAX_ENTRIES; e++)
	{
		KisLiveEntry *entry = &ch->entries[e];
		bool		idle = !entry->pinned &&
			(TimestampTz) pg_atomic_read_u64(&entry->last_read) < idle_before;

		if (!connected && (entry->state == KIS_SUB_DROP || entry->state == KIS_SUB_DROPPING))
		{
			entry->state = entry->rewant ? KIS_SUB_WANTED : KIS_SUB_FREE;
			entry->rewant = false;
		}
		if (!idle)
			continue;
		if (entry->state == KIS_SUB_WANTED || entry->state == KIS_SUB_REFUSED ||
			(!connected && (entry->state == KIS_SUB_SENT || entry->state == KIS_SUB_ACTIVE)))
			entry->state = KIS_SUB_FREE;
		else if (entry->state == KIS_SUB_ACTIVE || entry->state == KIS_SUB_SENT)
			entry->state = KIS_SUB_DROP;
	}
	SpinLockRelease(&ch->mutex);
}

/* Send what backends asked for: unsubscriptions first (they make room), then subscriptions */
static void
send_subscriptions(KisSocket *ws, TimestampTz now)
{
	KisLiveChannel *ch = ws->ch;
	char		approval_key[KIS_LIVE_APPROVAL_MAX];
	struct
	{
		KisLiveKind kind;
		char		tr_key[KIS_LIVE_TR_KEY_MAX];
		bool		subscribe;
	}			todo[KIS_LIVE_MAX_ENTRIES];
	int			ntodo = 0;

	expire_idle(ch, now, true);
	SpinLockAcquire(&ch->mutex);
	strlcpy(approval_key, ch->approval_key, sizeof(approval_key));
	if (approval_key[0] == '\0')
	{
		bool		only_drops = true;

		/*
		 * Without a key nothing can be sent.  If all that is left is to
		 * unsubscribe, forget it: the worker then stops, and KIS forgets it
		 * with the socket.
		 */
		for (int e = 0; e < KIS_LIVE_MAX_ENTRIES && only_drops; e++)
			only_drops = ch->entries[e].state == KIS_SUB_FREE ||
				ch->entries[e].state == KIS_SUB_DROP;
		for (int e = 0; e < KIS_LIVE_MAX_ENTRIES && only_drops; e++)
			if (ch->entries[e].state == KIS_SUB_DROP)
				ch->entries[e].state = KIS_SUB_FREE;
	}
	for (int pass = 0; pass < 2; pass++)
	{
		for (int e = 0; e < KIS_LIVE_MAX_ENTRIES; e++)
		{
			KisLiveEntry *entry = &ch->entries[e];

			/* else a DROP waits for an approval key: the next read brings one */
			if ((pass == 0 && entry->state == KIS_SUB_DROP && approval_key[0] != '\0') ||
				(pass == 1 && entry->state == KIS_SUB_WANTED && approval_key[0] != '\0'))
			{
				todo[ntodo].kind = entry->kind;
				strlcpy(todo[ntodo].tr_key, entry->tr_key, KIS_LIVE_TR_KEY_MAX);
				todo[ntodo].subscribe = pass == 1;
				entry->state = pass == 1 ? KIS_SUB_SENT : KIS_SUB_DROPPING;
				ntodo++;
			}
		}
	}
	SpinLockRelease(&ch->mutex);
	for (int i = 0; i < ntodo; i++)
		queue_subscription(ws, approval_key, todo[i].kind, todo[i].tr_key, todo[i].subscribe);
	explicit_bzero(approval_key, sizeof(approval_key));
}

/* After a reconnect KIS knows none of ours: everything is asked again */
static void
resubscribe_all(KisLiveChannel *ch)
{
	SpinLockAcquire(&ch->mutex);
	for (int e = 0; e < KIS_LIVE_MAX_ENTRIES; e++)
	{
		KisLiveEntry *entry = &ch->entries[e];

		if (entry->state == KIS_SUB_SENT || entry->state == KIS_SUB_ACTIVE)
			entry->state = KIS_SUB_WANTED;
		else if (entry->state == KIS_SUB_DROP || entry->state == KIS_SUB_DROPPING)
		{
			entry->state = entry->rewant ? KIS_SUB_WANTED : KIS_SUB_FREE;
			entry->rewant = false;
		}
	}
	SpinLockRelease(&ch->mutex);
}

/*
 * Nothing is subscribed nor asked for, or another worker has the channel:
 * this worker stops (true), and says so while holding the mutex.
 */
static bool
stop_if_idle(KisLiveChannel *ch)
{
	bool		idle = true;

	SpinLockAcquire(&ch->mutex);
	if (ch->worker_pid != MyProcPid)
	{
		/* another worker has the channel: this one goes */
		SpinLockRelease(&ch->mutex);
		return true;
	}
	for (int e = 0; e < KIS_LIVE_MAX_ENTRIES && idle; e++)
		if (ch->entries[e].state != KIS_SUB_FREE)
			idle = false;
	if (idle)
	{
		ch->socket = KIS_SOCKET_NONE;
		ch->worker_pid = 0;
		ch->worker_latch = NULL;
	}
	SpinLockRelease(&ch->mutex);
	return idle;
}

/* ---- the connection ---- */

static bool
connection_over(MemoryContext old, MemoryContext cxt, bool result)
{
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
	return result;
}

/*
 * One connection, from connect to loss; returns true if it went well
 * enough (a tick came) that the back-off starts over.
 */
static bool
run_connection(KisLiveChannel *ch)
{
	struct wslay_event_callbacks callbacks = {
		ws_recv, ws_send, ws_genmask, NULL, NULL, NULL, ws_on_message
	};
	KisSocket	ws;
	char		url[KIS_LIVE_URL_MAX];
	char	   *host;
	char	   *port;
	char	   *path;
	WaitEventSet *set = NULL;
	int			sock_pos;
	bool		writing = false;

	MemoryContext cxt = AllocSetContextCreate(TopMemoryContext, "kis_fdw live connection",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	bool		got_tick;

	memset(&ws, 0, sizeof(ws));
	ws.ch = ch;
	ws.index = channel_index;
	SpinLockAcquire(&ch->mutex);
	ws.generation = ch->generation;
	ch->limit = 0;				/* a new socket may take more: learn it again */
	strlcpy(url, ch->ws_url, sizeof(url));
	SpinLockRelease(&ch->mutex);
	if (!kis_live_url_split(url, &host, &port, &path))
	{
		note_error(ch, "ws_url is not a ws:// URL");
		return connection_over(old, cxt, false);
	}
	set_socket_state(ch, KIS_SOCKET_CONNECTING);
	ws.sock = connect_to(ch, host, port);
	if (ws.sock == PGINVALID_SOCKET)
		return connection_over(old, cxt, false);
	if (!handshake(&ws, host, port, path) ||
		wslay_event_context_client_init(&ws.ctx, &callbacks, &ws) != 0)
	{
		closesocket(ws.sock);
		return connection_over(old, cxt, false);
	}
	wslay_event_config_set_max_recv_msg_length(ws.ctx, MAX_MESSAGE);

	SpinLockAcquire(&ch->mutex);
	if (ch->socket != KIS_SOCKET_IN_USE)
		ch->socket = KIS_SOCKET_OPEN;
	ch->connected_at = GetCurrentTimestamp();
	SpinLockRelease(&ch->mutex);
	resubscribe_all(ch);

	set = kis_create_wait_event_set(3);
	AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	sock_pos = AddWaitEventToSet(set, WL_SOCKET_READABLE, ws.sock, NULL, NULL);

	for (;;)
	{
		WaitEvent	events[3];
		int			n;
		bool		readable = ws.early_off < ws.early_len;

		if (stop_if_idle(ch))
		{
			/* the channel is no longer ours: a backend may start another worker */
			(void) wslay_event_queue_close(ws.ctx, WSLAY_CODE_NORMAL_CLOSURE, NULL, 0);
			(void) wslay_event_send(ws.ctx);
			proc_exit(0);
		}
		send_subscriptions(&ws, GetCurrentTimestamp());
		if (wslay_event_want_write(ws.ctx) && wslay_event_send(ws.ctx) != 0)
			break;
		if (writing != (wslay_event_want_write(ws.ctx) != 0))
		{
			writing = !writing;
			ModifyWaitEvent(set, sock_pos,
							WL_SOCKET_READABLE | (writing ? WL_SOCKET_WRITEABLE : 0), NULL);
		}

		n = readable ? 0 : WaitEventSetWait(set, 1000, events, lengthof(events),
											 PG_WAIT_EXTENSION);
		for (int i = 0; i < n; i++)
		{
			if (events[i].events & WL_LATCH_SET)
				ResetLatch(MyLatch);
			if (events[i].events & WL_SOCKET_READABLE)
				readable = true;
		}
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		if (readable && wslay_event_recv(ws.ctx) != 0)
			break;
		if (ws.changed)
		{
			ConditionVariableBroadcast(&ch->cv);
			ws.changed = false;
		}
		if (wslay_event_get_close_received(ws.ctx) || !wslay_event_want_read(ws.ctx))
		{
			note_error(ch, "KIS closed the WebSocket");
			break;
		}
	}
	ConditionVariableBroadcast(&ch->cv);
	FreeWaitEventSet(set);
	wslay_event_context_free(ws.ctx);
	closesocket(ws.sock);
	got_tick = ws.got_tick;
	return connection_over(old, cxt, got_tick);
}

/* On exit, a worker that still owns the channel says it is gone */
static void
worker_exit(int code, Datum arg)
{
	KisLiveChannel *ch = channel;

	if (ch == NULL)
		return;
	SpinLockAcquire(&ch->mutex);
	if (ch->worker_pid == MyProcPid)
	{
		ch->worker_latch = NULL;
		ch->worker_pid = 0;		/* the restarted worker sets its own */
		/* exit 1 brings it back (bgw_restart_time); 0 means stopped */
		if (ch->socket != KIS_SOCKET_NONE)
			ch->socket = KIS_SOCKET_BACKOFF;
	}
	SpinLockRelease(&ch->mutex);
	ConditionVariableBroadcast(&ch->cv);
}

void
kis_live_worker_main(Datum main_arg)
{
	uint64		generation;
	int			backoff_ms = 0;
	bool		first = true;

	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();

	channel_index = DatumGetInt32(main_arg);
	memcpy(&generation, MyBgworkerEntry->bgw_extra, sizeof(generation));
	channel = kis_live_channel_at(channel_index);
	if (channel == NULL)
		proc_exit(0);
	SpinLockAcquire(&channel->mutex);
	if (!channel->in_use || channel->generation != generation)
	{
		SpinLockRelease(&channel->mutex);
		proc_exit(0);			/* the channel went to another key */
	}
	channel->worker_pid = MyProcPid;
	channel->worker_latch = MyLatch;
	/* a record the last worker died writing is no record */
	for (int e = 0; e < KIS_LIVE_MAX_ENTRIES; e++)
	{
		KisLiveEntry *entry = &channel->entries[e];

		if (pg_atomic_read_u32(&entry->change) & 1)
		{
			entry->received_at = 0;
			entry->len = 0;
			pg_atomic_fetch_add_u32(&entry->change, 1);
		}
	}
	if (channel->socket == KIS_SOCKET_NONE || channel->socket == KIS_SOCKET_STARTING)
		channel->socket = KIS_SOCKET_CONNECTING;
	SpinLockRelease(&channel->mutex);
	before_shmem_exit(worker_exit, (Datum) 0);

	for (;;)
	{
		if (stop_if_idle(channel))
			proc_exit(0);
		if (!first)
		{
			SpinLockAcquire(&channel->mutex);
			channel->reconnects++;
			SpinLockRelease(&channel->mutex);
		}
		first = false;
		if (run_connection(channel))
			backoff_ms = 0;
		expire_idle(channel, GetCurrentTimestamp(), false);
		if (stop_if_idle(channel))
			proc_exit(0);
		set_socket_state(channel, KIS_SOCKET_BACKOFF);
		ConditionVariableBroadcast(&channel->cv);
		/* at once after a good connection, then 1 s, 2 s, 4 s, 5 s */
		if (backoff_ms > 0)
		{
			TimestampTz until = GetCurrentTimestamp() + backoff_ms * 1000L;
			long		left;

			while ((left = (long) ((until - GetCurrentTimestamp()) / 1000)) > 0)
			{
				(void) wait_for(PGINVALID_SOCKET, 0, Min(left, 1000));
				expire_idle(channel, GetCurrentTimestamp(), false);
				if (stop_if_idle(channel))
					proc_exit(0);
			}
		}
		backoff_ms = backoff_ms == 0 ? 1000 : Min(backoff_ms * 2, BACKOFF_MAX_MS);
	}
}
