/*-------------------------------------------------------------------------
 *
 * live.c
 *	  The live tables' shared state, from the backends' side: channels (one
 *	  per credential and WebSocket URL), subscriptions with the latest
 *	  record of each, and the tick ring; starting the background worker
 *	  that holds the channel's socket (worker.c).
 *
 * A backend never touches the socket: it marks what it wants, sets the
 * worker's latch and waits on the channel's condition variable for first
 * ticks, for at most live_wait_ms.  Records are read under a per-entry
 * change counter, so readers never wait for the worker nor the worker for
 * them.  The layout is in live_internal.h; docs/live.md tells the rest.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <jansson.h>

#include "miscadmin.h"
#include "pgstat.h"
#include "lib/stringinfo.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "auth.h"
#include "live.h"
#include "live_internal.h"
#include "options.h"
#include "response.h"
#include "util.h"

int			kis_live_idle_s = 300;

#define KIS_LIVE_RING_PATIENCE	(1000 + 100)	/* spins, then 1 ms sleeps */
static int	live_ring_size = 16384;
static int	live_nchannels = 0;
static KisLiveShared *live = NULL;

/* ---- the streams (field lists from KIS's samples, docs/live.md) ---- */

static const char *const trade_fields[] = {
	"mksc_shrn_iscd", "stck_cntg_hour", "stck_prpr", "prdy_vrss_sign", "prdy_vrss",
	"prdy_ctrt", "wghn_avrg_stck_prc", "stck_oprc", "stck_hgpr", "stck_lwpr",
	"askp1", "bidp1", "cntg_vol", "acml_vol", "acml_tr_pbmn", "seln_cntg_csnu",
	"shnu_cntg_csnu", "ntby_cntg_csnu", "cttr", "seln_cntg_smtn", "shnu_cntg_smtn",
	"ccld_dvsn", "shnu_rate", "prdy_vol_vrss_acml_vol_rate", "oprc_hour",
	"oprc_vrss_prpr_sign", "oprc_vrss_prpr", "hgpr_hour", "hgpr_vrss_prpr_sign",
	"hgpr_vrss_prpr", "lwpr_hour", "lwpr_vrss_prpr_sign", "lwpr_vrss_prpr",
	"bsop_date", "new_mkop_cls_code", "trht_yn", "askp_rsqn1", "bidp_rsqn1",
	"total_askp_rsqn", "total_bidp_rsqn", "vol_tnrt", "prdy_smns_hour_acml_vol",
	"prdy_smns_hour_acml_vol_rate", "hour_cls_code", "mrkt_trtm_cls_code",
	"vi_stnd_prc", NULL
};

static const char *const book_fields[] = {
	"mksc_shrn_iscd", "bsop_hour", "hour_cls_code",
	"askp1", "askp2", "askp3", "askp4", "askp5", "askp6", "askp7", "askp8", "askp9", "askp10",
	"bidp1", "bidp2", "bidp3", "bidp4", "bidp5", "bidp6", "bidp7", "bidp8", "bidp9", "bidp10",
	"askp_rsqn1", "askp_rsqn2", "askp_rsqn3", "askp_rsqn4", "askp_rsqn5",
	"askp_rsqn6", "askp_rsqn7", "askp_rsqn8", "askp_rsqn9", "askp_rsqn10",
	"bidp_rsqn1", "bidp_rsqn2", "bidp_rsqn3", "bidp_rsqn4", "bidp_rsqn5",
	"bidp_rsqn6", "bidp_rsqn7", "bidp_rsqn8", "bidp_rsqn9", "bidp_rsqn10",
	"total_askp_rsqn", "total_bidp_rsqn", "ovtm_total_askp_rsqn", "ovtm_total_bidp_rsqn",
	"antc_cnpr", "antc_cnqn", "antc_vol", "antc_cntg_vrss", "antc_cntg_vrss_sign",
	"antc_cntg_prdy_ctrt", "acml_vol", "total_askp_rsqn_icdc", "total_bidp_rsqn_icdc",
	"ovtm_total_askp_icdc", "ovtm_total_bidp_icdc", "stck_deal_cls_code", NULL
};

static const char *const overseas_fields[] = {
	"rsym", "symb", "zdiv", "tymd", "xymd", "xhms", "kymd", "khms", "open", "high",
	"low", "last", "sign", "diff", "rate", "pbid", "pask", "vbid", "vask", "evol",
	"tvol", "tamt", "bivl", "asvl", "strn", "mtyp", NULL
};

/* nfields is the length of each list (kis_live_field_mask relies on it) */
StaticAssertDecl(lengthof(trade_fields) == 46 + 1 && lengthof(book_fields) == 59 + 1 &&
				 lengthof(overseas_fields) == 26 + 1, "a stream's field list and count differ");

const KisLiveKindInfo kis_live_kinds[KIS_LIVE_NUM_KINDS] = {
	/* trade_time: bsop_date and stck_cntg_hour; overseas kymd and khms */
	[KIS_LIVE_TRADE] = {"H0STCNT0", 46, trade_fields, true, 33, 1},
	[KIS_LIVE_BOOK] = {"H0STASP0", 59, book_fields, false, -1, -1},
	[KIS_LIVE_OVERSEAS] = {"HDFSCNT0", 26, overseas_fields, false, 6, 7},
};

