/*-------------------------------------------------------------------------
 *
 * auth.c
 *	  KIS access tokens: the tokenP request body, reading its answer, and a
 *	  cache that keeps one token per (base URL, app key) for the backend's
 *	  life, so a session issues one token, not one per query.
 *
 * KIS allows one issuance per minute per app key and notifies the user's
 * phone at each one (kis-api.md §4.1), so issuing is rationed: at most once
 * per kis_fdw.token_issue_interval seconds per key from this backend, and
 * a token rejected as expired/invalid is replaced once, for every scan that
 * holds it (the generation number tells a stale rejection from a fresh one).
 *
 * The fetch engine performs the HTTP request; this file only knows what
 * to send and what the answer means.  Neither the app key, the secret nor
 * the token is ever put in a message.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <jansson.h>
#include <openssl/evp.h>

#include "lib/stringinfo.h"
#include "pgtime.h"
#include "utils/datetime.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "kis_fdw.h"

int			kis_token_issue_interval = 60;

struct KisTokenSlot
{
	uint8		slot_key[KIS_KEY_HASH_LEN]; /* SHA-256(base_url, key, secret) */
	char	   *token;			/* in TopMemoryContext, or NULL */
	TimestampTz issued_at;
	TimestampTz expires_at;
	TimestampTz last_attempt;	/* last tokenP call, successful or not */
	uint64		generation;		/* bumped at each new token */
};

static HTAB *token_slots = NULL;

static void
sha256(const void *data, size_t len, uint8 *out)
{
	unsigned int outlen;

	if (EVP_Digest(data, len, out, &outlen, EVP_sha256(), NULL) != 1)
		elog(ERROR, "kis_fdw: SHA-256 failed");
}

/* The key by which rate gates and statistics know an app key */
void
kis_hash_app_key(const char *app_key, uint8 *out)
{
	sha256(app_key, strlen(app_key), out);
}

/*
 * The cache slot of one set of credentials on one server: a token belongs
 * to an app key and secret pair, and real and virtual (and test) servers
 * each issue their own.  Only a hash of them is kept as the key.
 */
KisTokenSlot *
kis_token_slot(const KisConfig *config)
{
	uint8		slot_key[KIS_KEY_HASH_LEN];
	StringInfoData buf;
	KisTokenSlot *slot;
	bool		found;

	initStringInfo(&buf);
	appendBinaryStringInfo(&buf, config->base_url, strlen(config->base_url) + 1);
	appendBinaryStringInfo(&buf, config->app_key, strlen(config->app_key) + 1);
	appendBinaryStringInfo(&buf, config->app_secret, strlen(config->app_secret) + 1);
	sha256(buf.data, buf.len, slot_key);
	explicit_bzero(buf.data, buf.len);
	pfree(buf.data);

	if (token_slots == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = KIS_KEY_HASH_LEN;
		ctl.entrysize = sizeof(KisTokenSlot);
		ctl.hcxt = TopMemoryContext;
		token_slots = hash_create("kis_fdw tokens", 8, &ctl,
								  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	slot = hash_search(token_slots, slot_key, HASH_ENTER, &found);
	if (!found)
	{
		slot->token = NULL;
		slot->issued_at = slot->expires_at = slot->last_attempt = 0;
		slot->generation = 0;
	}
	return slot;
}

/*
 * The cached token if it is still good at "now", else NULL.  A token is
 * replaced a little before it expires: 5 minutes, or a tenth of its life
 * when that is shorter.
 */
const char *
kis_token_get(KisTokenSlot *slot, TimestampTz now, uint64 *generation)
{
	int64		margin;

	if (slot->token == NULL)
		return NULL;
	margin = Min((int64) 300 * USECS_PER_SEC,
				 (slot->expires_at - slot->issued_at) / 10);
	if (now >= slot->expires_at - margin)
		return NULL;
	*generation = slot->generation;
	return slot->token;
}

/* When this backend may call tokenP again for this key */
TimestampTz
kis_token_next_issue(KisTokenSlot *slot)
{
	if (slot->last_attempt == 0)
		return 0;
	return slot->last_attempt + (int64) kis_token_issue_interval * USECS_PER_SEC;
}

/* KIS rejected the token of this generation; forget it (once) */
void
kis_token_invalidate(KisTokenSlot *slot, uint64 generation)
{
	if (slot->token != NULL && slot->generation == generation)
	{
		explicit_bzero(slot->token, strlen(slot->token));
		pfree(slot->token);
		slot->token = NULL;
	}
}

/* The JSON body of POST /oauth2/tokenP, in the current memory context */
char *
kis_token_request_body(const KisConfig *config)
{
	json_t	   *req = json_pack("{s:s, s:s, s:s}",
								"grant_type", "client_credentials",
								"appkey", config->app_key,
								"appsecret", config->app_secret);
	char	   *body;

	if (req == NULL)
		elog(ERROR, "kis_fdw: could not build the token request");
	body = json_dumps(req, JSON_COMPACT);
	if (body == NULL)
		elog(ERROR, "kis_fdw: could not build the token request");
	return body;
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

/*
 * Read the tokenP answer.  On success the token is cached; otherwise
 * *errdetail says what KIS answered (its code and text, never our
 * credentials).
 */
KisTokenResult
kis_token_accept(KisTokenSlot *slot, long http_status, const char *body,
				 size_t len, TimestampTz now, char **errdetail)
{
	json_t	   *root = json_loadb(body, len, 0, NULL);
	const char *token;
	const char *code;
	const char *text;
	TimestampTz expires = 0;

	slot->last_attempt = now;
	*errdetail = NULL;

	token = json_string_value(json_object_get(root, "access_token"));
	if (http_status == 200 && token != NULL && token[0] != '\0')
	{
		const char *exp_text = json_string_value(json_object_get(root, "access_token_token_expired"));
		json_t	   *expires_in = json_object_get(root, "expires_in");

		if (exp_text != NULL)
			expires = parse_kst(exp_text);
		if (expires == 0 && json_is_number(expires_in))
			expires = now + (int64) (json_number_value(expires_in) * USECS_PER_SEC);
		if (expires == 0)
			expires = now + (int64) 12 * SECS_PER_HOUR * USECS_PER_SEC;

		if (slot->token != NULL)
		{
			explicit_bzero(slot->token, strlen(slot->token));
			pfree(slot->token);
		}
		slot->token = MemoryContextStrdup(TopMemoryContext, token);
		slot->issued_at = now;
		slot->expires_at = expires;
		slot->generation++;
		return KIS_TOKEN_OK;
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

	if (code != NULL && strcmp(code, "EGW00133") == 0)
		return KIS_TOKEN_RETRY;
	if (http_status >= 500 || http_status == 429 || root == NULL)
		return KIS_TOKEN_RETRY;
	return KIS_TOKEN_FATAL;
}
