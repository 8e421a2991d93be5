/*-------------------------------------------------------------------------
 *
 * declared.c
 *	  A KIS REST TR declared as a foreign table: the table's path, tr_id,
 *	  params, rows and paging options and its columns' param options,
 *	  checked when they are set and turned into an endpoint (KisEndpoint)
 *	  when the table is planned or scanned, so that everything else reads
 *	  it as it reads a catalogue entry.  docs/declared-tables.md says how a
 *	  declaration maps to requests.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "foreign/foreign.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/formatting.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "declared.h"
#include "endpoints.h"
#include "options.h"
#include "util.h"

#define KIS_PATH_PREFIX		"/uapi/"
#define KIS_NAME_MAX		64		/* a parameter, member or tr_id */
#define KIS_MAX_PARAMS		64
#define KIS_PARAMS_MAX		4096	/* bytes of the params option */
#define KIS_MAX_PARAM_COLUMNS	2	/* requests are (symbol, venue) pairs */

static const char *const paging_choices[] = {"none", "continuation", "date", NULL};

static bool
is_name(const char *s)
{
	size_t		len = strlen(s);

	return len >= 1 && len <= KIS_NAME_MAX &&
		strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") == len;
}

static int
hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * A params value as written (URL-encoded) decoded, or NULL if it is not
 * URL-encoded: only unreserved characters and %XX escapes of printable
 * ASCII (a value may become a column's, so it must be text in any
 * database encoding).
 */
static char *
url_decode(const char *value)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (const char *p = value; *p; p++)
	{
		if (*p == '%')
		{
			int			hi = hex_value(p[1]);
			int			lo = hi < 0 ? -1 : hex_value(p[2]);

			if (lo < 0 || hi * 16 + lo < 0x20 || hi * 16 + lo > 0x7e)
				return NULL;
			appendStringInfoChar(&buf, (char) (hi * 16 + lo));
			p += 2;
		}
		else if (strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~", *p) != NULL)
			appendStringInfoChar(&buf, *p);
		else
			return NULL;
	}
	return buf.data;
}

/* One name=value of the params option */
typedef struct DeclaredParam
{
	char	   *name;
	char	   *value;			/* decoded, or a placeholder */
	KisParamSource source;		/* literal, or an account placeholder */
} DeclaredParam;

/* The params entry of that name (in any case), or NULL */
static DeclaredParam *
param_named(List *params, const char *name)
{
	ListCell   *lc;

	foreach(lc, params)
	{
		DeclaredParam *p = lfirst(lc);

		if (pg_strcasecmp(p->name, name) == 0)
			return p;
	}
	return NULL;
}

/*
 * The params option as a list of DeclaredParam, in the order given; an
 * ERROR names what is wrong.
 */
static List *
parse_params(const char *text)
{
	List	   *params = NIL;
	char	   *copy = pstrdup(text);
	char	   *next = copy;

	if (strlen(text) > KIS_PARAMS_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("option \"params\" is longer than %d bytes", KIS_PARAMS_MAX)));

	while (next != NULL && *next != '\0')
	{
		char	   *item = next;
		char	   *amp = strchr(item, '&');
		char	   *eq;
		DeclaredParam *p = palloc0(sizeof(DeclaredParam));

		if (amp != NULL)
			*amp = '\0';
		next = amp ? amp + 1 : NULL;
		eq = strchr(item, '=');
		if (eq == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid value for option \"params\": \"%s\" has no \"=\"",
							kis_printable(item)),
					 errhint("Write the parameters as in a URL: NAME=value&NAME=value.")));
		*eq = '\0';
		if (!is_name(item))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid parameter name \"%s\" in option \"params\"", kis_printable(item)),
					 errhint("A parameter name is 1 to %d letters, digits or underscores.",
							 KIS_NAME_MAX)));
		p->name = item;
		if (strcmp(eq + 1, "{CANO}") == 0 || strcmp(eq + 1, "{ACNT_PRDT_CD}") == 0)
		{
			p->source = strcmp(eq + 1, "{CANO}") == 0 ? KIS_PARAM_CANO : KIS_PARAM_ACNT_PRDT_CD;
			p->value = eq + 1;
		}
		else if (strcmp(eq + 1, "{TODAY}") == 0)
		{
			p->source = KIS_PARAM_DATE_TO;	/* no date range: today in Korea */
			p->value = eq + 1;
		}
		else
		{
			p->source = KIS_PARAM_LITERAL;
			p->value = url_decode(eq + 1);
			if (p->value == NULL)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid value of parameter \"%s\" in option \"params\": \"%s\"",
								item, kis_printable(eq + 1)),
						 errdetail("Values are URL-encoded: letters, digits, - . _ ~ and %%XX escapes of printable ASCII; {CANO} and {ACNT_PRDT_CD} stand for the user mapping's account, {TODAY} for today's date in Korea."),
						 errhint("Write a space as %%20 and & as %%26.")));
		}
		if (param_named(params, p->name) != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("parameter \"%s\" appears twice in option \"params\"", p->name)));
		if (list_length(params) >= KIS_MAX_PARAMS)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("option \"params\" has more than %d parameters", KIS_MAX_PARAMS)));
		params = lappend(params, p);
	}
	return params;
}

