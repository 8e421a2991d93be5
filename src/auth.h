/*-------------------------------------------------------------------------
 *
 * auth.h
 *	  Access tokens: one per app key, issued at most once per interval and
 *	  shared through the app key's slot; and the hashes that name app keys
 *	  and credentials (auth.c).
 *
 * src/auth.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef KIS_AUTH_H
#define KIS_AUTH_H

#include "datatype/timestamp.h"

#include "shmem.h"

#define KIS_TOKEN_MAX 1024		/* KIS documents up to 350 characters */

struct KisConfig;

extern int	kis_token_issue_interval;	/* GUC, seconds */

extern bool kis_is_printable_ascii(const char *value);
extern void kis_hash_app_key(const char *app_key, uint8 *out);
extern void kis_hash_credentials(const struct KisConfig *config, uint8 *out);

typedef enum KisTokenState
{
	KIS_TOKEN_READY,			/* copied out */
	KIS_TOKEN_WAIT,				/* an issuance failed a moment ago */
	KIS_TOKEN_WAIT_CLAIM,		/* another session is issuing */
	KIS_TOKEN_WAIT_INTERVAL,	/* the issuance interval has not passed */
	KIS_TOKEN_ISSUE				/* the caller now holds the claim: issue */
} KisTokenState;

extern bool kis_token_vouches(KisAppSlot *slot, const uint8 *creds, TimestampTz now);
extern KisTokenState kis_token_acquire(KisAppSlot *slot, const uint8 *creds,
									   TimestampTz now, int64 claim_us, char *token,
									   uint64 *generation, TimestampTz *wake,
									   uint64 *claim);
extern TimestampTz kis_token_schedule_end(KisAppSlot *slot);
extern void kis_token_release_claim(KisAppSlot *slot, uint64 claim);
extern void kis_token_unanswered(KisAppSlot *slot, uint64 claim, TimestampTz now);
extern void kis_token_reset(KisAppSlot *slot);
extern void kis_token_invalidate(KisAppSlot *slot, uint64 generation);
extern bool kis_token_handed_back(KisAppSlot *slot, uint64 generation);

typedef enum KisTokenResult
{
	KIS_TOKEN_OK,
	KIS_TOKEN_TOO_SOON,			/* EGW00133: one token a minute; try later */
	KIS_TOKEN_RETRY,			/* transient (5xx, no answer): try again later */
	KIS_TOKEN_FATAL				/* credentials refused */
} KisTokenResult;

extern KisTokenResult kis_token_accept(KisAppSlot *slot, const uint8 *creds,
									   uint64 claim, long http_status,
									   const char *body, size_t len,
									   TimestampTz now, char **errdetail);

/* A request header: "name: " and its value, or a whole line (value NULL) */
typedef struct KisHeader
{
	const char *name;
	const char *value;
} KisHeader;

#define KIS_AUTH_MAX_HEADERS 6

extern int	kis_auth_headers(const struct KisConfig *config, const char *token,
							 const char *tr_id, KisHeader *out);
extern char *kis_token_url(const struct KisConfig *config);
extern char *kis_approval_url(const struct KisConfig *config);
extern char *kis_approval_request_body(const struct KisConfig *config);
extern int	kis_token_headers(KisHeader *out);

/* One scan's dealings with its app key's token (kis_token_for_scan) */
typedef struct KisTokenScan
{
	char	   *request_body;	/* tokenP's JSON (holds the secret), or NULL */
	char		token[KIS_TOKEN_MAX];	/* our copy of the key's token */
	uint64		generation;		/* of that token */
	uint64		claim;			/* the key's issuing claim we hold, or 0 */
	TimestampTz claim_wait_since;	/* waiting for another's issuance, or 0 */
	bool		told_wait;		/* the issuance-interval NOTICE was given */
	bool		told_claim_wait;	/* the other-session NOTICE was given */
	int			failures;		/* issuances failed in a row */
	int			issued;			/* tokens issued to this scan */
	KisTokenResult result;		/* of the last answer */
	char	   *detail;			/* what KIS answered, when it failed */
} KisTokenScan;

/* What a scan does after its tokenP request ended */
typedef enum KisTokenNext
{
	KIS_TOKEN_NEXT_USE,			/* issued: send with it */
	KIS_TOKEN_NEXT_AGAIN,		/* ask again when the schedule allows */
	KIS_TOKEN_NEXT_FAIL			/* end the scan (kis_token_raise*) */
} KisTokenNext;

extern void kis_token_scan_begin(KisTokenScan *ts, const struct KisConfig *config);
extern void kis_token_scan_end(KisTokenScan *ts, KisAppSlot *slot);
extern KisTokenState kis_token_for_scan(KisTokenScan *ts, KisAppSlot *slot,
										const uint8 *creds, int timeout_ms,
										TimestampTz now, TimestampTz *wake);
extern KisTokenNext kis_token_no_answer(KisTokenScan *ts, KisAppSlot *slot,
										bool untrusted, int max_retries,
										TimestampTz now);
extern KisTokenNext kis_token_answer(KisTokenScan *ts, KisAppSlot *slot,
									 const uint8 *creds, long http_status,
									 const char *body, size_t len, int max_retries,
									 TimestampTz now);
extern void kis_token_raise_unreached(const char *why, const char *base_url,
									  bool untrusted);
extern void kis_token_raise(KisTokenScan *ts);
extern void kis_token_raise_rejected(KisAppSlot *slot, uint64 generation,
									 const char *answer);

#endif							/* KIS_AUTH_H */