static const char *const kind_names[KIS_LIVE_NUM_KINDS] = {
	[KIS_LIVE_TRADE] = "trade",
	[KIS_LIVE_BOOK] = "orderbook",
	[KIS_LIVE_OVERSEAS] = "overseas",
};

const char *
kis_live_tr_id(KisLiveKind kind)
{
	return kis_live_kinds[kind].tr_id;
}

/* The kind kis_fdw_live_subscribe names: trade, orderbook, overseas */
bool
kis_live_kind_by_name(const char *name, KisLiveKind *kind)
{
	for (int k = 0; k < KIS_LIVE_NUM_KINDS; k++)
	{
		if (strcmp(name, kind_names[k]) == 0)
		{
			*kind = (KisLiveKind) k;
			return true;
		}
	}
	return false;
}

/* The tr_key of a symbol: itself, or D + exchange + symbol overseas */
char *
kis_live_tr_key(KisLiveKind kind, const char *symbol, const char *exchange)
{
	if (kind == KIS_LIVE_OVERSEAS)
		return psprintf("D%s%s", exchange, symbol);
	return pstrdup(symbol);
}

/*
 * Split ws://host[:port][/path] (true), or say it is not such a URL: no
 * other scheme (KIS's endpoint has no TLS), no user name, query or
 * fragment.  Any out-argument may be NULL.
 */
bool
kis_live_url_split(const char *url, char **host, char **port, char **path)
{
	const char *p;
	const char *h;
	const char *colon = NULL;
	int			portnum = 80;

	if (pg_strncasecmp(url, "ws://", 5) != 0)
		return false;
	h = p = url + 5;
	while (*p && *p != '/')
	{
		if (*p == ':' && colon == NULL)
			colon = p;
		else if (!(isalnum((unsigned char) *p) || *p == '.' || *p == '-' ||
				   (colon != NULL && isdigit((unsigned char) *p))))
			return false;
		p++;
	}
	if ((colon ? colon : p) == h)
		return false;
	if (colon != NULL)
	{
		char	   *end;
		long		n;

		if (colon + 1 == p)
			return false;
		n = strtol(colon + 1, &end, 10);
		if (end != p || n < 1 || n > 65535)
			return false;
		portnum = (int) n;
	}
	for (const char *q = p; *q; q++)
	{
		if (*q == '?' || *q == '#' || *q == '@' || *q <= ' ' || *q >= 0x7f)
			return false;
	}
	if (host)
		*host = pnstrdup(h, (colon ? colon : p) - h);
	if (port)
		*port = psprintf("%d", portnum);
	if (path)
		*path = pstrdup(*p ? p : "/");
	return true;
}

/* ---- shared memory ---- */

void
kis_live_define_gucs(void)
{
	DefineCustomIntVariable("kis_fdw.live_idle_s",
							"Unsubscribe a live symbol nobody read for this many seconds.",
							NULL,
							&kis_live_idle_s,
							300, 1, 86400,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("kis_fdw.live_ring_size",
							"Ticks kept in the shared ring that domestic_ticks reads.",
							NULL,
							&live_ring_size,
							16384, 1024, 1048576,
							PGC_POSTMASTER, 0,
							NULL, NULL, NULL);
}

static Size
live_size(int nchannels)
{
	Size		size = MAXALIGN(sizeof(KisLiveShared));

	size = add_size(size, MAXALIGN(mul_size(nchannels, sizeof(KisLiveChannel))));
	return add_size(size, mul_size(live_ring_size, sizeof(KisLiveTick)));
}

/* From shmem.c's request hook: nchannels is kis_fdw.max_app_keys */
void
kis_live_shmem_request(int nchannels)
{
	live_nchannels = nchannels;
	RequestAddinShmemSpace(live_size(nchannels));
}

/* From shmem.c's startup hook, under AddinShmemInitLock */
void
kis_live_shmem_startup(void)
{
	bool		found;
	char	   *base;

	/* kis_live_kinds' trade_time fields name what the field lists say */
	Assert(strcmp(trade_fields[kis_live_kinds[KIS_LIVE_TRADE].date_field], "bsop_date") == 0 &&
		   strcmp(trade_fields[kis_live_kinds[KIS_LIVE_TRADE].time_field], "stck_cntg_hour") == 0 &&
		   strcmp(overseas_fields[kis_live_kinds[KIS_LIVE_OVERSEAS].date_field], "kymd") == 0 &&
		   strcmp(overseas_fields[kis_live_kinds[KIS_LIVE_OVERSEAS].time_field], "khms") == 0);
	base = ShmemInitStruct("kis_fdw live", live_size(live_nchannels), &found);
	live = (KisLiveShared *) base;
	if (found)
		return;
	memset(base, 0, MAXALIGN(sizeof(KisLiveShared)));
	SpinLockInit(&live->mutex);
	live->nchannels = live_nchannels;
	live->ring_size = live_ring_size;
	/* ring positions are counted from here; any start would do */
	live->base_seq = (uint64) Max(GetCurrentTimestamp(), 0);
	pg_atomic_init_u64(&live->next_seq, live->base_seq);
	live->channels = (KisLiveChannel *) (base + MAXALIGN(sizeof(KisLiveShared)));
	live->ring = (KisLiveTick *) ((char *) live->channels +
								  MAXALIGN(mul_size(live_nchannels, sizeof(KisLiveChannel))));
	for (int i = 0; i < live_nchannels; i++)
	{
		KisLiveChannel *ch = &live->channels[i];

		memset(ch, 0, sizeof(KisLiveChannel));
		SpinLockInit(&ch->mutex);
		ConditionVariableInit(&ch->cv);
		pg_atomic_init_u64(&ch->ticks, 0);
		pg_atomic_init_u64(&ch->last_tick, 0);
		pg_atomic_init_u64(&ch->tick_seq, 0);
		for (int e = 0; e < KIS_LIVE_MAX_ENTRIES; e++)
		{
			pg_atomic_init_u64(&ch->entries[e].last_read, 0);
			pg_atomic_init_u32(&ch->entries[e].change, 0);
		}
	}
	for (int i = 0; i < live_ring_size; i++)
		pg_atomic_init_u64(&live->ring[i].seq, 0);
}

/* The shared state; an ERROR unless kis_fdw was preloaded */
KisLiveShared *
kis_live_shared(void)
{
	if (live == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("live tables need kis_fdw in shared_preload_libraries"),
				 errdetail("A background worker holds KIS's WebSocket, and every session reads its ticks from shared memory."),
				 errhint("Add kis_fdw to shared_preload_libraries and restart PostgreSQL.")));
	return live;
}