/* The validator's check of one declaration option (options.c) */
void
kis_declared_check_option(const char *name, const char *value)
{
	if (strcmp(name, "path") == 0)
	{
		if (strncmp(value, KIS_PATH_PREFIX, strlen(KIS_PATH_PREFIX)) != 0 ||
			strstr(value, "..") != NULL || strstr(value, "//") != NULL ||
			strspn(value, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/-_.") != strlen(value))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid value for option \"path\": \"%s\"", kis_printable(value)),
					 errdetail("A path starts with %s and holds letters, digits, / - _ and single dots; no query string, fragment or \"..\": the host is always the server's base_url.",
							   KIS_PATH_PREFIX),
					 errhint("Write the path as KIS documents it, e.g. '/uapi/domestic-stock/v1/quotations/volume-rank'.")));
	}
	else if (strcmp(name, "tr_id") == 0 || strcmp(name, "tr_id_virtual") == 0 ||
			 strcmp(name, "rows") == 0 || strcmp(name, "param") == 0 ||
			 strcmp(name, "from_param") == 0 || strcmp(name, "to_param") == 0)
	{
		/* tr_id_virtual '': KIS offers the TR to real accounts only */
		if (!is_name(value) && !(strcmp(name, "tr_id_virtual") == 0 && value[0] == '\0'))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid value for option \"%s\": \"%s\"", name, kis_printable(value)),
					 errhint("It is 1 to %d letters, digits or underscores, as KIS names it.",
							 KIS_NAME_MAX)));
	}
	else if (strcmp(name, "params") == 0)
		(void) parse_params(value);
	else if (strcmp(name, "paging") == 0)
	{
		for (const char *const *c = paging_choices; *c; c++)
			if (strcmp(*c, value) == 0)
				return;
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid value for option \"paging\": \"%s\"", kis_printable(value)),
				 errhint("Valid values are: none, continuation, date.")));
	}
}

/*
 * The validator's check of a declared table's options together: path and
 * tr_id go together, and not with endpoint or with the options of the
 * catalogue's endpoints.
 */
