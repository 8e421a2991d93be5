/*-------------------------------------------------------------------------
 *
 * json_pick.c
 *	  Parsing a KIS answer keeping, of each row object, only the fields a
 *	  reader uses.
 *
 * An answer has 80-odd fields a row and a table reads a few; jansson
 * builds every one, three allocations a field.  Here only what is kept
 * becomes a jansson value: every top-level member, except that the
 * objects that are rows (a top-level member that is an object, the objects
 * of a top-level member that is an array) keep only the picked fields,
 * each whole.  A text with no escape in its strings (most answers) is
 * read by a scanner of its own (the plain path); any other by PostgreSQL's
 * parser (pg_parse_json), through the same actions.
 *
 * jansson stays the judge of what an answer is: where the two parsers
 * could read a text differently (invalid UTF-8, nesting deeper than
 * PICK_MAX_DEPTH, a \u escape outside a UTF-8 database, an integer beyond
 * 64 bits, a number beyond a double, any syntax error, a document that is
 * not an object), this returns NULL and the caller parses the whole answer
 * with jansson.  docs/design.md,
 * "Parsing answers".
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include <jansson.h>

#include "common/jsonapi.h"
#include "mb/pg_wchar.h"
#include "utils/memutils.h"

#include "compat.h"
#include "json_pick.h"
#include "util.h"

#define PICK_MAX_DEPTH	16		/* KIS answers nest three deep */

struct KisJsonPick
{
	int			nfields;
	const char **fields;		/* sorted, distinct */
};

/* The parse under way */
typedef struct PickState
{
	const KisJsonPick *pick;
	json_t	   *root;
	json_t	   *containers[PICK_MAX_DEPTH + 1]; /* being built, by level */
	char		kinds[PICK_MAX_DEPTH + 1];	/* 'o' or 'a', by level */
	const char *key;			/* the field whose value comes next */
	int			level;			/* nesting: 1 inside the root object */
	int			skip_level;		/* > 0: in a field left out of the object
								 * at this level */
	bool		failed;
} PickState;

static int
compare_names(const void *a, const void *b)
{
	return strcmp(*(const char *const *) a, *(const char *const *) b);
}

/*
 * The fields to keep (C strings), in the current memory context; the list
 * is consumed
 */
KisJsonPick *
kis_json_pick_create(List *fields)
{
	KisJsonPick *pick = palloc(sizeof(KisJsonPick));
	List	   *names = kis_sort_unique_strings(fields);
	int			n = 0;
	ListCell   *lc;

	pick->fields = palloc(sizeof(char *) * Max(list_length(names), 1));
	foreach(lc, names)
		pick->fields[n++] = lfirst(lc);
	pick->nfields = n;
	list_free(names);
	return pick;
}

static bool
picked(const KisJsonPick *pick, const char *name)
{
	return bsearch(&name, pick->fields, pick->nfields, sizeof(char *),
				   compare_names) != NULL;
}

/*
 * No deeper than PICK_MAX_DEPTH (PostgreSQL's parser recurses, and raises
 * an ERROR where jansson would refuse gracefully), and with no \u escape
 * unless escapes_ok: in a backend, PostgreSQL's parser writes what one
 * stands for in the database encoding, jansson in UTF-8
 */
static bool
plain_enough(const char *s, size_t len, bool escapes_ok)
{
	int			depth = 0;
	bool		in_string = false;

	for (size_t i = 0; i < len; i++)
	{
		char		c = s[i];

		if (in_string)
		{
			if (c == '\\')
			{
				if (!escapes_ok && i + 1 < len && s[i + 1] == 'u')
					return false;
				i++;
			}
			else if (c == '"')
				in_string = false;
		}
		else if (c == '"')
			in_string = true;
		else if (c == '{' || c == '[')
		{
			if (++depth > PICK_MAX_DEPTH)
				return false;
		}
		else if (c == '}' || c == ']')
			depth--;
	}
	return true;
}

/* Is the object now at s->level a row? */
static bool
in_row(const PickState *s)
{
	return s->kinds[1] == 'o' &&
		((s->level == 2 && s->kinds[2] == 'o') ||
		 (s->level == 3 && s->kinds[2] == 'a' && s->kinds[3] == 'o'));
}

