/*-------------------------------------------------------------------------
 *
 * master.c
 *	  KIS's stock master files (KIS_SOURCE_MASTER_FILE): the zip archive KIS
 *	  publishes for each market, and the fixed-width CP949 lines inside it,
 *	  turned into one JSON object per listing so that the rest of the FDW
 *	  reads them like any answer (friendly columns, field options, raw).
 *
 * The archive is untrusted input: every offset and size is checked against
 * the bytes received, the member may be stored or deflated (zlib, raw
 * inflate) and must inflate to exactly its declared size and CRC.  What it
 * may cost is capped before anything is inflated or parsed (member size,
 * inflate ratio, then rows and unreadable lines): over a cap is an ERROR
 * naming it, but for too many unreadable lines, which fail the market like
 * an unreadable archive (docs/security.md).  zlib allocates through palloc (without
 * throwing), and the rows are one jansson document owned by the current
 * memory context (kis_json_new_array), so nothing outlives the answer's
 * context, an ERROR included.
 *
 * Layouts, their sources and what is uncertain: docs/new-tables.md.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <zlib.h>

#include <jansson.h>

#include "mb/pg_wchar.h"
#include "utils/memutils.h"

#include "master.h"
#include "response.h"

/* KIS's files: a few thousand lines, about 1 MB, deflated about 10 to 1 */
#define KIS_MASTER_MAX_BYTES	(16 * 1024 * 1024)	/* an inflated member */
#define KIS_MASTER_MAX_RATIO	100 /* inflated bytes per deflated byte */
#define KIS_MASTER_MAX_ROWS		20000
#define KIS_MASTER_MAX_PROBLEMS 100 /* unreadable lines */
#define KIS_MASTER_MAX_LINE		4096

#define ZIP_LOCAL_SIG		0x04034b50
#define ZIP_CENTRAL_SIG		0x02014b50
#define ZIP_END_SIG			0x06054b50
#define ZIP_END_LEN			22
#define ZIP_CENTRAL_LEN		46
#define ZIP_LOCAL_LEN		30

static uint32
get_u16(const unsigned char *p)
{
	return (uint32) p[0] | ((uint32) p[1] << 8);
}

static uint32
get_u32(const unsigned char *p)
{
	return (uint32) p[0] | ((uint32) p[1] << 8) | ((uint32) p[2] << 16) |
		((uint32) p[3] << 24);
}

/* zlib's allocator: the current memory context, NULL rather than ERROR */
static voidpf
zalloc_palloc(voidpf opaque, uInt items, uInt size)
{
	if (size != 0 && items > MaxAllocSize / size)
		return Z_NULL;
	return MemoryContextAllocExtended(CurrentMemoryContext, (Size) items * size,
									  MCXT_ALLOC_NO_OOM);
}

static void
zfree_palloc(voidpf opaque, voidpf address)
{
	if (address != NULL)
		pfree(address);
}

/* Raw deflate data into exactly out_len bytes; false if it does not fit */
static bool
inflate_exactly(const unsigned char *in, size_t in_len, char *out, size_t out_len)
{
	z_stream	zs;
	int			rc;

	memset(&zs, 0, sizeof(zs));
	zs.zalloc = zalloc_palloc;
	zs.zfree = zfree_palloc;
	if (inflateInit2(&zs, -MAX_WBITS) != Z_OK)
		return false;
	zs.next_in = (Bytef *) in;
	zs.avail_in = (uInt) in_len;
	zs.next_out = (Bytef *) out;
	zs.avail_out = (uInt) out_len;
	rc = inflate(&zs, Z_FINISH);
	inflateEnd(&zs);
	return rc == Z_STREAM_END && zs.total_out == out_len;
}

/*
 * Where a zip archive's end record is (in the last 22 + 65535 bytes: it
 * may carry a comment), its central directory within the archive; NULL if
 * the bytes are not a whole archive.
 */
static const char *
zip_end(const unsigned char *p, size_t size, size_t *end)
{
	size_t		lowest;

	if (size < ZIP_END_LEN)
		return "not a zip archive (no end of central directory)";
	lowest = size - ZIP_END_LEN > 65535 ? size - ZIP_END_LEN - 65535 : 0;
	for (*end = size - ZIP_END_LEN + 1; (*end)-- > lowest;)
	{
		if (get_u32(p + *end) == ZIP_END_SIG &&
			*end + ZIP_END_LEN + get_u16(p + *end + 20) == size)
		{
			size_t		cd_size = get_u32(p + *end + 12);
			size_t		cd_off = get_u32(p + *end + 16);

			if (cd_off > *end || cd_size > *end - cd_off)
				return "a zip archive whose central directory lies outside it";
			return NULL;
		}
	}
	return "not a zip archive (no end of central directory)";
}