void
kis_declared_check_table(List *options)
{
	bool		has_path = false;
	bool		has_tr_id = false;
	const char *catalogue_option = NULL;
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *def = lfirst_node(DefElem, lc);

		if (strcmp(def->defname, "path") == 0)
			has_path = true;
		else if (strcmp(def->defname, "tr_id") == 0)
			has_tr_id = true;
		else if (strcmp(def->defname, "endpoint") == 0 ||
				 strcmp(def->defname, "market") == 0 ||
				 strcmp(def->defname, "exchange") == 0 ||
				 strcmp(def->defname, "period") == 0 ||
				 strcmp(def->defname, "adjusted") == 0)
			catalogue_option = def->defname;
	}
	if (!has_path && !has_tr_id)
	{
		foreach(lc, options)
		{
			DefElem    *def = lfirst_node(DefElem, lc);

			if (strcmp(def->defname, "tr_id_virtual") == 0 || strcmp(def->defname, "params") == 0 ||
				strcmp(def->defname, "rows") == 0 || strcmp(def->defname, "paging") == 0 ||
				strcmp(def->defname, "page_rows") == 0)
				ereport(ERROR,
						(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
						 errmsg("option \"%s\" needs the options \"path\" and \"tr_id\"",
								def->defname),
						 errhint("A declared TR names its path and tr_id; a catalogue table names its endpoint.")));
		}
		return;
	}
	if (has_path != has_tr_id)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
				 errmsg("a declared TR needs both \"path\" and \"tr_id\""),
				 errhint("Add OPTIONS (path '/uapi/...', tr_id '...').")));
	if (catalogue_option != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"%s\" is not valid for a declared TR", catalogue_option),
				 errdetail("A foreign table reads either a catalogue endpoint (endpoint) or a declared TR (path, tr_id)."),
				 errhint("Put fixed parameters in option \"params\", or a column's values with column option \"param\".")));
}

/*
 * The validator's check of a column's options together: a param column
 * holds what its condition sends, so it reads no field; a date range's
 * column (from_param, to_param) reads its field and is no param column.
 */
void
kis_declared_check_column(List *options)
{
	bool		field = false;
	bool		param = false;
	bool		range = false;
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *def = lfirst_node(DefElem, lc);

		field |= strcmp(def->defname, "field") == 0;
		param |= strcmp(def->defname, "param") == 0;
		range |= strcmp(def->defname, "from_param") == 0 || strcmp(def->defname, "to_param") == 0;
	}
	if (param && field)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a column cannot have both options \"field\" and \"param\""),
				 errdetail("A param column holds the value its condition sends; it reads no field of the answer.")));
	if (param && range)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a column cannot have option \"param\" with \"from_param\" or \"to_param\""),
				 errdetail("from_param and to_param make a date column's range a request's dates; param sends its values as they are.")));
}

/* Is the foreign table a declared TR? (table options as stored) */
bool
kis_declared_is(List *options)
{
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *def = lfirst_node(DefElem, lc);

		if (strcmp(def->defname, "path") == 0)
			return true;
	}
	return false;
}

static const char *
option_value(List *options, const char *name, const char *if_absent)
{
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *def = lfirst_node(DefElem, lc);

		if (strcmp(def->defname, name) == 0)
			return defGetString(def);
	}
	return if_absent;
}

/* The value a param column has without a condition: its params entry */
static const char *
param_default(List *params, const char *name)
{
	DeclaredParam *p = param_named(params, name);

	return p != NULL && p->source == KIS_PARAM_LITERAL && p->value[0] != '\0' ? p->value : NULL;
}

/*
 * A date column with from_param or to_param: its conditions make the date
 * range, whose bounds fill those parameters; its field dates the rows.
 */
static void
date_column(Relation rel, Form_pg_attribute attr, DefElem *def, KisEndpoint *ep,
			const char **range_names)
{
	const char *column = NameStr(attr->attname);
	int			k = strcmp(def->defname, "from_param") == 0 ? 0 : 1;

	if (attr->atttypid != DATEOID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("column \"%s\" of foreign table \"%s\" has option \"%s\" but type %s",
						column, RelationGetRelationName(rel), def->defname,
						format_type_be(attr->atttypid)),
				 errhint("A date range is read from a column of type date.")));
	if (ep->key_columns[KIS_KEY_DATE] != NULL && strcmp(ep->key_columns[KIS_KEY_DATE], column) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("foreign table \"%s\" has two date range columns, \"%s\" and \"%s\"",
						RelationGetRelationName(rel), ep->key_columns[KIS_KEY_DATE], column)));
	ep->has_date = true;
	ep->key_columns[KIS_KEY_DATE] = pstrdup(column);
	ep->row_date_field = kis_column_field_option(RelationGetRelid(rel), attr->attnum);
	if (ep->row_date_field == NULL)
		ep->row_date_field = ep->key_columns[KIS_KEY_DATE];
	range_names[k] = pstrdup(defGetString(def));
}

