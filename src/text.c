/*-------------------------------------------------------------------------
 *
 * text.c
 *	  KIS text in the database encoding.
 *
 * KIS answers in UTF-8, and much of what it says is Korean (docs/kis-api.md
 * §3).  Two conversions, chosen by what the text is for (docs/design.md,
 * "Encoding"):
 *
 *	kis_server_text		data: converted strictly, so a value the database
 *						encoding cannot hold is an ERROR (the caller's
 *						error context names the column), never a changed
 *						value;
 *	kis_server_message	messages and JSON text: converted where the encoding
 *						can hold the characters, and a character it cannot
 *						hold written as \uXXXX (a UTF-16 surrogate pair
 *						above U+FFFF), as JSON writes it.  The text stays
 *						readable, nothing is lost, and JSON stays valid JSON.
 *
 * In a UTF-8 database both return their argument; in SQL_ASCII the UTF-8
 * bytes are kept as they are, as PostgreSQL itself does there.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "common/string.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"

#include "text.h"

/* Data: the database encoding or an ERROR */
char *
kis_server_text(const char *utf8)
{
	int			encoding = GetDatabaseEncoding();

	if (utf8 == NULL || encoding == PG_UTF8 || encoding == PG_SQL_ASCII ||
		pg_is_ascii(utf8))
		return (char *) utf8;
	return pg_any_to_server(utf8, strlen(utf8), PG_UTF8);
}

/* One character the database encoding cannot hold, JSON style */
static void
append_escaped(StringInfo buf, const unsigned char *c, int len)
{
	pg_wchar	cp;

	if (!pg_utf8_islegal(c, len))
	{
		/* not UTF-8 after all: each byte, visibly */
		for (int i = 0; i < len; i++)
			appendStringInfo(buf, "\\x%02X", c[i]);
		return;
	}
	cp = utf8_to_unicode(c);
	if (cp > 0xFFFF)
	{
		cp -= 0x10000;
		appendStringInfo(buf, "\\u%04X\\u%04X",
						 (unsigned int) (0xD800 + (cp >> 10)),
						 (unsigned int) (0xDC00 + (cp & 0x3FF)));
	}
	else
		appendStringInfo(buf, "\\u%04X", (unsigned int) cp);
}

/*
 * Messages (and JSON text): never an encoding ERROR.  The conversion runs
 * over the longest convertible stretch at a time, so a text the encoding
 * can hold costs one conversion call.
 */
char *
kis_server_message(const char *utf8)
{
	int			encoding = GetDatabaseEncoding();
	const unsigned char *src = (const unsigned char *) utf8;
	int			srclen;
	Oid			proc;
	unsigned char *dest;
	StringInfoData buf;

	if (utf8 == NULL || encoding == PG_UTF8 || encoding == PG_SQL_ASCII ||
		pg_is_ascii(utf8))
		return (char *) utf8;

	srclen = strlen(utf8);
	proc = FindDefaultConversionProc(PG_UTF8, encoding);
	if (!OidIsValid(proc))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("default conversion function for encoding \"%s\" to \"%s\" does not exist",
						pg_encoding_to_char(PG_UTF8), pg_encoding_to_char(encoding))));

	dest = palloc((Size) srclen * MAX_CONVERSION_GROWTH + 1);
	initStringInfo(&buf);
	while (srclen > 0)
	{
		int			done;
		int			len;

		done = pg_do_encoding_conversion_buf(proc, PG_UTF8, encoding,
											 (unsigned char *) src, srclen,
											 dest, srclen * MAX_CONVERSION_GROWTH + 1,
											 true);
		appendStringInfoString(&buf, (char *) dest);
		src += done;
		srclen -= done;
		if (srclen == 0)
			break;
		/* the character at src could not be converted */
		len = Min(pg_utf_mblen(src), srclen);
		append_escaped(&buf, src, len);
		src += len;
		srclen -= len;
	}
	pfree(dest);
	return buf.data;
}
