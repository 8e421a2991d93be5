/*-------------------------------------------------------------------------
 *
 * auth.c
 *	  KIS access tokens: the tokenP request and the headers that say who
 *	  asks, reading its answer, sharing one token per app key among all
 *	  sessions, and what a scan does next about its token.
 *
 * KIS allows one issuance per minute per app key and notifies the user's
 * phone at each one (docs/tokens-and-rate.md), so issuing is rationed: the token
 * lives in the app key's slot (shared by all sessions when preloaded, see
 * shmem.c); one session at a time issues (a claim in the slot) while the
 * others wait for its result; at most one issuance per
 * kis_fdw.token_issue_interval seconds per key; and a token rejected as
 * expired or invalid is replaced once for everyone (the generation number
 * tells a stale rejection from a fresh one).
 *
 * Every time kept in the slot is on kis_clock_now()'s monotonic clock
 * (limiter.c), so that a wall-clock step can neither hold up an issuance
 * nor a claim; only a token's expiry is read from the wall clock, once.
 *
 * The fetch engine performs the HTTP request; this file knows what to
 * send, what the answer means and what follows (a KisTokenNext, a
 * KisTokenState), and words the ERRORs the engine keeps for the scan.
 * Neither the app key, the secret nor the token is ever put in a message.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <jansson.h>

#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgtime.h"
#include "utils/datetime.h"
#include "utils/timestamp.h"

#include "auth.h"
#include "options.h"
#include "response.h"
#include "shmem.h"
#include "shmem_internal.h"
#include "text.h"
#include "util.h"

int			kis_token_issue_interval = 60;

/* How often a session waiting for another's issuance looks again */
#define KIS_CLAIM_POLL_US		((int64) 10 * 1000)
/* After an issuance failed for a passing reason (HTTP 5xx, garbage) */
#define KIS_ISSUE_RETRY_US		((int64) 1 * USECS_PER_SEC)

/* Numbers this backend's claims, so that two fetchers never share one */
static uint32 claim_serial = 0;

/*
 * Credentials and tokens go into request headers: printable ASCII only,
 * so that no CR or LF can end a header and start another request
 * (docs/security.md).
 */
bool
kis_is_printable_ascii(const char *value)
{
	for (const unsigned char *p = (const unsigned char *) value; *p; p++)
	{
		if (*p < 0x20 || *p > 0x7e)
			return false;
	}
	return true;
}

/* The key by which rate gates and statistics know an app key */
void
kis_hash_app_key(const char *app_key, uint8 *out)
{
	kis_sha256(app_key, strlen(app_key), out);
}

/*
 * Whose token it is, and so which app-key slot holds it (shmem.c): KIS
 * issues a token to an app key and secret, the real and virtual servers
 * each take their own keys (docs/tokens-and-rate.md), and the origin
 * (scheme, host, port) of base_url is who issued it.  So a token issued
 * elsewhere, or to a wrong secret, never lands in the slot of the right
 * one (docs/security.md).  A trailing slash or an upper-case scheme does
 * not change the origin; another name of the same host does.
 */
void
kis_hash_credentials(const KisConfig *config, uint8 *out)
{
	StringInfoData buf;

	/* room for all at once: a buffer that grew would leave a copy behind */
	initStringInfo(&buf);
	enlargeStringInfo(&buf, 16 + strlen(config->origin) + strlen(config->app_key) +
					  strlen(config->app_secret));
	appendStringInfoString(&buf, config->environment == KIS_ENV_VIRTUAL ? "virtual" : "real");
	appendStringInfoChar(&buf, '\0');
	appendBinaryStringInfo(&buf, config->origin, strlen(config->origin) + 1);
	appendBinaryStringInfo(&buf, config->app_key, strlen(config->app_key) + 1);
	appendBinaryStringInfo(&buf, config->app_secret, strlen(config->app_secret) + 1);
	kis_sha256(buf.data, buf.len, out);
	explicit_bzero(buf.data, buf.len);
	pfree(buf.data);
}

/*
 * The slot holds a token issued to creds and not yet due for replacement
 * (5 minutes before it expires, or a tenth of its life when that is
 * shorter).  The caller holds the slot's mutex.
 */
