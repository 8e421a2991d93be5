/*-------------------------------------------------------------------------
 *
 * live_internal.h
 *	  The shared-memory layout of the live tables: one channel per app key
 *	  and WebSocket URL, its subscriptions with their latest record, and the
 *	  tick ring.  PRIVATE to live.c (the backends' side) and worker.c (the
 *	  background worker that holds the socket); everyone else sees live.h.
 *	  docs/live.md tells the protocol between the two.
 *
 * src/live_internal.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef KIS_LIVE_INTERNAL_H
#define KIS_LIVE_INTERNAL_H

#include "datatype/timestamp.h"
#include "port/atomics.h"
#include "storage/condition_variable.h"
#include "storage/latch.h"
#include "storage/spin.h"

#include "live.h"
#include "util.h"

#define KIS_LIVE_MAX_ENTRIES	64	/* subscriptions a channel can track;
									 * KIS allows about 41 (docs/live.md) */
#define KIS_LIVE_TR_KEY_MAX		24
#define KIS_LIVE_RECORD_MAX		1024	/* one record's fields joined by ^ */
#define KIS_LIVE_TICK_MAX		KIS_LIVE_RING_RECORD_MAX
#define KIS_LIVE_APPROVAL_MAX	128
#define KIS_LIVE_URL_MAX		256
#define KIS_LIVE_TEXT_MAX		128 /* KIS's words for a refusal */
#define KIS_LIVE_IN_USE_CODE	"OPSP8996"	/* ALREADY IN USE appkey */
#define KIS_LIVE_LIMIT_FORGET_S	600 /* a learned limit is tried again after */
#define KIS_LIVE_APPROVAL_RENEW_S	(12 * 3600) /* reported valid 24 h */

/* Where a subscription stands; changed under the channel's mutex */
typedef enum KisSubState
{
	KIS_SUB_FREE,				/* an unused entry */
	KIS_SUB_WANTED,				/* a backend asked; the worker sends it */
	KIS_SUB_SENT,				/* subscribe sent, no ack yet */
	KIS_SUB_ACTIVE,				/* KIS acknowledged it */
	KIS_SUB_REFUSED,			/* KIS refused it: refusal says why */
	KIS_SUB_DROP,				/* to unsubscribe; the worker sends it */
	KIS_SUB_DROPPING			/* unsubscribe sent, no ack yet */
} KisSubState;

/* The worker's socket, as the view shows it */
typedef enum KisSocketState
{
	KIS_SOCKET_NONE,			/* no worker */
	KIS_SOCKET_STARTING,		/* a backend registered a worker */
	KIS_SOCKET_CONNECTING,
	KIS_SOCKET_OPEN,
	KIS_SOCKET_BACKOFF,			/* lost; reconnecting after a pause */
	KIS_SOCKET_IN_USE			/* KIS said another program holds the key */
} KisSocketState;

typedef struct KisLiveEntry
{
	/* under the channel's mutex */
	KisSubState state;
	KisLiveKind kind;
	bool		pinned;			/* kis_fdw_live_subscribe: never idle */
	bool		rewant;			/* wanted again while DROPPING: subscribe
								 * once KIS acks the unsubscription */
	char		tr_key[KIS_LIVE_TR_KEY_MAX];
	char		refusal[KIS_LIVE_TEXT_MAX]; /* msg_cd and msg1 of a refusal */
	TimestampTz wanted_at;

	pg_atomic_uint64 last_read; /* readers touch it without the mutex */

	/*
	 * The latest record, written by the worker alone: change is odd while
	 * it writes, so a reader copies, then checks change did not move.
	 */
	pg_atomic_uint32 change;
	TimestampTz received_at;	/* 0: no tick since the subscription */
	uint32		len;
	char		record[KIS_LIVE_RECORD_MAX];
} KisLiveEntry;

typedef struct KisLiveChannel
{
	slock_t		mutex;			/* everything but the atomics and records */
	bool		in_use;
	uint64		generation;		/* bumped when the channel is taken anew */
	uint8		id[KIS_SHA256_LEN]; /* kis_live_channel_id */
	uint8		app_key_hash[KIS_SHA256_LEN];	/* shown by the view */
	char		ws_url[KIS_LIVE_URL_MAX];
	char		approval_key[KIS_LIVE_APPROVAL_MAX];	/* "" until a backend
														 * obtains one */
	TimestampTz approval_at;	/* when it was obtained */

	KisSocketState socket;
	int			worker_pid;
	Latch	   *worker_latch;	/* set when there is work for the worker */
	int			limit;			/* subscriptions KIS took before refusing
								 * one (MAX SUBSCRIBE OVER), 0 if unknown */
	TimestampTz limit_at;		/* when it was learned */
	char		last_error[KIS_LIVE_TEXT_MAX];
	TimestampTz last_error_at;
	int64		reconnects;
	TimestampTz connected_at;

	pg_atomic_uint64 ticks;
	pg_atomic_uint64 last_tick; /* TimestampTz */

	/*
	 * The channel's trades in the ring are numbered from tick_base (the
	 * clock in microseconds when the channel was taken: increasing across
	 * restarts); tick_seq is the last one written, by the worker alone
	 */
	uint64		tick_base;
	pg_atomic_uint64 tick_seq;

	ConditionVariable cv;		/* broadcast after ticks and acks */
	KisLiveEntry entries[KIS_LIVE_MAX_ENTRIES];
} KisLiveChannel;

/*
 * One trade in the ring, of any channel; seq (its position's turn) is 0
 * while a worker writes it
 */
typedef struct KisLiveTick
{
	pg_atomic_uint64 seq;
	int			channel;
	uint64		generation;		/* the channel's owner when received */
	uint64		tick_seq;		/* its number in the channel: domestic_ticks' seq */
	TimestampTz received_at;
	uint32		len;
	char		record[KIS_LIVE_TICK_MAX];
} KisLiveTick;

typedef struct KisLiveShared
{
	slock_t		mutex;			/* taking and giving back channels */
	int			nchannels;
	int			ring_size;
	uint64		base_seq;		/* the position before the first tick (the clock at
								 * startup, in microseconds) */
	pg_atomic_uint64 next_seq;	/* the last seq handed out */
	KisLiveChannel *channels;	/* nchannels of them, after this */
	KisLiveTick *ring;			/* ring_size of them, after those */
} KisLiveShared;

/* The stream of each kind (docs/live.md) */
typedef struct KisLiveKindInfo
{
	const char *tr_id;
	int			nfields;		/* at least this many per record */
	const char *const *fields;	/* their names, lower case, in order */
	bool		ringed;			/* its records go to the tick ring */
	int			date_field;		/* KST YYYYMMDD and HHMMSS of a trade: */
	int			time_field;		/* trade_time (-1: none) */
} KisLiveKindInfo;

extern const KisLiveKindInfo kis_live_kinds[KIS_LIVE_NUM_KINDS];

extern KisLiveShared *kis_live_shared(void);
extern KisLiveChannel *kis_live_channel_at(int i);

#endif							/* KIS_LIVE_INTERNAL_H */
