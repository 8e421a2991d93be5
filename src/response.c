/*-------------------------------------------------------------------------
 *
 * response.c
 *	  Reading KIS answers: the envelope (rt_cd, msg_cd, msg1), what each
 *	  answer means for the request (done, retry, refresh the token, fail the
 *	  scan, fail this key), and JSON values as text for input functions.
 *
 * KIS sends business errors with HTTP 200 and with HTTP 500 alike
 * (docs/kis-api.md §3), so the body is read whatever the status, and the status
 * only decides when there is no envelope.
 *
 * jansson keeps its own (default) allocator: kis_fdw never calls
 * json_set_alloc_funcs, a process-wide setting that would change the
 * allocator of every other module of the backend using jansson.  Each
 * document is owned instead by the memory context that was current when
 * it was made: a reset callback releases it with that context, also on
 * ERROR (docs/design.md, "Resource ownership").  Text jansson writes is
 * copied into palloc'd memory at once.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <jansson.h>

#include "utils/memutils.h"

#include "json_pick.h"
#include "response.h"

/* What a msg_cd means when rt_cd is not "0" (docs/kis-api.md §7) */
typedef struct KisCodeClass
{
	const char *msg_cd;
	KisOutcome	outcome;
} KisCodeClass;

static const KisCodeClass kis_codes[] = {
	{"EGW00201", KIS_OUTCOME_RETRY_RATE},	/* too many requests per second */
	{"EGW00121", KIS_OUTCOME_TOKEN},	/* invalid token */
	{"EGW00122", KIS_OUTCOME_TOKEN},	/* token not found */
	{"EGW00123", KIS_OUTCOME_TOKEN},	/* expired token */
	{"EGW00001", KIS_OUTCOME_RETRY},	/* temporary error */
	{"EGW00002", KIS_OUTCOME_RETRY},	/* server error */
	{"EGW00202", KIS_OUTCOME_RETRY},	/* GW routing error */
	{"EGW00203", KIS_OUTCOME_RETRY},	/* OPS routing error */
	{"EGW00300", KIS_OUTCOME_RETRY},
	{"OPSQ0010", KIS_OUTCOME_RETRY},	/* resource shortage */
	{"OPSQ0011", KIS_OUTCOME_RETRY},
	{"EGW00003", KIS_OUTCOME_FATAL},	/* access denied */
	{"EGW00004", KIS_OUTCOME_FATAL},	/* customer not authorised */
	{"EGW00102", KIS_OUTCOME_FATAL},	/* app key missing */
	{"EGW00103", KIS_OUTCOME_FATAL},	/* invalid app key */
	{"EGW00104", KIS_OUTCOME_FATAL},	/* app secret missing */
	{"EGW00105", KIS_OUTCOME_FATAL},	/* invalid app secret */
	{"EGW00205", KIS_OUTCOME_FATAL},	/* bad credentials type */
	{"EGW00206", KIS_OUTCOME_FATAL},	/* API not subscribed */
	{"EGW00207", KIS_OUTCOME_FATAL},	/* IP not allowed */
	{"EGW00208", KIS_OUTCOME_FATAL},	/* bad custtype */
	{"EGW00213", KIS_OUTCOME_FATAL},	/* real tr_id on virtual */
	{"EGW02004", KIS_OUTCOME_FATAL},	/* virtual key on real domain */
	{NULL}
};

static KisOutcome
classify_code(const char *msg_cd)
{
	for (const KisCodeClass *c = kis_codes; c->msg_cd; c++)
	{
		if (strcmp(c->msg_cd, msg_cd) == 0)
			return c->outcome;
	}
	return KIS_OUTCOME_FAILED;
}

/* ----------------------------------------------------------------
 * Documents owned by memory contexts
 * ----------------------------------------------------------------
 */
static void
release_document(void *arg)
{
	json_decref((json_t *) arg);
}

/*
 * Hand doc (a new reference, or NULL) to the current memory context.  The
 * callback is allocated by the caller before doc exists, so that nothing
 * can fail between making the document and owning it.
 */
static json_t *
own_document(json_t *doc, MemoryContextCallback *cb)
{
	if (doc == NULL)
	{
		pfree(cb);
		return NULL;
	}
	cb->func = release_document;
	cb->arg = doc;
	MemoryContextRegisterResetCallback(CurrentMemoryContext, cb);
	return doc;
}