/* Whether data looks like a whole zip archive (worth keeping for others) */
bool
kis_zip_is_whole(const char *data, size_t size)
{
	size_t		end;

	return zip_end((const unsigned char *) data, size, &end) == NULL;
}

/*
 * The member of a zip archive whose name ends in suffix (the first, if
 * suffix is NULL), as a palloc'd buffer of *len bytes plus a terminating
 * zero.  NULL with *problem set when the archive is not what it should be;
 * an ERROR when it is over a limit.
 */
char *
kis_zip_member(const char *data, size_t size, const char *suffix,
			   size_t *len, const char **problem)
{
	const unsigned char *p = (const unsigned char *) data;
	size_t		end = 0;
	uint32		entries;
	size_t		cd_off;
	size_t		cd_size;
	size_t		pos;

	*len = 0;
	if ((*problem = zip_end(p, size, &end)) != NULL)
		return NULL;
	entries = get_u16(p + end + 10);
	cd_size = get_u32(p + end + 12);
	cd_off = get_u32(p + end + 16);

	pos = cd_off;
	for (uint32 i = 0; i < entries; i++)
	{
		uint32		method,
					crc,
					csize,
					usize,
					name_len,
					extra_len,
					comment_len,
					local;
		const char *name;
		size_t		data_off;
		char	   *out;

		if (cd_off + cd_size - pos < ZIP_CENTRAL_LEN || get_u32(p + pos) != ZIP_CENTRAL_SIG)
			break;
		method = get_u16(p + pos + 10);
		crc = get_u32(p + pos + 16);
		csize = get_u32(p + pos + 20);
		usize = get_u32(p + pos + 24);
		name_len = get_u16(p + pos + 28);
		extra_len = get_u16(p + pos + 30);
		comment_len = get_u16(p + pos + 32);
		local = get_u32(p + pos + 42);
		name = data + pos + ZIP_CENTRAL_LEN;
		if (cd_off + cd_size - pos - ZIP_CENTRAL_LEN < (size_t) name_len + extra_len + comment_len)
			break;
		pos += ZIP_CENTRAL_LEN + name_len + extra_len + comment_len;

		if (suffix != NULL &&
			(name_len < strlen(suffix) ||
			 memcmp(name + name_len - strlen(suffix), suffix, strlen(suffix)) != 0))
			continue;

		/* the local header says where the data starts */
		if (local > cd_off || cd_off - local < ZIP_LOCAL_LEN ||
			get_u32(p + local) != ZIP_LOCAL_SIG)
		{
			*problem = "a zip member whose local header is missing";
			return NULL;
		}
		data_off = (size_t) local + ZIP_LOCAL_LEN + get_u16(p + local + 26) +
			get_u16(p + local + 28);
		if (data_off > cd_off || csize > cd_off - data_off)
		{
			*problem = "a zip member that lies outside the archive";
			return NULL;
		}
		if (usize > KIS_MASTER_MAX_BYTES)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("a stock master file is larger than kis_fdw's limit of %d bytes",
							KIS_MASTER_MAX_BYTES),
					 errdetail("Its member *%s says it inflates to %u bytes.",
							   suffix ? suffix : "", usize)));
		if (method != 0 && usize / KIS_MASTER_MAX_RATIO > csize)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("a stock master file inflates more than kis_fdw's limit of %d to 1",
							KIS_MASTER_MAX_RATIO),
					 errdetail("Its member *%s says %u bytes inflate to %u bytes.",
							   suffix ? suffix : "", csize, usize)));
		out = MemoryContextAllocExtended(CurrentMemoryContext, (Size) usize + 1,
										 MCXT_ALLOC_NO_OOM);
		if (out == NULL)
		{
			*problem = "out of memory while reading a zip member";
			return NULL;
		}
		if (method == 0)
		{
			if (csize != usize)
			{
				*problem = "a stored zip member whose sizes differ";
				return NULL;
			}
			memcpy(out, data + data_off, usize);
		}
		else if (method == 8)
		{
			if (!inflate_exactly(p + data_off, csize, out, usize))
			{
				*problem = "a zip member that does not inflate to its declared size";
				return NULL;
			}
		}
		else
		{
			*problem = psprintf("a zip member compressed with method %u (only stored and deflate are read)",
								method);
			return NULL;
		}
		if (crc32(0L, (const Bytef *) out, usize) != crc)
		{
			*problem = "a zip member whose CRC-32 does not match";
			return NULL;
		}
		out[usize] = '\0';
		*len = usize;
		return out;
	}
	*problem = suffix ? psprintf("the zip archive has no member named *%s", suffix) :
		"the zip archive has no member";
	return NULL;
}