/*
 * The endpoint of a declared TR, in the current memory context: its
 * options (table_options) and its columns' param options.  A third param
 * column, or a param column named twice, is an ERROR naming it.
 */
const KisEndpoint *
kis_declared_endpoint(Oid relid, List *table_options)
{
	KisEndpoint *ep = palloc0(sizeof(KisEndpoint));
	KisColumnDef *no_columns = palloc0(sizeof(KisColumnDef));
	List	   *params = parse_params(option_value(table_options, "params", ""));
	const char *param_names[KIS_MAX_PARAM_COLUMNS];
	int			nkeys = 0;
	KisParamDef *defs;
	int			n = 0;
	bool		has_fk = false;
	bool		has_nk = false;
	const char *range_names[2] = {NULL, NULL};	/* from_param, to_param */
	const char *paging;
	Relation	rel;
	TupleDesc	tupdesc;
	ListCell   *lc;

	ep->declared = true;
	ep->name = pstrdup(option_value(table_options, "tr_id", ""));
	ep->source = KIS_SOURCE_API;
	ep->path = pstrdup(option_value(table_options, "path", ""));
	ep->tr_id_real = ep->name;
	ep->tr_id_virtual = pstrdup(option_value(table_options, "tr_id_virtual", ep->name));
	if (ep->tr_id_virtual[0] == '\0')
		ep->tr_id_virtual = NULL;	/* real accounts only */
	ep->rows_member = pstrdup(option_value(table_options, "rows", "output"));
	ep->rows_shape = KIS_ROWS_ANY;
	ep->batch_size = 1;
	ep->columns = no_columns;
	paging = option_value(table_options, "paging", "none");
	ep->paging = strcmp(paging, "continuation") == 0 ? KIS_PAGING_CURSOR :
		strcmp(paging, "date") == 0 ? KIS_PAGING_DATE : KIS_PAGING_NONE;
	/* without page_rows a date page ends the paging only when it adds nothing */
	ep->page_rows = atoi(option_value(table_options, "page_rows", "1"));

	/* the param columns, in column order: the first keys like a symbol */
	rel = table_open(relid, NoLock);
	tupdesc = RelationGetDescr(rel);
	for (int i = 0; i < tupdesc->natts; i++)
	{
		Form_pg_attribute attr = TupleDescAttr(tupdesc, i);

		if (attr->attisdropped)
			continue;
		foreach(lc, GetForeignColumnOptions(relid, attr->attnum))
		{
			DefElem    *def = lfirst_node(DefElem, lc);

			if (strcmp(def->defname, "from_param") == 0 || strcmp(def->defname, "to_param") == 0)
			{
				date_column(rel, attr, def, ep, range_names);
				continue;
			}
			if (strcmp(def->defname, "param") != 0)
				continue;
			if (nkeys == KIS_MAX_PARAM_COLUMNS)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("foreign table \"%s\" has more than %d param columns",
								RelationGetRelationName(rel), KIS_MAX_PARAM_COLUMNS),
						 errdetail("Column \"%s\" is the third; kis_fdw sends one request per combination of at most two key columns.",
								   NameStr(attr->attname)),
						 errhint("Give the other parameters fixed values in the table's params option.")));
			for (int k = 0; k < nkeys; k++)
				if (pg_strcasecmp(param_names[k], defGetString(def)) == 0)
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("parameter \"%s\" is the param of two columns of foreign table \"%s\"",
									defGetString(def), RelationGetRelationName(rel))));
			if (attr->atttypid != TEXTOID && attr->atttypid != VARCHAROID &&
				attr->atttypid != BPCHAROID)
				ereport(ERROR,
						(errcode(ERRCODE_DATATYPE_MISMATCH),
						 errmsg("param column \"%s\" of foreign table \"%s\" has type %s",
								NameStr(attr->attname), RelationGetRelationName(rel),
								format_type_be(attr->atttypid)),
						 errdetail("Its conditions are sent to KIS as written, so they are compared as text."),
						 errhint("Declare the column as text.")));
			if (ep->paging == KIS_PAGING_CURSOR &&
				pg_strncasecmp(defGetString(def), "CTX_AREA_", 9) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("param column \"%s\" of foreign table \"%s\" fills %s, which paging 'continuation' fills",
								NameStr(attr->attname), RelationGetRelationName(rel),
								defGetString(def))));
			param_names[nkeys] = pstrdup(defGetString(def));
			ep->key_columns[nkeys] = pstrdup(NameStr(attr->attname));
			ep->key_defaults[nkeys] = param_default(params, param_names[nkeys]);
			nkeys++;
		}
	}
	table_close(rel, NoLock);

	ep->symbol_kind = nkeys > 0 ? KIS_SYMBOL_PARAM : KIS_SYMBOL_NONE;
	ep->has_market = nkeys > 1;
	if (ep->paging == KIS_PAGING_DATE && range_names[1] == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_ERROR),
				 errmsg("paging 'date' of foreign table \"%s\" needs a date column with option \"to_param\"",
						get_rel_name(relid)),
				 errdetail("Paging by date asks again with the day before the oldest row as the parameter to_param names."),
				 errhint("Add to_param (and from_param) to the table's date column.")));

	/* params in the order given; param columns fill theirs, or come last */
	defs = palloc0(sizeof(KisParamDef) * (list_length(params) + KIS_MAX_PARAM_COLUMNS + 5));
	foreach(lc, params)
	{
		DeclaredParam *p = lfirst(lc);
		KisParamDef *d = &defs[n++];

		d->name = p->name;
		d->source = p->source;
		d->literal = p->value;
		for (int k = 0; k < nkeys; k++)
			if (pg_strcasecmp(p->name, param_names[k]) == 0)
				d->source = k == 0 ? KIS_PARAM_SYMBOL : KIS_PARAM_MARKET;
		for (int k = 0; k < 2; k++)
			if (range_names[k] != NULL && pg_strcasecmp(p->name, range_names[k]) == 0)
				d->source = k == 0 ? KIS_PARAM_DATE_FROM : KIS_PARAM_DATE_TO;
		if (p->source == KIS_PARAM_CANO || p->source == KIS_PARAM_ACNT_PRDT_CD)
			ep->needs_account = true;
		if (ep->paging == KIS_PAGING_CURSOR && pg_strncasecmp(p->name, "CTX_AREA_FK", 11) == 0)
		{
			d->source = KIS_PARAM_CTX_FK;
			ep->ctx_fk_member = asc_tolower(p->name, strlen(p->name));
			has_fk = true;
		}
		else if (ep->paging == KIS_PAGING_CURSOR && pg_strncasecmp(p->name, "CTX_AREA_NK", 11) == 0)
		{
			d->source = KIS_PARAM_CTX_NK;
			ep->ctx_nk_member = asc_tolower(p->name, strlen(p->name));
			has_nk = true;
		}
	}
	for (int k = 0; k < nkeys; k++)
	{
		if (param_named(params, param_names[k]) == NULL)
		{
			defs[n].name = param_names[k];
			defs[n].source = k == 0 ? KIS_PARAM_SYMBOL : KIS_PARAM_MARKET;
			n++;
		}
	}
	for (int k = 0; k < 2; k++)
	{
		if (range_names[k] != NULL && param_named(params, range_names[k]) == NULL)
		{
			defs[n].name = range_names[k];
			defs[n].source = k == 0 ? KIS_PARAM_DATE_FROM : KIS_PARAM_DATE_TO;
			n++;
		}
	}
	if (ep->paging == KIS_PAGING_CURSOR && !has_fk)
		defs[n++] = (KisParamDef) {"CTX_AREA_FK100", KIS_PARAM_CTX_FK};
	if (ep->paging == KIS_PAGING_CURSOR && !has_nk)
		defs[n++] = (KisParamDef) {"CTX_AREA_NK100", KIS_PARAM_CTX_NK};
	ep->params = defs;
	return ep;
}