static bool
token_usable(KisAppSlot *slot, const uint8 *creds, TimestampTz now)
{
	int64		margin = Min((int64) 300 * USECS_PER_SEC,
							 (slot->expires_at - slot->issued_at) / 10);

	return slot->token[0] != '\0' &&
		memcmp(slot->token_creds, creds, KIS_SHA256_LEN) == 0 &&
		now < slot->expires_at - margin;
}

/*
 * Whether creds hold a token KIS issued them that is good now, without
 * asking for one: a request answered from the cache when it is made needs
 * that much (docs/cache.md), so that made-up or revoked credentials read
 * nothing another role's requests stored.
 */
bool
kis_token_vouches(KisAppSlot *slot, const uint8 *creds, TimestampTz now)
{
	bool		usable;

	SpinLockAcquire(&slot->mutex);
	usable = token_usable(slot, creds, now);
	SpinLockRelease(&slot->mutex);
	return usable;
}

/*
 * Get the key's token for these credentials, or learn what to do instead.
 * READY: the token (and its generation) is copied out.  WAIT_CLAIM:
 * another session is issuing one; look again at *wake.  WAIT: an issuance
 * failed a moment ago; look again at *wake.  WAIT_INTERVAL: KIS's
 * one-issuance-per-interval rule holds us until *wake.  ISSUE: the caller
 * now holds the issuing claim *claim and must call tokenP, then
 * kis_token_accept (or kis_token_release_claim).
 *
 * The claim lasts claim_us: the caller's worst case for the request it is
 * about to make.  Until then nobody takes it over, however long KIS takes
 * to answer, since KIS may still issue under it; a claimant that keeps
 * running gives up its request by then too (fetch.c), so the two never
 * both ask.  One whose scan is not running then (a cursor paused between
 * fetches) cannot give it up: KIS may have answered it meanwhile, and the
 * next claimant then draws EGW00133, which counts toward the interval, or
 * the same token (docs/tokens-and-rate.md).
 *
 * Only issuances KIS accepted (or said it made, EGW00133) count toward
 * the interval: a refused or cancelled one does not hold up the next.
 *
 * A token is replaced a little before it expires: 5 minutes, or a tenth
 * of its life when that is shorter.
 */
KisTokenState
kis_token_acquire(KisAppSlot *slot, const uint8 *creds, TimestampTz now,
				  int64 claim_us, char *token, uint64 *generation,
				  TimestampTz *wake, uint64 *claim)
{
	KisTokenState state;
	TimestampTz interval_end;

	SpinLockAcquire(&slot->mutex);
	interval_end = slot->last_issued == 0 ? 0 :
		slot->last_issued + (int64) kis_token_issue_interval * USECS_PER_SEC;

	if (token_usable(slot, creds, now))
	{
		strlcpy(token, slot->token, KIS_TOKEN_MAX);
		*generation = pg_atomic_read_u64(&slot->generation);
		state = KIS_TOKEN_READY;
	}
	else if (pg_atomic_read_u64(&slot->claim) != 0 &&
			 now < slot->claim_deadline)
	{
		*wake = Min(now + KIS_CLAIM_POLL_US, slot->claim_deadline);
		state = KIS_TOKEN_WAIT_CLAIM;
	}
	else if (now < slot->retry_after)
	{
		*wake = slot->retry_after;
		state = KIS_TOKEN_WAIT;
	}
	else if (now < interval_end)
	{
		*wake = interval_end;
		state = KIS_TOKEN_WAIT_INTERVAL;
	}
	else
	{
		if (++claim_serial == 0)
			claim_serial = 1;
		*claim = ((uint64) (uint32) MyProcPid << 32) | claim_serial;
		pg_atomic_write_u64(&slot->claim, *claim);
		slot->claim_deadline = now + claim_us;
		state = KIS_TOKEN_ISSUE;
	}
	SpinLockRelease(&slot->mutex);
	return state;
}

/*
 * When the key's issuance schedule is over: its last issuance plus
 * kis_fdw.token_issue_interval, a passing failure's wait, a claim.  Before
 * then a fresh slot for the key (shmem.c) would let it issue too soon.
 * The caller holds the slot table's mutex and no scan holds the slot, so
 * that nothing changes these fields under us (and we take no second lock).
 */