/* ----------------------------------------------------------------
 * The fixed-width lines
 * ----------------------------------------------------------------
 */

/* One field of a line's fixed tail: KIS's field name, offset, width */
typedef struct KisMasterField
{
	const char *field;
	int			offset;
	int			width;
} KisMasterField;

/*
 * A market's file: its name, the length of the fixed tail that ends each
 * line, and where the fields read are in that tail.  Offsets from KIS's
 * headers and OTA's parsers (docs/new-tables.md).  Every line is exactly
 * the head (short code 9 bytes, standard code 12, the name 40, blank-padded
 * CP949) followed by the tail: nothing is stripped, and a line of any other
 * length is an error, so that a change of layout at KIS never shifts fields.
 */
#define KIS_MASTER_HEAD		61
#define KIS_MASTER_NAME		21	/* the name's offset; 40 bytes */

typedef struct KisMasterLayout
{
	const char *market;
	const char *file;
	int			tail;
	int			offsets[12];
} KisMasterLayout;

static const char *const master_fields[12] = {
	"scrt_grp_cls_code", "stck_sdpr", "frml_mrkt_deal_qty_unit", "trht_yn",
	"sltr_yn", "mang_issu_yn", "mrkt_alrm_cls_code", "stck_fcam",
	"stck_lstn_date", "lstn_stcn", "prst_cls_code", "prdy_avls_scal"
};
static const int master_widths[12] = {2, 9, 5, 1, 1, 1, 2, 12, 8, 15, 1, 9};

static const KisMasterLayout master_layouts[] = {
	{"KOSPI", "kospi_code.mst.zip", 227,
	{0, 41, 50, 60, 61, 62, 63, 93, 105, 113, 158, 212}},
	{"KOSDAQ", "kosdaq_code.mst.zip", 221,
	{0, 36, 45, 55, 56, 57, 58, 88, 100, 108, 153, 206}},
	{"KONEX", "konex_code.mst.zip", 184,
	{0, 2, 11, 21, 22, 23, 24, 54, 66, 74, 119, 172}},
	{NULL}
};

/* The markets of the master files, for the "market" key */
const char *const kis_master_markets[] = {"KOSPI", "KOSDAQ", "KONEX", NULL};

static const KisMasterLayout *
master_layout(const char *market)
{
	for (const KisMasterLayout *l = master_layouts; l->market; l++)
	{
		if (strcmp(l->market, market) == 0)
			return l;
	}
	return NULL;
}

/* The file name of a market's master file, or NULL */
const char *
kis_master_file(const char *market)
{
	const KisMasterLayout *l = master_layout(market);

	return l ? l->file : NULL;
}

/*
 * An empty JSON object.  jansson's json_object() cannot be called from a
 * backend: the server's own json_object (an SQL function) takes its name
 * when the library is loaded.  jansson's parser makes one for us.
 */
static json_t *
new_object(void)
{
	return json_loadb("{}", 2, 0, NULL);
}

/* A field's bytes without surrounding blanks, as a JSON string */
static bool
set_trimmed(json_t *obj, const char *name, const char *s, int len)
{
	while (len > 0 && *s == ' ')
		s++, len--;
	while (len > 0 && s[len - 1] == ' ')
		len--;
	return json_object_set_new(obj, name, json_stringn(s, len)) == 0;
}

/*
 * One line as a JSON object (UTF-8), or NULL with *problem set.  The name
 * is CP949 (PostgreSQL's UHC); the other fields are ASCII.
 */