KisLiveChannel *
kis_live_channel_at(int i)
{
	KisLiveShared *shared = kis_live_shared();

	return i >= 0 && i < shared->nchannels ? &shared->channels[i] : NULL;
}

/* ---- channels ---- */

static KisLiveChannel *live_channel(const KisConfig *config, uint64 *generation, bool take);

/*
 * Whose channel: the credential (kis_hash_credentials, so another role's
 * mapping with our app key and a wrong secret never reaches it) and the
 * WebSocket URL.
 */
static void
channel_id(const KisConfig *config, uint8 *out)
{
	uint8		creds[KIS_SHA256_LEN];
	StringInfoData buf;

	kis_hash_credentials(config, creds);
	initStringInfo(&buf);
	appendBinaryStringInfo(&buf, (const char *) creds, KIS_SHA256_LEN);
	appendStringInfoString(&buf, config->ws_url);
	kis_sha256(buf.data, buf.len, out);
	pfree(buf.data);
}

/* Nothing subscribed and no worker: the channel may be given to another */
static bool
channel_idle(KisLiveChannel *ch)
{
	if (ch->socket != KIS_SOCKET_NONE)
		return false;
	for (int e = 0; e < KIS_LIVE_MAX_ENTRIES; e++)
	{
		if (ch->entries[e].state != KIS_SUB_FREE)
			return false;
	}
	return true;
}

/*
 * The channel of this table's credential and ws_url, taken if it has
 * none, and its generation: until something is wanted on it, an idle
 * channel may be given to another credential, which the functions below
 * that take the generation notice.  config must have its credentials.
 */
KisLiveChannel *
kis_live_channel(const KisConfig *config, uint64 *generation)
{
	return live_channel(config, generation, true);
}

/* The channel of this credential if it has one, else NULL (nothing is taken) */
KisLiveChannel *
kis_live_channel_find(const KisConfig *config, uint64 *generation)
{
	return live_channel(config, generation, false);
}

static KisLiveChannel *
live_channel(const KisConfig *config, uint64 *generation, bool take)
{
	KisLiveShared *shared = kis_live_shared();
	uint8		id[KIS_SHA256_LEN];
	uint8		app_key_hash[KIS_SHA256_LEN];
	KisLiveChannel *found = NULL;
	KisLiveChannel *spare = NULL;

	if (strlen(config->ws_url) >= KIS_LIVE_URL_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"ws_url\" is longer than %d bytes", KIS_LIVE_URL_MAX - 1)));
	channel_id(config, id);
	kis_hash_app_key(config->app_key, app_key_hash);
	SpinLockAcquire(&shared->mutex);
	for (int i = 0; i < shared->nchannels && found == NULL; i++)
	{
		KisLiveChannel *ch = &shared->channels[i];

		/* a channel never used first, then an idle one (its ticks go) */
		SpinLockAcquire(&ch->mutex);
		if (ch->in_use && memcmp(ch->id, id, KIS_SHA256_LEN) == 0)
			found = ch;
		else if (!ch->in_use && (spare == NULL || spare->in_use))
			spare = ch;
		else if (spare == NULL && channel_idle(ch))
			spare = ch;
		SpinLockRelease(&ch->mutex);
	}
	if (found == NULL && !take)
		spare = NULL;
	if (found == NULL && spare != NULL)
	{
		found = spare;
		SpinLockAcquire(&found->mutex);
		found->in_use = true;
		found->generation++;
		memcpy(found->id, id, KIS_SHA256_LEN);
		memcpy(found->app_key_hash, app_key_hash, KIS_SHA256_LEN);
		strlcpy(found->ws_url, config->ws_url, KIS_LIVE_URL_MAX);
		explicit_bzero(found->approval_key, KIS_LIVE_APPROVAL_MAX);
		found->socket = KIS_SOCKET_NONE;
		found->limit = 0;
		found->last_error[0] = '\0';
		found->last_error_at = 0;
		found->reconnects = 0;
		found->connected_at = 0;
		pg_atomic_write_u64(&found->ticks, 0);
		pg_atomic_write_u64(&found->last_tick, 0);
		found->tick_base = (uint64) Max(GetCurrentTimestamp(), 0);
		pg_atomic_write_u64(&found->tick_seq, found->tick_base);
		SpinLockRelease(&found->mutex);
	}
	if (found != NULL)
	{
		SpinLockAcquire(&found->mutex);
		*generation = found->generation;
		SpinLockRelease(&found->mutex);
	}
	SpinLockRelease(&shared->mutex);
	if (found == NULL && take)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("kis_fdw has no free live channel"),
				 errdetail("All %d channels hold subscriptions of other app keys.", shared->nchannels),
				 errhint("Unsubscribe them (kis_fdw_live_unsubscribe), or raise kis_fdw.max_app_keys and restart PostgreSQL.")));
	return found;
}