TimestampTz
kis_token_schedule_end(KisAppSlot *slot)
{
	TimestampTz end = slot->retry_after;

	if (slot->last_issued != 0)
		end = Max(end, slot->last_issued +
				  (int64) kis_token_issue_interval * USECS_PER_SEC);
	if (pg_atomic_read_u64(&slot->claim) != 0)
		end = Max(end, slot->claim_deadline);
	return end;
}

/* Give up the issuing claim "claim", if it is still held; never waits */
void
kis_token_release_claim(KisAppSlot *slot, uint64 claim)
{
	if (claim != 0)
		pg_atomic_compare_exchange_u64(&slot->claim, &claim, 0);
}

/*
 * The issuance under "claim" got no answer at all (the network): like a
 * passing failure of KIS's, the next one waits a moment; then the claim
 * is given up.  Nothing was issued, so the interval does not start.
 */
void
kis_token_unanswered(KisAppSlot *slot, uint64 claim, TimestampTz now)
{
	SpinLockAcquire(&slot->mutex);
	slot->retry_after = now + KIS_ISSUE_RETRY_US;
	SpinLockRelease(&slot->mutex);
	kis_token_release_claim(slot, claim);
}

/*
 * kis_fdw_reset_key: forget the issuing claim and when the key last asked
 * for a token, so that the next scan may issue at once.  The token itself
 * is kept: it is still good, and KIS would hand back the same one anyway
 * (docs/tokens-and-rate.md).
 */
void
kis_token_reset(KisAppSlot *slot)
{
	SpinLockAcquire(&slot->mutex);
	pg_atomic_write_u64(&slot->claim, 0);
	slot->claim_deadline = 0;
	slot->last_issued = 0;
	slot->retry_after = 0;
	SpinLockRelease(&slot->mutex);
}

/*
 * KIS rejected the token of this generation: drop it, once for everyone,
 * and remember its hash, to tell if KIS hands the same one back.
 */
void
kis_token_invalidate(KisAppSlot *slot, uint64 generation)
{
	SpinLockAcquire(&slot->mutex);
	if (pg_atomic_read_u64(&slot->generation) == generation &&
		slot->token[0] != '\0')
	{
		explicit_bzero(slot->token, sizeof(slot->token));
		memcpy(slot->rejected_hash, slot->token_hash, KIS_SHA256_LEN);
	}
	SpinLockRelease(&slot->mutex);
}

/*
 * Was the token of this generation the very one KIS had rejected before?
 * Re-issuing within 6 hours hands back the same token (docs/tokens-and-
 * rate.md), so a token KIS calls invalid cannot be replaced by issuing.
 */
bool
kis_token_handed_back(KisAppSlot *slot, uint64 generation)
{
	bool		same;

	SpinLockAcquire(&slot->mutex);
	same = generation != 0 && slot->handed_back == generation;
	SpinLockRelease(&slot->mutex);
	return same;
}

/* A JSON string literal; the key and secret are printable ASCII in practice */
static void
append_json_string(StringInfo buf, const char *value)
{
	appendStringInfoChar(buf, '"');
	for (const unsigned char *p = (const unsigned char *) value; *p; p++)
	{
		if (*p == '"' || *p == '\\')
			appendStringInfo(buf, "\\%c", *p);
		else if (*p < 0x20)
			appendStringInfo(buf, "\\u%04x", *p);
		else
			appendStringInfoChar(buf, (char) *p);
	}
	appendStringInfoChar(buf, '"');
}

/* {"grant_type", "appkey", secret_field: the app secret}, in one buffer */
static char *
credentials_body(const KisConfig *config, const char *secret_field)
{
	StringInfoData buf;

	/*
	 * Room for all at once (6 bytes per escaped character at most): a
	 * buffer that grew would leave a copy of the secret behind.
	 */
	initStringInfo(&buf);
	enlargeStringInfo(&buf, 128 + 6 * (strlen(config->app_key) + strlen(config->app_secret)));
	appendStringInfoString(&buf, "{\"grant_type\":\"client_credentials\",\"appkey\":");
	append_json_string(&buf, config->app_key);
	appendStringInfo(&buf, ",\"%s\":", secret_field);
	append_json_string(&buf, config->app_secret);
	appendStringInfoChar(&buf, '}');
	return buf.data;
}