/* Put v (a new reference) into the container at parent, or make it the root */
static void
attach(PickState *s, int parent, json_t *v)
{
	if (v == NULL)
		s->failed = true;
	else if (parent == 0)
	{
		if (json_is_object(v) && s->root == NULL)
			s->root = v;
		else
		{
			s->failed = true;
			json_decref(v);
		}
	}
	else if (s->kinds[parent] == 'o')
	{
		if (json_object_set_new(s->containers[parent], s->key, v) != 0)
			s->failed = true;
	}
	else if (json_array_append_new(s->containers[parent], v) != 0)
		s->failed = true;
}

static void
open_container(PickState *s, char kind)
{
	json_t	   *v;

	if (++s->level > PICK_MAX_DEPTH)
	{
		s->failed = true;
		return;
	}
	if (s->skip_level > 0 || s->failed)
		return;
	/* the server's json_object() shadows jansson's (response.c) */
	v = kind == 'o' ? json_pack("{}") : json_array();
	s->kinds[s->level] = kind;
	s->containers[s->level] = v;
	attach(s, s->level - 1, v);
}

static KisJsonActionResult
object_start(void *state)
{
	open_container((PickState *) state, 'o');
	return KIS_JSON_ACTION_OK;
}

static KisJsonActionResult
array_start(void *state)
{
	open_container((PickState *) state, 'a');
	return KIS_JSON_ACTION_OK;
}

static KisJsonActionResult
container_end(void *state)
{
	((PickState *) state)->level--;
	return KIS_JSON_ACTION_OK;
}

static KisJsonActionResult
field_start(void *state, char *fname, bool isnull)
{
	PickState  *s = (PickState *) state;

	if (s->skip_level > 0 || s->failed)
		return KIS_JSON_ACTION_OK;
	if (in_row(s) && !picked(s->pick, fname))
		s->skip_level = s->level;
	else
		s->key = fname;
	return KIS_JSON_ACTION_OK;
}

static KisJsonActionResult
field_end(void *state, char *fname, bool isnull)
{
	PickState  *s = (PickState *) state;

	if (s->skip_level == s->level)
		s->skip_level = 0;
	return KIS_JSON_ACTION_OK;
}

/*
 * A number as jansson reads one: a 64-bit integer (*is_integer), else a
 * double; false for one jansson refuses
 */
static bool
read_number(const char *text, bool *is_integer, long long *i, double *d)
{
	char	   *end;

	errno = 0;
	*is_integer = strpbrk(text, ".eE") == NULL;
	if (*is_integer)
	{
		*i = strtoll(text, &end, 10);
		return errno == 0 && *end == '\0';
	}
	*d = strtod(text, &end);
	return *end == '\0' && !isinf(*d) && !isnan(*d);
}

static json_t *
number(const char *text)
{
	bool		is_integer;
	long long	i;
	double		d;

	if (!read_number(text, &is_integer, &i, &d))
		return NULL;
	return is_integer ? json_integer(i) : json_real(d);
}

static KisJsonActionResult
scalar(void *state, char *token, JsonTokenType type)
{
	PickState  *s = (PickState *) state;
	json_t	   *v;

	if (s->failed)
		return KIS_JSON_ACTION_OK;
	if (s->skip_level > 0)
	{
		bool		is_integer;
		long long	i;
		double		d;

		/* a number jansson refuses fails the answer, read or not */
		if (type == JSON_TOKEN_NUMBER && !read_number(token, &is_integer, &i, &d))
			s->failed = true;
		return KIS_JSON_ACTION_OK;
	}
	switch (type)
	{
		case JSON_TOKEN_STRING:
			v = json_string(token);
			break;
		case JSON_TOKEN_NUMBER:
			v = number(token);
			break;
		case JSON_TOKEN_TRUE:
			v = json_true();
			break;
		case JSON_TOKEN_FALSE:
			v = json_false();
			break;
		case JSON_TOKEN_NULL:
			v = json_null();
			break;
		default:
			v = NULL;
			break;
	}
	attach(s, s->level, v);
	return KIS_JSON_ACTION_OK;
}