static int
channel_index(KisLiveChannel *ch)
{
	return (int) (ch - kis_live_shared()->channels);
}

/*
 * Whether a backend must obtain an approval key for the worker first:
 * there is none, the worker dropped it (KIS refused a subscription for a
 * reason not its own), or it is half a day old.
 */
bool
kis_live_needs_approval(KisLiveChannel *ch)
{
	bool		needs;

	TimestampTz renew = GetCurrentTimestamp() - (int64) KIS_LIVE_APPROVAL_RENEW_S * USECS_PER_SEC;

	SpinLockAcquire(&ch->mutex);
	needs = ch->approval_key[0] == '\0' || ch->approval_at < renew;
	SpinLockRelease(&ch->mutex);
	return needs;
}

bool
kis_live_set_approval(KisLiveChannel *ch, uint64 generation, const char *approval_key)
{
	bool		ours;

	if (strlen(approval_key) >= KIS_LIVE_APPROVAL_MAX || !kis_is_printable_ascii(approval_key))
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
				 errmsg("KIS answered the WebSocket approval request with an unusable key"),
				 errdetail("An approval key is printable ASCII of at most %d bytes.",
						   KIS_LIVE_APPROVAL_MAX - 1)));
	SpinLockAcquire(&ch->mutex);
	ours = ch->generation == generation;
	if (ours)
	{
		strlcpy(ch->approval_key, approval_key, KIS_LIVE_APPROVAL_MAX);
		ch->approval_at = GetCurrentTimestamp();
	}
	SpinLockRelease(&ch->mutex);
	return ours;
}

/* ---- subscriptions ---- */

/* Whether KIS refused a pinned symbol: someone must ask again */
bool
kis_live_refused_pins(KisLiveChannel *ch)
{
	bool		refused = false;

	SpinLockAcquire(&ch->mutex);
	for (int e = 0; e < KIS_LIVE_MAX_ENTRIES && !refused; e++)
		refused = ch->entries[e].pinned && ch->entries[e].state == KIS_SUB_REFUSED;
	SpinLockRelease(&ch->mutex);
	return refused;
}

/* The entry of (kind, tr_key), or NULL; the caller holds ch->mutex */
static KisLiveEntry *
find_entry(KisLiveChannel *ch, KisLiveKind kind, const char *tr_key)
{
	for (int e = 0; e < KIS_LIVE_MAX_ENTRIES; e++)
	{
		KisLiveEntry *entry = &ch->entries[e];

		if (entry->state != KIS_SUB_FREE && entry->kind == kind &&
			entry->tr_key[0] == tr_key[0] && strcmp(entry->tr_key, tr_key) == 0)
			return entry;
	}
	return NULL;
}

/* The entry of a key: the one kis_live_want found, if it still is; ch->mutex held */
static KisLiveEntry *
entry_of(KisLiveChannel *ch, const KisLiveKey *key)
{
	if (key->entry >= 0 && key->entry < KIS_LIVE_MAX_ENTRIES)
	{
		KisLiveEntry *entry = &ch->entries[key->entry];

		if (entry->state != KIS_SUB_FREE && entry->kind == key->kind &&
			strcmp(entry->tr_key, key->tr_key) == 0)
			return entry;
	}
	return find_entry(ch, key->kind, key->tr_key);
}

/* Subscriptions KIS holds or will: what its limit counts */
static int
subscribed_count(KisLiveChannel *ch)
{
	int			n = 0;

	for (int e = 0; e < KIS_LIVE_MAX_ENTRIES; e++)
	{
		KisSubState state = ch->entries[e].state;

		if (state == KIS_SUB_WANTED || state == KIS_SUB_SENT || state == KIS_SUB_ACTIVE)
			n++;
	}
	return n;
}

/*
 * Make room at the key's limit: the least recently read subscription that
 * is not pinned and was not read since "since" is dropped.  The caller
 * holds ch->mutex.
 */