/*
 * The JSON body of POST /oauth2/tokenP, in the current memory context.
 * Built here rather than by jansson so that no copy of the secret is left
 * behind in buffers we cannot wipe; the caller wipes this one.
 */
static char *
kis_token_request_body(const KisConfig *config)
{
	return credentials_body(config, "appsecret");
}

/*
 * The body of POST /oauth2/Approval, the WebSocket approval key's: the
 * same, with the secret in "secretkey" (docs/live.md).
 */
char *
kis_approval_request_body(const KisConfig *config)
{
	return credentials_body(config, "secretkey");
}

/* Where the WebSocket approval key is asked for */
char *
kis_approval_url(const KisConfig *config)
{
	return psprintf("%s/oauth2/Approval", config->base_url);
}

/*
 * "YYYY-MM-DD HH:MM:SS" in Korea time (UTC+9, no daylight saving), as
 * access_token_token_expired gives it.  Returns 0 when unreadable.
 */
static TimestampTz
parse_kst(const char *text)
{
	struct pg_tm tm;
	Timestamp	ts;
	int			n;

	memset(&tm, 0, sizeof(tm));
	n = sscanf(text, "%d-%d-%d %d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
			   &tm.tm_hour, &tm.tm_min, &tm.tm_sec);
	if (n != 6 || tm2timestamp(&tm, 0, NULL, &ts) != 0)
		return 0;
	return ts - (int64) 9 * SECS_PER_HOUR * USECS_PER_SEC;
}

#define KIS_TOKEN_MIN_LIFE_S	60
#define KIS_TOKEN_MAX_LIFE_S	(366 * SECS_PER_DAY)

static bool
expiry_is_sane(TimestampTz expires, TimestampTz now)
{
	return expires >= now + (int64) KIS_TOKEN_MIN_LIFE_S * USECS_PER_SEC &&
		expires <= now + (int64) KIS_TOKEN_MAX_LIFE_S * USECS_PER_SEC;
}

/*
 * Read the tokenP answer and give up the issuing claim.  On success the
 * token is stored in the app key's slot for every session; otherwise
 * *errdetail says what KIS answered (its code and text, never our
 * credentials).
 */