/* ----------------------------------------------------------------
 * The plain path: most answers hold no escape at all, so their strings
 * are their bytes.  A scanner of its own reads those, calling the same
 * actions as pg_parse_json would, in the same order; it accepts only text
 * that is JSON by RFC 8259 and whose strings have no backslash (nor a
 * control character), and gives up on anything else, which the caller
 * then hands to pg_parse_json as before.  Tokens are made strings in place
 * in a copy of the text (buf), by a NUL over the byte after them.
 * ----------------------------------------------------------------
 */
typedef struct PlainScan
{
	const char *text;
	const char *p;				/* where the text is read */
	const char *end;
	char	   *buf;			/* its copy, written */
	PickState  *s;
} PlainScan;

static bool plain_value(PlainScan *ps);

static inline void
plain_space(PlainScan *ps)
{
	while (ps->p < ps->end &&
		   (*ps->p == ' ' || *ps->p == '\n' || *ps->p == '\r' || *ps->p == '\t'))
		ps->p++;
}

/* A string at p, with neither escape nor control character: its copy */
static char *
plain_string(PlainScan *ps)
{
	const char *start;
	const char *close;

	if (ps->p >= ps->end || *ps->p != '"')
		return NULL;
	start = ps->p + 1;
	close = memchr(start, '"', ps->end - start);
	if (close == NULL)
		return NULL;
	for (const char *c = start; c < close; c++)
	{
		if (*c == '\\' || (unsigned char) *c < 0x20)
			return NULL;
	}
	ps->buf[close - ps->text] = '\0';
	ps->p = close + 1;
	return ps->buf + (start - ps->text);
}

static inline bool
plain_digits(PlainScan *ps)
{
	const char *start = ps->p;

	while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9')
		ps->p++;
	return ps->p > start;
}

/* A number by the JSON grammar, made a string in buf */
static char *
plain_number(PlainScan *ps)
{
	const char *start = ps->p;

	if (ps->p < ps->end && *ps->p == '-')
		ps->p++;
	if (ps->p < ps->end && *ps->p == '0')
		ps->p++;
	else if (!plain_digits(ps))
		return NULL;
	if (ps->p < ps->end && *ps->p == '.')
	{
		ps->p++;
		if (!plain_digits(ps))
			return NULL;
	}
	if (ps->p < ps->end && (*ps->p == 'e' || *ps->p == 'E'))
	{
		ps->p++;
		if (ps->p < ps->end && (*ps->p == '+' || *ps->p == '-'))
			ps->p++;
		if (!plain_digits(ps))
			return NULL;
	}
	/* a NUL over the byte after it (read already; buf has len + 1 bytes) */
	ps->buf[ps->p - ps->text] = '\0';
	return ps->buf + (start - ps->text);
}