static json_t *
master_row(const KisMasterLayout *l, const char *line, int len, const char **problem)
{
	json_t	   *row;
	const char *tail = line + KIS_MASTER_HEAD;
	const char *name_bytes = line + KIS_MASTER_NAME;
	int			name_len = KIS_MASTER_HEAD - KIS_MASTER_NAME;
	char	   *name;

	if (len != KIS_MASTER_HEAD + l->tail)
	{
		*problem = psprintf("%d bytes where a %s line has %d: KIS may have changed the file's layout",
							len, l->market, KIS_MASTER_HEAD + l->tail);
		return NULL;
	}
	for (const char *c = line; c < line + len; c++)
	{
		/* only the name may hold bytes past ASCII */
		if ((c < name_bytes || c >= tail) && (*c & 0x80 || *c == '\0'))
		{
			*problem = "non-ASCII bytes outside the name";
			return NULL;
		}
	}
	if (pg_encoding_verifymbstr(PG_UHC, name_bytes, name_len) != name_len)
	{
		*problem = "a name that is not CP949";
		return NULL;
	}
	name = (char *) pg_do_encoding_conversion((unsigned char *) name_bytes, name_len,
											  PG_UHC, PG_UTF8);
	if (name == name_bytes)		/* nothing to convert: not terminated */
		name = pnstrdup(name_bytes, name_len);

	/* from here to the caller's append only jansson runs: no ERROR leaks it */
	row = new_object();
	if (row == NULL ||
		!set_trimmed(row, "mksc_shrn_iscd", line, 9) ||
		!set_trimmed(row, "stnd_iscd", line + 9, 12) ||
		!set_trimmed(row, "hts_kor_isnm", name, (int) strlen(name)))
	{
		json_decref(row);
		*problem = "out of memory";
		return NULL;
	}
	for (int i = 0; i < lengthof(master_fields); i++)
	{
		if (!set_trimmed(row, master_fields[i], tail + l->offsets[i], master_widths[i]))
		{
			json_decref(row);
			*problem = "out of memory";
			return NULL;
		}
	}
	return row;
}

/*
 * The listings of a market's master file (the zip archive as received): a
 * JSON array of row objects, and a list of the problems of lines that
 * could not be read (char *, "line N: ...").  NULL with *problem set when
 * the archive itself cannot be read.
 */
json_t *
kis_master_rows(const char *market, const char *zip, size_t zip_len,
				List **line_problems, const char **problem)
{
	const KisMasterLayout *l = master_layout(market);
	char	   *member;
	size_t		len;
	char	   *text;
	json_t	   *rows;
	int			lineno = 0;

	*line_problems = NIL;
	if (l == NULL)
	{
		*problem = "no master file for this market";
		return NULL;
	}
	/* the member is kospi_code.mst in kospi_code.mst.zip */
	member = pnstrdup(l->file, strlen(l->file) - 4);
	text = kis_zip_member(zip, zip_len, member, &len, problem);
	if (text == NULL)
		return NULL;
	rows = kis_json_new_array();
	for (size_t pos = 0; pos < len;)
	{
		const char *line = text + pos;
		const char *nl = memchr(line, '\n', len - pos);
		int			line_len = nl ? (int) (nl - line) : (int) (len - pos);
		const char *line_problem = NULL;
		json_t	   *row;

		pos += line_len + (nl ? 1 : 0);
		lineno++;
		if (line_len > 0 && line[line_len - 1] == '\r')
			line_len--;
		if (line_len == 0)
			continue;
		if (line_len > KIS_MASTER_MAX_LINE)
			line_problem = "longer than any layout";
		else if ((row = master_row(l, line, line_len, &line_problem)) != NULL &&
				 json_array_append_new(rows, row) != 0)
			line_problem = "out of memory";
		if (json_array_size(rows) > KIS_MASTER_MAX_ROWS)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("the stock master file of %s has more than kis_fdw's limit of %d listings",
							market, KIS_MASTER_MAX_ROWS)));
		if (line_problem == NULL)
			continue;
		if (list_length(*line_problems) >= KIS_MASTER_MAX_PROBLEMS)
		{
			/* the market's failure, not an ERROR: KIS changing its layout is one */
			*problem = psprintf("more than kis_fdw's limit of %d lines cannot be read (the first: %s)",
								KIS_MASTER_MAX_PROBLEMS, (char *) linitial(*line_problems));
			return NULL;
		}
		*line_problems = lappend(*line_problems,
								 psprintf("line %d of %s: %s", lineno, member, line_problem));
	}
	return rows;
}
