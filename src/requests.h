/*-------------------------------------------------------------------------
 *
 * requests.h
 *	  What a scan asks KIS for (keys, a date range) and what each answer
 *	  yields (rows, or a key that failed) (requests.c).
 *
 * src/requests.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef KIS_REQUESTS_H
#define KIS_REQUESTS_H

#include "nodes/pg_list.h"

#include "fetch.h"
#include "response.h"

struct KisConfig;
struct KisEndpoint;

/* One request key: a symbol and its market or exchange */
typedef struct KisKey
{
	char	   *symbol;
	char	   *venue;			/* market (domestic) or exchange (overseas) */
} KisKey;

/*
 * A date range, julian days, inclusive; unset bounds are open.  With
 * ndates > 0 only those days are wanted ("date IN (...)"): dates holds
 * them in ascending order, all within from..to, which then hug them.
 */
typedef struct KisRange
{
	bool		has_from;
	bool		has_to;
	int			from;
	int			to;
	int			ndates;
	int		   *dates;
	bool		has_after;		/* the tick ring: seq > after */
	int64		after;
} KisRange;

/* One row of an answer, or a key that failed (problem set, row NULL) */
typedef struct KisRow
{
	const struct KisEndpoint *ep;
	const char *hint;			/* for a failure: what to do, or NULL */
	KisKey	   *key;			/* NULL for account rows */
	json_t	   *row;
	json_t	   *extra;			/* fills fields the row lacks, or NULL */
	char	   *problem;
} KisRow;

extern int	kis_today_kst(void);
extern KisKey *kis_key_copy(const KisKey *key);
extern Size kis_key_size(const KisKey *key);
extern KisKey *kis_key_copy_to(void *mem, const KisKey *key);
/* A reader's view of answers (run.c): a SHA-256 of what makes its rows */
#define KIS_VIEW_LEN	32

extern int	kis_requests_start(KisFetcher *fetcher, const struct KisConfig *config,
							   List *keys, const KisRange *range, const uint8 *view);
extern List *kis_requests_answer(KisFetcher *fetcher, KisCompletion *completion,
								 List **later);
extern void kis_requests_send(KisFetcher *fetcher, List *later);
extern void kis_requests_add_answer(KisFetcher *fetcher, const struct KisConfig *config,
									KisKey *key, json_t *root);
extern KisRow *kis_row_new(const struct KisEndpoint *ep, KisKey *key, json_t *row,
						   json_t *extra, const char *problem);
extern char *kis_row_value(const KisRow *row, const char *field);

#endif							/* KIS_REQUESTS_H */