KisTokenResult
kis_token_accept(KisAppSlot *slot, const uint8 *creds, uint64 claim,
				 long http_status, const char *body, size_t len,
				 TimestampTz now, char **errdetail)
{
	json_t	   *root = kis_json_parse(body, len);
	const char *token;
	const char *code;
	const char *text;
	TimestampTz expires = 0;
	KisTokenResult result;
	uint8		token_hash[KIS_SHA256_LEN];
	uint64		generation;

	*errdetail = NULL;
	token = json_string_value(json_object_get(root, "access_token"));
	if (http_status == 200 && token != NULL && token[0] != '\0' &&
		strlen(token) < KIS_TOKEN_MAX && kis_is_printable_ascii(token))
	{
		const char *exp_text = json_string_value(json_object_get(root, "access_token_token_expired"));
		json_t	   *expires_in = json_object_get(root, "expires_in");
		TimestampTz wall = GetCurrentTimestamp();

		/*
		 * Trust the expiry text (docs/tokens-and-rate.md), then expires_in,
		 * each only if it lies between a minute and a year ahead: a past
		 * expiry (clock skew, a garbled answer) would make every scan issue
		 * again at once.  The expiry is a wall-clock time; the slot keeps
		 * the remaining life on the monotonic clock, so that a later clock
		 * step does not change it.
		 */
		if (exp_text != NULL)
			expires = parse_kst(exp_text);
		if (!expiry_is_sane(expires, wall) && json_is_number(expires_in) &&
			json_number_value(expires_in) >= KIS_TOKEN_MIN_LIFE_S &&
			json_number_value(expires_in) <= KIS_TOKEN_MAX_LIFE_S)
			expires = wall + (int64) json_number_value(expires_in) * USECS_PER_SEC;
		if (!expiry_is_sane(expires, wall))
			expires = wall + (int64) 12 * SECS_PER_HOUR * USECS_PER_SEC;
		expires = now + (expires - wall);

		kis_sha256(token, strlen(token), token_hash);
		SpinLockAcquire(&slot->mutex);
		strlcpy(slot->token, token, KIS_TOKEN_MAX);
		memcpy(slot->token_creds, creds, KIS_SHA256_LEN);
		memcpy(slot->token_hash, token_hash, KIS_SHA256_LEN);
		slot->issued_at = now;
		slot->expires_at = expires;
		slot->last_issued = now;
		slot->retry_after = 0;
		slot->earned = true;	/* the key now keeps its slot (shmem.c) */
		generation = pg_atomic_add_fetch_u64(&slot->generation, 1);
		if (memcmp(token_hash, slot->rejected_hash, KIS_SHA256_LEN) == 0)
			slot->handed_back = generation;
		SpinLockRelease(&slot->mutex);
		kis_token_release_claim(slot, claim);
		kis_slot_count(slot, KIS_CTR_TOKENS_ISSUED, 1);
		explicit_bzero((char *) token, strlen(token));	/* our parsed copy */
		return KIS_TOKEN_OK;
	}

	/* a token we do not take (too long, not printable) is wiped all the same */
	if (token != NULL)
	{
		bool		printable = kis_is_printable_ascii(token);

		explicit_bzero((char *) token, strlen(token));
		if (http_status == 200 && !printable)
		{
			*errdetail = pstrdup("KIS answered HTTP 200 with an access token that is not printable ASCII");
			kis_token_release_claim(slot, claim);
			return KIS_TOKEN_FATAL;
		}
	}

	/* tokenP errors come as {"error_code", "error_description"} */
	code = json_string_value(json_object_get(root, "error_code"));
	if (code == NULL)
		code = json_string_value(json_object_get(root, "msg_cd"));
	text = json_string_value(json_object_get(root, "error_description"));
	if (text == NULL)
		text = json_string_value(json_object_get(root, "msg1"));

	if (code != NULL)
		*errdetail = psprintf("KIS answered HTTP %ld, %s: %s", http_status, code,
							  text ? text : "");
	else
		*errdetail = psprintf("KIS answered HTTP %ld without an access token", http_status);

	/*
	 * Only what KIS counts holds up the next issuance: EGW00133 says an
	 * issuance was made within the interval (by us or another client); a
	 * passing failure waits a moment; a refusal (a mistyped secret) waits
	 * not at all, so the corrected query can issue at once.
	 */
	SpinLockAcquire(&slot->mutex);
	if (code != NULL && strcmp(code, "EGW00133") == 0)
	{
		/*
		 * KIS issued this key a token (to whoever asked): the key keeps its
		 * slot like one we were issued, or it would forget this issuance.
		 */
		slot->last_issued = now;
		slot->earned = true;
		result = KIS_TOKEN_TOO_SOON;
	}
	else if (http_status >= 500 || http_status == 429 || root == NULL)
	{
		slot->retry_after = now + KIS_ISSUE_RETRY_US;
		result = KIS_TOKEN_RETRY;
	}
	else
		result = KIS_TOKEN_FATAL;
	SpinLockRelease(&slot->mutex);
	kis_token_release_claim(slot, claim);
	return result;
}

/* ----------------------------------------------------------------
 * What a request says to KIS, and one scan's token
 * ----------------------------------------------------------------
 */

/*
 * The headers of an API request, in the order sent: who asks (the token,
 * the app key and secret), the tr_id that names the request, the customer
 * type.  Returns how many were written to out (KIS_AUTH_MAX_HEADERS at
 * most); the values are the caller's strings.
 */
int
kis_auth_headers(const KisConfig *config, const char *token, const char *tr_id,
				 KisHeader *out)
{
	int			n = 0;

	out[n++] = (KisHeader) {"content-type: application/json; charset=utf-8", NULL};
	out[n++] = (KisHeader) {"authorization: Bearer ", token};
	out[n++] = (KisHeader) {"appkey: ", config->app_key};
	out[n++] = (KisHeader) {"appsecret: ", config->app_secret};
	out[n++] = (KisHeader) {"tr_id: ", tr_id};
	out[n++] = (KisHeader) {"custtype: P", NULL};
	return n;
}