static bool
evict_one(KisLiveChannel *ch, TimestampTz since)
{
	KisLiveEntry *victim = NULL;

	for (int e = 0; e < KIS_LIVE_MAX_ENTRIES; e++)
	{
		KisLiveEntry *entry = &ch->entries[e];
		uint64		read = pg_atomic_read_u64(&entry->last_read);

		if (entry->pinned || entry->state != KIS_SUB_ACTIVE || (TimestampTz) read >= since)
			continue;
		if (victim == NULL || read < pg_atomic_read_u64(&victim->last_read))
			victim = entry;
	}
	if (victim == NULL)
		return false;
	victim->state = KIS_SUB_DROP;
	return true;
}

/* Start the channel's worker (docs/live.md: it stops when idle) */
static void
start_worker(KisLiveChannel *ch)
{
	BackgroundWorker bgw;
	BackgroundWorkerHandle *handle;
	int			index = channel_index(ch);
	uint64		generation;

	SpinLockAcquire(&ch->mutex);
	generation = ch->generation;
	SpinLockRelease(&ch->mutex);

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = 1;	/* one that fails comes back */
	snprintf(bgw.bgw_library_name, sizeof(bgw.bgw_library_name), "kis_fdw");
	snprintf(bgw.bgw_function_name, sizeof(bgw.bgw_function_name), "kis_live_worker_main");
	snprintf(bgw.bgw_name, sizeof(bgw.bgw_name), "kis_fdw live worker %d", index);
	snprintf(bgw.bgw_type, sizeof(bgw.bgw_type), "kis_fdw live worker");
	bgw.bgw_main_arg = Int32GetDatum(index);
	memcpy(bgw.bgw_extra, &generation, sizeof(generation));
	bgw.bgw_notify_pid = 0;
	if (!RegisterDynamicBackgroundWorker(&bgw, &handle))
	{
		SpinLockAcquire(&ch->mutex);
		ch->socket = KIS_SOCKET_NONE;
		SpinLockRelease(&ch->mutex);
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not start the kis_fdw live worker"),
				 errdetail("Every background worker slot is in use."),
				 errhint("Raise max_worker_processes and restart PostgreSQL.")));
	}
}

/* There is work for the worker: wake it, or (start) start it if it does not run */
static void
wake_worker(KisLiveChannel *ch, bool start)
{
	Latch	   *latch;
	bool		must_start = false;

	SpinLockAcquire(&ch->mutex);
	if (ch->socket == KIS_SOCKET_NONE && start)
	{
		ch->socket = KIS_SOCKET_STARTING;
		must_start = true;
	}
	latch = ch->worker_latch;
	SpinLockRelease(&ch->mutex);
	if (must_start)
		start_worker(ch);
	else if (latch != NULL)
		SetLatch(latch);
}

/*
 * Subscribe to each KisLiveKey of keys that is not yet (pin: and keep it
 * until unsubscribed), and note them read now.  A key there is no room
 * for at the key's limit gets its refusal.  False if the channel is no
 * longer of that generation (nothing was done).
 */
bool
kis_live_want(KisLiveChannel *ch, uint64 generation, List *keys, bool pin)
{
	TimestampTz now = GetCurrentTimestamp();
	int			nkeys = list_length(keys);
	KisLiveKey **key = palloc(sizeof(KisLiveKey *) * Max(nkeys, 1));
	uint8	   *refused = palloc0(Max(nkeys, 1));	/* 1: no room, 2: no entry */
	bool	   *missing = palloc0(sizeof(bool) * Max(nkeys, 1));
	bool		any = false;
	int			limit;
	ListCell   *lc;

	foreach(lc, keys)
		key[foreach_current_index(lc)] = lfirst(lc);

	SpinLockAcquire(&ch->mutex);
	if (ch->generation != generation)
	{
		SpinLockRelease(&ch->mutex);
		return false;			/* given to another credential meanwhile */
	}
	if (ch->limit > 0 && now - ch->limit_at > (int64) KIS_LIVE_LIMIT_FORGET_S * USECS_PER_SEC)
		ch->limit = 0;			/* KIS may take more now: learn it again */
	/*
	 * Pinned symbols KIS refused (the approval key, say) are asked for again
	 * whenever the channel is used: nothing else would (a capture of the
	 * ring reads no symbol)
	 */
	for (int e = 0; e < KIS_LIVE_MAX_ENTRIES; e++)
	{
		KisLiveEntry *entry = &ch->entries[e];

		if (entry->pinned && entry->state == KIS_SUB_REFUSED &&
			now - entry->wanted_at >= USECS_PER_SEC)
		{
			entry->state = KIS_SUB_WANTED;
			entry->wanted_at = now;
			any = true;
		}
	}
	/* first those subscribed: read now, so that no room is made of them */
	for (int i = 0; i < nkeys; i++)
	{
		KisLiveEntry *entry = find_entry(ch, key[i]->kind, key[i]->tr_key);

		if (entry == NULL)
		{
			missing[i] = true;
			continue;
		}
		key[i]->entry = (int) (entry - ch->entries);
		pg_atomic_write_u64(&entry->last_read, (uint64) now);
		entry->pinned |= pin;
		if (entry->state == KIS_SUB_DROP)
			entry->state = KIS_SUB_ACTIVE;	/* never unsubscribed */
		else if (entry->state == KIS_SUB_DROPPING)
		{
			entry->rewant = true;	/* again, once KIS acks the unsubscription */
			any = true;
		}
		else if (entry->state == KIS_SUB_REFUSED &&
				 now - entry->wanted_at >= USECS_PER_SEC)
		{
			entry->state = KIS_SUB_WANTED;	/* ask again */
			entry->wanted_at = now;
			any = true;
		}
	}
	for (int i = 0; i < nkeys; i++)
	{
		KisLiveEntry *entry = NULL;

		if (!missing[i] || find_entry(ch, key[i]->kind, key[i]->tr_key) != NULL)
			continue;			/* subscribed, or twice in keys */
		/* at the limit KIS taught us: the least recently read goes */
		if (ch->limit > 0 && subscribed_count(ch) >= ch->limit && !evict_one(ch, now))
		{
			refused[i] = 1;
			continue;
		}
		for (int e = 0; e < KIS_LIVE_MAX_ENTRIES && entry == NULL; e++)
		{
			if (ch->entries[e].state == KIS_SUB_FREE)
				entry = &ch->entries[e];
		}
		if (entry == NULL)
		{
			refused[i] = 2;
			continue;
		}
		key[i]->entry = (int) (entry - ch->entries);
		entry->state = KIS_SUB_WANTED;
		entry->rewant = false;
		entry->kind = key[i]->kind;
		strlcpy(entry->tr_key, key[i]->tr_key, KIS_LIVE_TR_KEY_MAX);
		entry->refusal[0] = '\0';
		entry->pinned = pin;
		entry->wanted_at = now;
		entry->received_at = 0;
		entry->len = 0;
		pg_atomic_write_u64(&entry->last_read, (uint64) now);
		any = true;
	}
	limit = ch->limit;
	SpinLockRelease(&ch->mutex);

	for (int i = 0; i < nkeys; i++)
	{
		if (refused[i] == 1)
			key[i]->refusal = psprintf("all %d subscriptions of the app key are in use", limit);
		else if (refused[i] == 2)
			key[i]->refusal = psprintf("all %d live entries of the app key are in use",
									   KIS_LIVE_MAX_ENTRIES);
	}
	pfree(key);
	pfree(refused);
	pfree(missing);
	if (any)
		wake_worker(ch, true);
	return true;
}