/* Parse a body; the document lives as long as the current memory context */
json_t *
kis_json_parse(const char *body, size_t len)
{
	MemoryContextCallback *cb = palloc(sizeof(MemoryContextCallback));

	return own_document(json_loadb(body, len, 0, NULL), cb);
}

/*
 * An answer made here rather than received (a live table's tick), meaning
 * rt_cd "0": the current memory context takes a reference to root.
 */
void
kis_response_of(KisResponse *resp, json_t *root)
{
	MemoryContextCallback *cb = palloc(sizeof(MemoryContextCallback));

	memset(resp, 0, sizeof(KisResponse));
	resp->http_status = 200;
	resp->outcome = KIS_OUTCOME_OK;
	resp->root = own_document(json_incref(root), cb);
}

/* Take ownership of a new document (NULL: out of memory) for the current memory context */
json_t *
kis_json_own(json_t *doc)
{
	MemoryContextCallback *cb = palloc(sizeof(MemoryContextCallback));

	if (doc == NULL)
	{
		pfree(cb);
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	}
	return own_document(doc, cb);
}

/*
 * An empty object owned like kis_json_parse's documents, made by jansson
 * (the server's json_object shadows jansson's)
 */
json_t *
kis_json_new_object(void)
{
	return kis_json_own(json_pack("{}"));
}