/* Where a token is asked for (POST, kis_token_request_body) */
char *
kis_token_url(const KisConfig *config)
{
	return psprintf("%s/oauth2/tokenP", config->base_url);
}

/* The headers of the tokenP request, as kis_auth_headers */
int
kis_token_headers(KisHeader *out)
{
	out[0] = (KisHeader) {"content-type: application/json; charset=utf-8", NULL};
	return 1;
}

/* How many tokens one scan takes: more means KIS keeps rejecting them */
#define KIS_MAX_TOKENS_PER_SCAN	3
/* Waiting this long for another session's issuance is worth a NOTICE */
#define KIS_CLAIM_NOTICE_US		((int64) 1 * USECS_PER_SEC)

/*
 * How long our issuing claim lasts: a tokenP request gives up after
 * timeout_ms of the wall clock, and we notice it at most a moment later.
 * Nobody takes the claim over before, since KIS may still issue under it
 * (docs/tokens-and-rate.md).
 */
#define KIS_CLAIM_MARGIN_US		((int64) 5 * USECS_PER_SEC)

static int64
token_claim_us(int timeout_ms)
{
	return (int64) timeout_ms * 1000 + KIS_CLAIM_MARGIN_US;
}

/* A scan starts: the tokenP body is built in the current memory context */
void
kis_token_scan_begin(KisTokenScan *ts, const KisConfig *config)
{
	ts->request_body = kis_token_request_body(config);
}

/* A scan ends: wipe its copies, give up its claim.  Never throws. */
void
kis_token_scan_end(KisTokenScan *ts, KisAppSlot *slot)
{
	if (ts->request_body != NULL)
		explicit_bzero(ts->request_body, strlen(ts->request_body));
	explicit_bzero(ts->token, sizeof(ts->token));
	kis_token_release_claim(slot, ts->claim);
}

/*
 * The scan's token, as kis_token_acquire (READY: in ts->token; ISSUE: the
 * scan holds ts->claim and asks), saying once in a NOTICE when the wait is
 * a long one: another session's issuance taking more than a moment, or
 * KIS's issuance interval.
 */
KisTokenState
kis_token_for_scan(KisTokenScan *ts, KisAppSlot *slot, const uint8 *creds,
				   int timeout_ms, TimestampTz now, TimestampTz *wake)
{
	KisTokenState state;

	state = kis_token_acquire(slot, creds, now, token_claim_us(timeout_ms),
							  ts->token, &ts->generation, wake, &ts->claim);
	if (state != KIS_TOKEN_WAIT_CLAIM)
		ts->claim_wait_since = 0;
	if (state == KIS_TOKEN_WAIT_CLAIM)
	{
		/* usually a moment; up to the other's timeout_ms: say so once */
		if (ts->claim_wait_since == 0)
			ts->claim_wait_since = now;
		else if (!ts->told_claim_wait &&
				 now - ts->claim_wait_since >= KIS_CLAIM_NOTICE_US)
		{
			ts->told_claim_wait = true;
			ereport(NOTICE,
					(errmsg("kis_fdw waits for another session's request for an access token"),
					 errdetail("KIS issues one access token per app key per minute, so one session at a time asks for it; that request may take up to its server's timeout_ms.")));
		}
	}
	else if (state == KIS_TOKEN_WAIT_INTERVAL && !ts->told_wait)
	{
		/* a wait of up to a minute: say so once (it stays cancellable) */
		ts->told_wait = true;
		ereport(NOTICE,
				(errmsg("kis_fdw waits %d s before it may ask KIS for a new access token",
						(int) ((*wake - now + USECS_PER_SEC - 1) / USECS_PER_SEC)),
				 errdetail("KIS issues one access token per app key per minute; kis_fdw.token_issue_interval is %d s.",
						   kis_token_issue_interval)));
	}
	return state;
}

/*
 * The scan's tokenP request got no answer (the connection dropped,
 * timeout_ms passed): a passing failure like a data request's, asked again
 * after a moment, up to max_retries times.  An untrusted certificate will
 * not pass.  The claim is given up either way.
 */