/* Unsubscribe each KisLiveKey of keys (and unpin it) */
void
kis_live_unwant(KisLiveChannel *ch, uint64 generation, List *keys)
{
	ListCell   *lc;

	SpinLockAcquire(&ch->mutex);
	if (ch->generation != generation)
	{
		SpinLockRelease(&ch->mutex);
		return;					/* no longer ours: nothing of ours on it */
	}
	foreach(lc, keys)
	{
		KisLiveKey *key = lfirst(lc);
		KisLiveEntry *entry = find_entry(ch, key->kind, key->tr_key);

		if (entry == NULL)
			continue;
		entry->pinned = false;
		entry->rewant = false;
		if (entry->state == KIS_SUB_WANTED || entry->state == KIS_SUB_REFUSED)
			entry->state = KIS_SUB_FREE;	/* never sent, or refused */
		else if (entry->state == KIS_SUB_SENT || entry->state == KIS_SUB_ACTIVE)
			entry->state = KIS_SUB_DROP;
	}
	SpinLockRelease(&ch->mutex);
	wake_worker(ch, false);
}

/*
 * Copy an entry's record if it holds one of tr_key (its first field): the
 * worker may rewrite it meanwhile, so copy until the change counter says
 * the copy is whole.
 */
static bool
read_record(KisLiveEntry *entry, const char *tr_key, char *buf, TimestampTz *at)
{
	size_t		keylen = strlen(tr_key);

	for (int spins = 0;; spins++)
	{
		uint32		before = pg_atomic_read_u32(&entry->change);
		uint32		len;

		if (before & 1)
		{
			/* a worker that died while writing: no tick until the next one */
			if (spins > 10000)
				return false;
			pg_spin_delay();
			continue;
		}
		pg_read_barrier();
		len = Min(entry->len, KIS_LIVE_RECORD_MAX - 1);
		memcpy(buf, entry->record, len);
		buf[len] = '\0';
		*at = entry->received_at;
		pg_read_barrier();
		if (pg_atomic_read_u32(&entry->change) == before)
			return *at != 0 && len > keylen && strncmp(buf, tr_key, keylen) == 0 &&
				buf[keylen] == '^';
	}
}

/*
 * Wait up to wait_ms for a first tick of each KisLiveKey of keys, then
 * fill in what each has: its latest record, or why KIS would not stream
 * it.  An ERROR if KIS says another program holds the key's socket.
 */