static bool
plain_literal(PlainScan *ps, const char *word, JsonTokenType type)
{
	size_t		n = strlen(word);

	if ((size_t) (ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
		return false;
	ps->p += n;
	scalar(ps->s, NULL, type);
	return true;
}

/* An object or an array at p, member by member */
static bool
plain_container(PlainScan *ps)
{
	bool		object = *ps->p == '{';
	char		close = object ? '}' : ']';

	ps->p++;
	if (object)
		object_start(ps->s);
	else
		array_start(ps->s);
	plain_space(ps);
	if (ps->p < ps->end && *ps->p == close)
	{
		ps->p++;
		container_end(ps->s);
		return true;
	}
	for (;;)
	{
		char	   *name = NULL;

		if (object)
		{
			if ((name = plain_string(ps)) == NULL)
				return false;
			plain_space(ps);
			if (ps->p >= ps->end || *ps->p != ':')
				return false;
			ps->p++;
			plain_space(ps);
			field_start(ps->s, name, false);
		}
		if (!plain_value(ps))
			return false;
		if (object)
			field_end(ps->s, name, false);
		plain_space(ps);
		if (ps->p >= ps->end)
			return false;
		if (*ps->p == close)
			break;
		if (*ps->p != ',')
			return false;
		ps->p++;
		plain_space(ps);
	}
	ps->p++;
	container_end(ps->s);
	return true;
}

/* One value at p (no space before it); false: not plain, or not JSON */
static bool
plain_value(PlainScan *ps)
{
	char	   *token;

	if (ps->p >= ps->end || ps->s->failed)
		return false;
	switch (*ps->p)
	{
		case '{':
		case '[':
			/* no deeper than open_container allows: a shallow recursion */
			if (ps->s->level >= PICK_MAX_DEPTH)
				return false;
			return plain_container(ps);
		case '"':
			if ((token = plain_string(ps)) == NULL)
				return false;
			scalar(ps->s, token, JSON_TOKEN_STRING);
			return true;
		case 't':
			return plain_literal(ps, "true", JSON_TOKEN_TRUE);
		case 'f':
			return plain_literal(ps, "false", JSON_TOKEN_FALSE);
		case 'n':
			return plain_literal(ps, "null", JSON_TOKEN_NULL);
		default:
			if ((token = plain_number(ps)) == NULL)
				return false;
			scalar(ps->s, token, JSON_TOKEN_NUMBER);
			return true;
	}
}

/*
 * Read body on the plain path into s; false when it is not plain (s may
 * then hold part of a document, which the caller drops)
 */
static bool
parse_plain(PickState *s, const char *body, size_t len)
{
	PlainScan	ps;
	bool		ok;

	ps.text = ps.p = body;
	ps.end = body + len;
	ps.buf = palloc(len + 1);
	memcpy(ps.buf, body, len);
	ps.buf[len] = '\0';
	ps.s = s;
	plain_space(&ps);
	ok = ps.p < ps.end && *ps.p == '{' && plain_value(&ps);
	if (ok)
	{
		plain_space(&ps);
		ok = ps.p == ps.end && !s->failed;
	}
	pfree(ps.buf);
	return ok;
}

/* Read body with pg_parse_json into s; false on a syntax error */
static bool
parse_with_postgres(PickState *s, const char *body, size_t len)
{
	MemoryContext scratch;
	MemoryContext old;
	JsonSemAction sem;
	JsonParseErrorType rc = JSON_SUCCESS;

	memset(&sem, 0, sizeof(sem));
	sem.semstate = s;
	sem.object_start = object_start;
	sem.object_end = container_end;
	sem.array_start = array_start;
	sem.array_end = container_end;
	sem.object_field_start = field_start;
	sem.object_field_end = field_end;
	sem.scalar = scalar;

	/* the parser's strings, gone when it is done */
	scratch = AllocSetContextCreate(CurrentMemoryContext, "kis_fdw json pick",
									ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(scratch);
	PG_TRY();
	{
		rc = pg_parse_json(kis_json_lex(body, len), &sem);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(old);
		if (s->root != NULL)
			json_decref(s->root);
		s->root = NULL;
		MemoryContextDelete(scratch);
		PG_RE_THROW();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
	MemoryContextDelete(scratch);
	return rc == JSON_SUCCESS;
}

/*
 * The answer in body, with only pick's fields in its rows; NULL when
 * jansson must read it instead (see above).  The caller owns the document.
 */
json_t *
kis_json_parse_picked(const char *body, size_t len, const KisJsonPick *pick)
{
	PickState  *s;
	json_t	   *root;
	bool		ok;

	if (len >= MaxAllocSize || !pg_verify_mbstr(PG_UTF8, body, (int) len, true))
		return NULL;

	s = palloc0(sizeof(PickState));
	s->pick = pick;
	ok = parse_plain(s, body, len);
	if (!ok)
	{
		/* what the plain path built goes: PostgreSQL's parser reads it all */
		if (s->root != NULL)
			json_decref(s->root);
		memset(s, 0, sizeof(PickState));
		s->pick = pick;
		if (!plain_enough(body, len, GetDatabaseEncoding() == PG_UTF8))
		{
			pfree(s);
			return NULL;
		}
		ok = parse_with_postgres(s, body, len);
	}

	root = s->root;
	if (!ok || s->failed)
	{
		if (root != NULL)
			json_decref(root);
		root = NULL;
	}
	pfree(s);
	return root;
}