KisTokenNext
kis_token_no_answer(KisTokenScan *ts, KisAppSlot *slot, bool untrusted,
					int max_retries, TimestampTz now)
{
	uint64		claim = ts->claim;

	ts->claim = 0;
	if (!untrusted && ++ts->failures <= max_retries)
	{
		kis_token_unanswered(slot, claim, now);
		return KIS_TOKEN_NEXT_AGAIN;
	}
	kis_token_release_claim(slot, claim);
	return KIS_TOKEN_NEXT_FAIL;
}

/*
 * The scan's tokenP answer (kis_token_accept): a token to use, a passing
 * failure to ask again for once the schedule allows (up to max_retries in
 * a row), or the end of the scan (kis_token_raise says why).
 */
KisTokenNext
kis_token_answer(KisTokenScan *ts, KisAppSlot *slot, const uint8 *creds,
				 long http_status, const char *body, size_t len,
				 int max_retries, TimestampTz now)
{
	uint64		claim = ts->claim;

	ts->claim = 0;
	ts->result = kis_token_accept(slot, creds, claim, http_status, body, len, now,
								  &ts->detail);
	if (ts->result == KIS_TOKEN_OK)
	{
		ts->failures = 0;
		return ++ts->issued > KIS_MAX_TOKENS_PER_SCAN ?
			KIS_TOKEN_NEXT_FAIL : KIS_TOKEN_NEXT_USE;
	}
	if (ts->result != KIS_TOKEN_FATAL && ++ts->failures <= max_retries)
		return KIS_TOKEN_NEXT_AGAIN;
	kis_slot_count(slot, KIS_CTR_ERR_FATAL, 1);
	return KIS_TOKEN_NEXT_FAIL;
}

/* The ERROR for a tokenP request that kis_token_no_answer gave up */
void
kis_token_raise_unreached(const char *why, const char *base_url, bool untrusted)
{
	ereport(ERROR,
			(errcode(ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
			 errmsg("could not reach KIS to obtain an access token"),
			 errdetail("%s (%s)", why, base_url),
			 untrusted ?
			 errhint("The server's certificate was not trusted: check the server's ca_file option, and that base_url names the host the certificate is for.") :
			 errhint("Check the server's base_url option and the network.")));
}

/* The ERROR for a tokenP answer that kis_token_answer ended the scan on */
void
kis_token_raise(KisTokenScan *ts)
{
	if (ts->result == KIS_TOKEN_OK)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
				 errmsg("KIS rejected %d access tokens in one scan",
						KIS_MAX_TOKENS_PER_SCAN),
				 errhint("Check this machine's clock, and whether another client keeps revoking the app key's tokens.")));
	ereport(ERROR,
			(errcode(ts->result == KIS_TOKEN_FATAL ?
					 ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION :
					 ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
			 errmsg("KIS did not issue an access token"),
			 errdetail("%s", kis_server_message(ts->detail)),
			 ts->result == KIS_TOKEN_TOO_SOON ?
			 errhint("KIS issues one token per minute per app key; another client may be using this key. Try again in a minute.") :
			 ts->result == KIS_TOKEN_RETRY ?
			 errhint("KIS's token service failed; try again later.") :
			 errhint("Check app_key and app_secret in the user mapping; real and virtual accounts have different keys.")));
}

/*
 * The ERROR for a request whose renewed token KIS rejected again (answer:
 * its summary).  KIS re-issues the same token for 6 hours
 * (docs/tokens-and-rate.md): a token handed back cannot be replaced.
 */
void
kis_token_raise_rejected(KisAppSlot *slot, uint64 generation, const char *answer)
{
	if (kis_token_handed_back(slot, generation))
		ereport(ERROR,
				(errcode(ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
				 errmsg("KIS handed back the access token it had just rejected"),
				 errdetail("%s", kis_server_message(answer)),
				 errhint("KIS re-issues the same token for 6 hours after issuing it, so asking again cannot replace a token it rejects. Check that app_key is for this server's environment (real or virtual); otherwise wait until 6 hours after the token was issued, or revoke it (KIS's /oauth2/revokeP), and run the query again.")));
	ereport(ERROR,
			(errcode(ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
			 errmsg("KIS rejected a newly issued access token"),
			 errdetail("%s", kis_server_message(answer))));
}