void
kis_live_collect(KisLiveChannel *ch, List *keys, int wait_ms)
{
	TimestampTz deadline = GetCurrentTimestamp() + (int64) wait_ms * 1000;
	char	   *buf = palloc(KIS_LIVE_RECORD_MAX);
	bool		sleeping = false;

	for (;;)
	{
		bool		pending = false;
		bool		in_use;
		char		error[KIS_LIVE_TEXT_MAX];
		ListCell   *lc;
		TimestampTz now;

		foreach(lc, keys)
		{
			KisLiveKey *key = lfirst(lc);
			KisLiveEntry *entry;
			TimestampTz at;
			char		refusal[KIS_LIVE_TEXT_MAX];

			if (key->has_tick || key->refusal != NULL)
				continue;
			SpinLockAcquire(&ch->mutex);
			entry = entry_of(ch, key);
			refusal[0] = '\0';
			if (entry != NULL && entry->state == KIS_SUB_REFUSED)
				strlcpy(refusal, entry->refusal, sizeof(refusal));
			SpinLockRelease(&ch->mutex);
			if (refusal[0] != '\0')
				key->refusal = pstrdup(refusal);
			if (entry != NULL && key->refusal == NULL &&
				read_record(entry, key->tr_key, buf, &at))
			{
				key->has_tick = true;
				key->record = pstrdup(buf);
				key->received_at = at;
			}
			else if (key->refusal == NULL)
				pending = true;
		}

		/*
		 * Another program holds the key's socket: KIS refused one of ours
		 * saying so, or the wait is over while KIS says so.  An error, not
		 * REST: the table could never stream.
		 */
		SpinLockAcquire(&ch->mutex);
		in_use = ch->socket == KIS_SOCKET_IN_USE;
		strlcpy(error, ch->last_error, sizeof(error));
		SpinLockRelease(&ch->mutex);
		now = GetCurrentTimestamp();
		foreach(lc, keys)
		{
			KisLiveKey *key = lfirst(lc);

			if (key->refusal != NULL && strncmp(key->refusal, KIS_LIVE_IN_USE_CODE,
												strlen(KIS_LIVE_IN_USE_CODE)) == 0)
			{
				in_use = true;
				strlcpy(error, key->refusal, sizeof(error));
				pending = true;
				now = deadline;
			}
		}
		if (in_use && pending && now >= deadline)
		{
			if (sleeping)
				ConditionVariableCancelSleep();
			ereport(ERROR,
					(errcode(ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
					 errmsg("KIS says another program holds the app key's WebSocket"),
					 errdetail("KIS answered: %s", kis_printable(error)),
					 errhint("KIS allows one WebSocket per app key. Close the other program's connection, or give kis_fdw an app key of its own.")));
		}

		if (!pending || now >= deadline)
			break;
		if (!sleeping)
		{
			ConditionVariablePrepareToSleep(&ch->cv);
			sleeping = true;
			continue;			/* look once more before the first sleep */
		}
		(void) ConditionVariableTimedSleep(&ch->cv,
										   Min((deadline - now + 999) / 1000, 100),
										   PG_WAIT_EXTENSION);
	}
	if (sleeping)
		ConditionVariableCancelSleep();
	pfree(buf);
}

static int	field_index(KisLiveKind kind, const char *field);

/* Which of kind's fields are among the names in fields (NIL: NULL, all) */
bool *
kis_live_field_mask(KisLiveKind kind, List *fields)
{
	bool	   *copy;
	ListCell   *lc;

	if (fields == NIL)
		return NULL;
	copy = palloc0(sizeof(bool) * kis_live_kinds[kind].nfields);
	foreach(lc, fields)
	{
		int			n = field_index(kind, lfirst(lc));

		if (n >= 0)
			copy[n] = true;
	}
	return copy;
}

/* The index of a field of kind's records, or -1 */
static int
field_index(KisLiveKind kind, const char *field)
{
	const char *const *fields = kis_live_kinds[kind].fields;

	for (int i = 0; fields[i]; i++)
	{
		if (strcmp(fields[i], field) == 0)
			return i;
	}
	return -1;
}

/* "YYYY-MM-DD HH:MM:SS+09" from KST YYYYMMDD and HHMMSS, or NULL */
static char *
kst_time(const char *date, const char *time)
{
	if (date == NULL || time == NULL || strlen(date) != 8 || strlen(time) != 6)
		return NULL;
	for (int i = 0; i < 8; i++)
		if (!isdigit((unsigned char) date[i]) || (i < 6 && !isdigit((unsigned char) time[i])))
			return NULL;
	return psprintf("%.4s-%.2s-%.2s %.2s:%.2s:%.2s+09", date, date + 4, date + 6,
					time, time + 2, time + 4);
}

/* object[name] = the first len bytes of text (a field KIS sent in UTF-8) */
static void
set_member(json_t *object, const char *name, const char *text, size_t len)
{
	(void) json_object_set_new(object, name, json_stringn(text, len));
}

/*
 * One record as the object a REST answer's row would be: its fields by
 * name (those copy says, NULL: all), source 'live', received_at, for trades trade_time, and seq if it
 * is not 0.  Owned by the current memory context.
 */
json_t *
kis_live_record_object(KisLiveKind kind, const char *record, TimestampTz received_at,
					   uint64 seq, const bool *copy)
{
	const KisLiveKindInfo *info = &kis_live_kinds[kind];
	json_t	   *object = kis_json_new_object();
	const char *p = record;
	char	   *date = NULL;
	char	   *time = NULL;
	char	   *text;

	set_member(object, "source", "live", 4);
	for (int i = 0; info->fields[i] && p != NULL; i++)
	{
		size_t		len = strcspn(p, "^");

		if (copy == NULL || copy[i])
			set_member(object, info->fields[i], p, len);
		if (i == info->date_field)
			date = pnstrdup(p, len);
		else if (i == info->time_field)
			time = pnstrdup(p, len);
		p = p[len] == '^' ? p + len + 1 : NULL;
	}
	if ((text = kst_time(date, time)) != NULL)
		set_member(object, "trade_time", text, strlen(text));
	text = pstrdup(timestamptz_to_str(received_at));
	set_member(object, "received_at", text, strlen(text));
	if (seq != 0)
	{
		text = psprintf(UINT64_FORMAT, seq);
		set_member(object, "seq", text, strlen(text));
	}
	return object;
}

/*
 * An answer as a REST table's would be: {"rt_cd": "0", "output": output}
 * (an object, or an array of them), owned by the current memory context.
 */
json_t *
kis_live_answer(json_t *output)
{
	return kis_json_own(json_pack("{s:s,s:s,s:s,s:O}", "rt_cd", "0", "msg_cd", "LIVE",
								  "msg1", "", "output", output));
}

/* ---- the tick ring ---- */

int
kis_live_ring_size(void)
{
	return kis_live_shared()->ring_size;
}

/*
 * Start reading channel ch's ticks after its seq "after" (has_after false:
 * every one the ring holds).
 */
void
kis_live_ring_begin(KisLiveRingRead *rr, KisLiveChannel *ch, bool has_after, uint64 after)
{
	KisLiveShared *shared = kis_live_shared();
	uint64		last = pg_atomic_read_u64(&shared->next_seq);

	rr->pos = (last - shared->base_seq > (uint64) shared->ring_size ?
			   last - shared->ring_size : shared->base_seq) + 1;
	rr->index = channel_index(ch);
	SpinLockAcquire(&ch->mutex);
	rr->generation = ch->generation;
	rr->base = ch->tick_base;
	SpinLockRelease(&ch->mutex);
	rr->last = pg_atomic_read_u64(&ch->tick_seq);
	rr->has_after = has_after;
	rr->after = has_after ? after : 0;
	rr->seen = Max(rr->after, rr->base);
	rr->missed = 0;
}

/*
 * The next tick of the channel after rr->after, in the order received, into
 * record (KIS_LIVE_RING_RECORD_MAX bytes); false when there is none.  The
 * ring is every channel's: other channels' ticks are passed over.
 */
bool
kis_live_ring_next(KisLiveRingRead *rr, uint64 *seq, char *record, TimestampTz *received_at)
{
	KisLiveShared *shared = kis_live_shared();
	int			spins = 0;

	for (;;)
	{
		uint64		last = pg_atomic_read_u64(&shared->next_seq);
		KisLiveTick *tick;
		uint64		s;
		uint32		len;
		bool		ours;
		uint64		tick_seq;

		if (rr->pos > last)
			return false;
		if (last - rr->pos >= (uint64) shared->ring_size)
			rr->pos = last - shared->ring_size + 1; /* overwritten meanwhile */
		tick = &shared->ring[(rr->pos - 1) % shared->ring_size];
		s = pg_atomic_read_u64(&tick->seq);
		if (s != rr->pos)
		{
			/*
			 * Overwritten (a later turn): gone.  Being written (0) or handed
			 * out and not written yet (an earlier turn): wait a moment; a
			 * writer that died there took it with it, unless it is the last.
			 */
			if (s < rr->pos && ++spins <= KIS_LIVE_RING_PATIENCE)
			{
				/* a moment's spin, then up to 100 ms for a descheduled writer */
				if (spins < 1000)
					pg_spin_delay();
				else
				{
					CHECK_FOR_INTERRUPTS();
					pg_usleep(1000);
				}
				continue;
			}
			if (s < rr->pos && rr->pos >= last)
				return false;
			spins = 0;
			rr->pos++;
			continue;
		}
		pg_read_barrier();
		ours = tick->channel == rr->index && tick->generation == rr->generation;
		tick_seq = tick->tick_seq;
		len = Min(tick->len, KIS_LIVE_TICK_MAX - 1);
		if (ours && tick_seq > rr->after)
		{
			memcpy(record, tick->record, len);
			record[len] = '\0';
			*received_at = tick->received_at;
		}
		pg_read_barrier();
		if (pg_atomic_read_u64(&tick->seq) != rr->pos)
			continue;			/* overwritten while copied */
		spins = 0;
		rr->pos++;
		if (ours && tick_seq > rr->after)
		{
			*seq = tick_seq;
			/* a gap in the channel's numbers: ticks the ring no longer held */
			if (tick_seq > rr->seen + 1)
				rr->missed += tick_seq - rr->seen - 1;
			rr->seen = Max(rr->seen, tick_seq);
			return true;
		}
	}
}

/*
 * After the last kis_live_ring_next: how many of the channel's ticks after
 * rr->after the read passed over because the ring no longer held them
 * (before or during the read).  Those before the channel was taken (a
 * restart) are not counted: nobody can tell.  0 without "after".
 */
uint64
kis_live_ring_missed(const KisLiveRingRead *rr)
{
	uint64		missed = rr->missed;

	/* written before the read began, yet not found */
	if (rr->last > rr->seen)
		missed += rr->last - rr->seen;
	return rr->has_after ? missed : 0;
}
