/*-------------------------------------------------------------------------
 *
 * response.h
 *	  The KIS answer envelope: its JSON, its classification (retry, token,
 *	  fatal, this key's failure) and its fields' text (response.c).
 *
 * src/response.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef KIS_RESPONSE_H
#define KIS_RESPONSE_H

/*
 * jansson's document type, declared here so that files which include
 * PostgreSQL's fmgrprotos.h (it has a json_object of its own) need not
 * include jansson.h.
 */
typedef struct json_t json_t;

/* the fields of rows a reader keeps (json_pick.c) */
typedef struct KisJsonPick KisJsonPick;

typedef enum KisOutcome
{
	KIS_OUTCOME_OK,				/* rt_cd "0" with a row */
	KIS_OUTCOME_RETRY_RATE,		/* EGW00201: slow down, try again */
	KIS_OUTCOME_RETRY,			/* transient: network, 5xx, EGW00001... */
	KIS_OUTCOME_TOKEN,			/* token expired/invalid: refresh, resend */
	KIS_OUTCOME_FATAL,			/* credentials/config: fail the whole scan */
	KIS_OUTCOME_FAILED			/* this key failed: apply on_error */
} KisOutcome;

/* The problem text of a symbol KIS does not know */
#define KIS_NOT_LISTED "not listed"

typedef struct KisResponse
{
	KisOutcome	outcome;
	long		http_status;
	json_t	   *root;			/* parsed body, or NULL */
	const char *msg_cd;			/* points into root, or NULL */
	const char *msg1;
	char	   *problem;		/* our words for what went wrong, or NULL */
	const char *body;			/* a download's bytes (root is NULL) */
	size_t		body_len;
} KisResponse;

extern json_t *kis_json_parse(const char *body, size_t len);
extern json_t *kis_json_new_array(void);
extern json_t *kis_json_copy(json_t *value);
extern void kis_response_read(KisResponse *resp, long http_status,
							  const char *body, size_t len,
							  const KisJsonPick *pick);
extern void kis_response_of(KisResponse *resp, json_t *root);
extern json_t *kis_json_new_object(void);
extern json_t *kis_json_own(json_t *doc);
extern char *kis_response_summary(const KisResponse *resp);
extern char *kis_row_field_text(json_t *row, json_t *extra, const char *field);

/* Which way a value went, as KIS tells it */
typedef enum KisDirection
{
	KIS_DIR_UNKNOWN,			/* no sign, no code, or one we do not know */
	KIS_DIR_UP,
	KIS_DIR_DOWN,
	KIS_DIR_FLAT
} KisDirection;

extern KisDirection kis_sign_code_direction(const char *code);
extern KisDirection kis_signed_text_direction(const char *text);
extern char *kis_text_with_direction(char *text, KisDirection dir);
extern char *kis_row_raw_text(json_t *row);

#endif							/* KIS_RESPONSE_H */