/* An empty array owned like kis_json_parse's documents */
json_t *
kis_json_new_array(void)
{
	MemoryContextCallback *cb = palloc(sizeof(MemoryContextCallback));
	json_t	   *array = own_document(json_array(), cb);

	if (array == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	return array;
}

/* A deep copy of value (or NULL when out of memory), owned likewise */
json_t *
kis_json_copy(json_t *value)
{
	MemoryContextCallback *cb = palloc(sizeof(MemoryContextCallback));

	return own_document(json_deep_copy(value), cb);
}

/* jansson's text of a value, in palloc'd memory */
static char *
dump_text(json_t *value, size_t flags)
{
	char	   *text = json_dumps(value, flags);
	char	   *copy;

	if (text == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	copy = palloc_extended(strlen(text) + 1, MCXT_ALLOC_NO_OOM | MCXT_ALLOC_HUGE);
	if (copy != NULL)
		strcpy(copy, text);
	free(text);
	if (copy == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	return copy;
}

/* A status that says "try again" when no envelope tells us more */
static bool
status_is_transient(long http_status)
{
	return http_status >= 500 || http_status == 429 || http_status == 408;
}

/*
 * Parse and classify one HTTP answer, its rows with pick's fields only
 * (NULL: all).  resp->root stays valid as long as the memory context that
 * was current here.
 */
void
kis_response_read(KisResponse *resp, long http_status, const char *body, size_t len,
				  const KisJsonPick *pick)
{
	const char *rt_cd;

	memset(resp, 0, sizeof(KisResponse));
	resp->http_status = http_status;
	if (pick != NULL)
	{
		MemoryContextCallback *cb = palloc(sizeof(MemoryContextCallback));

		resp->root = own_document(kis_json_parse_picked(body, len, pick), cb);
	}
	if (resp->root == NULL)
		resp->root = kis_json_parse(body, len);

	if (resp->root == NULL || !json_is_object(resp->root))
	{
		if (http_status == 401 || http_status == 403)
		{
			resp->outcome = KIS_OUTCOME_FATAL;
			resp->problem = psprintf("KIS refused access (HTTP %ld)", http_status);
		}
		else
		{
			/* a gateway page, a truncated or garbled body: transient */
			resp->outcome = KIS_OUTCOME_RETRY;
			resp->problem = psprintf("HTTP %ld with a body that is not a KIS answer",
									 http_status);
		}
		return;
	}

	rt_cd = json_string_value(json_object_get(resp->root, "rt_cd"));
	resp->msg_cd = json_string_value(json_object_get(resp->root, "msg_cd"));
	resp->msg1 = json_string_value(json_object_get(resp->root, "msg1"));

	if (rt_cd == NULL)
	{
		resp->outcome = status_is_transient(http_status) ?
			KIS_OUTCOME_RETRY : KIS_OUTCOME_FAILED;
		resp->problem = psprintf("HTTP %ld with JSON that has no rt_cd", http_status);
	}
	else if (strcmp(rt_cd, "0") == 0)
		resp->outcome = KIS_OUTCOME_OK;
	else if (resp->msg_cd != NULL)
		resp->outcome = classify_code(resp->msg_cd);
	else
		resp->outcome = status_is_transient(http_status) ?
			KIS_OUTCOME_RETRY : KIS_OUTCOME_FAILED;
}

/* "EGW00201: msg" or our own description, for errdetail and the error column */
char *
kis_response_summary(const KisResponse *resp)
{
	if (resp->msg_cd != NULL && resp->outcome != KIS_OUTCOME_OK)
	{
		const char *msg1 = resp->msg1 ? resp->msg1 : "";
		size_t		len = strlen(msg1);

		/* KIS pads msg1 with spaces */
		while (len > 0 && msg1[len - 1] == ' ')
			len--;
		return psprintf("%s: %.*s", resp->msg_cd, (int) len, msg1);
	}
	if (resp->problem != NULL)
		return pstrdup(resp->problem);
	return psprintf("HTTP %ld", resp->http_status);
}

/*
 * A JSON value as the text an input function reads; NULL for JSON null,
 * a missing member and "" (KIS sends "" for "no value").
 */
static char *
json_value_text(json_t *value)
{
	if (value == NULL)
		return NULL;
	switch (json_typeof(value))
	{
		case JSON_STRING:
			if (json_string_length(value) == 0)
				return NULL;
			return pnstrdup(json_string_value(value), json_string_length(value));
		case JSON_INTEGER:
			return psprintf("%" JSON_INTEGER_FORMAT, json_integer_value(value));
		case JSON_REAL:
			return psprintf("%.15g", json_real_value(value));
		case JSON_TRUE:
			return pstrdup("true");
		case JSON_FALSE:
			return pstrdup("false");
		case JSON_NULL:
			return NULL;
		case JSON_OBJECT:
		case JSON_ARRAY:
			return dump_text(value, JSON_COMPACT | JSON_ENCODE_ANY);
	}
	return NULL;
}

/* One field of a row as text (from extra when the row lacks it), or NULL */
char *
kis_row_field_text(json_t *row, json_t *extra, const char *field)
{
	json_t	   *value = json_object_get(row, field);

	if (value == NULL && extra != NULL)
		value = json_object_get(extra, field);
	return json_value_text(value);
}

static const char *
after_blanks(const char *text)
{
	while (*text == ' ')
		text++;
	return text;
}

/*
 * Direction codes: KIS's sign fields (prdy_vrss_sign, overseas "sign") say
 * 1 upper limit, 2 up, 3 flat, 4 lower limit, 5 down; real overseas answers
 * also carry "0" on a flat day (docs/kis-answers.md).
 */
KisDirection
kis_sign_code_direction(const char *code)
{
	code = code ? after_blanks(code) : "";
	if (code[0] == '\0' || (code[1] != '\0' && code[1] != ' '))
		return KIS_DIR_UNKNOWN;
	switch (code[0])
	{
		case '1':
		case '2':
			return KIS_DIR_UP;
		case '4':
		case '5':
			return KIS_DIR_DOWN;
		case '0':
		case '3':
			return KIS_DIR_FLAT;
	}
	return KIS_DIR_UNKNOWN;
}

/* The sign a number's text carries: "-4.17" down, "+1.44" up, " 0.00" none */
KisDirection
kis_signed_text_direction(const char *text)
{
	text = text ? after_blanks(text) : "";
	if (*text == '-')
		return KIS_DIR_DOWN;
	if (*text == '+')
		return KIS_DIR_UP;
	return KIS_DIR_UNKNOWN;
}

/*
 * An unsigned magnitude with the direction put in: "45.5000" going down is
 * "-45.5000".  Text that carries a sign, a zero and anything going up stay
 * as they are (numeric and integer input accept the leading blank and '+'
 * KIS sends).
 */
char *
kis_text_with_direction(char *text, KisDirection dir)
{
	const char *digits;

	if (text == NULL || dir != KIS_DIR_DOWN)
		return text;
	digits = after_blanks(text);
	if (kis_signed_text_direction(digits) != KIS_DIR_UNKNOWN ||
		strpbrk(digits, "123456789") == NULL)
		return text;
	return psprintf("-%s", digits);
}

/* The whole row as compact JSON text */
char *
kis_row_raw_text(json_t *row)
{
	return dump_text(row, JSON_COMPACT);
}
