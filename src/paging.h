/*-------------------------------------------------------------------------
 *
 * paging.h
 *	  How a call goes on past one answer: one table of operations per
 *	  paging kind (none, date, cursor, time) that reads a page's rows and
 *	  returns the next page's request (its end date, end time or
 *	  continuation keys) for requests.c to send (paging.c).
 *
 * src/paging.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef KIS_PAGING_H
#define KIS_PAGING_H

#include "nodes/pg_list.h"
#include "utils/palloc.h"

#include "endpoints.h"
#include "fetch.h"
#include "requests.h"

/*
 * Where one call's paging stands: what its next request asks for.  The
 * operations below change it; requests.c builds the request from it
 * (kis_page_param, the header).
 */
typedef struct KisPage
{
	MemoryContext cxt;			/* the call's: what outlives one answer */
	int			pages;			/* answers received so far */
	int			to;				/* end date (julian) of the next page */
	int			time;			/* end of the next page, seconds of the day
								 * in Korea (time paging) */
	int			day;			/* time paging: the day of the bars (julian) */
	char	   *ctx_fk;			/* cursor paging: the keys to send back */
	char	   *ctx_nk;
	List	   *held;			/* cursor paging: rows of the earlier pages */
	bool		restarted;		/* cursor paging: started over once already */
} KisPage;

/* One answer of a call, as its paging kind reads it */
typedef struct KisPageAnswer
{
	const KisEndpoint *ep;
	KisKey	   *key;			/* the call's (first) key, or NULL */
	const KisRange *range;		/* the range the call asks for */
	const KisCompletion *completion;	/* the whole answer, its tr_cont */
	json_t	   *member;			/* the answer's rows: an array */
	json_t	   *extra;			/* fills what a row lacks, or NULL */
} KisPageAnswer;

/* One paging kind (docs/adding-an-endpoint.md) */
typedef struct KisPagingOps
{
	/* false: the range can have no rows, ask nothing; may ERROR */
	bool		(*range_ok) (const KisEndpoint *ep, const KisRange *range, int today);

	/* The ranges (KisRange *) of one key's calls, period D W M or Y */
	List	   *(*ranges) (const KisEndpoint *ep, const char *period,
						   const KisRange *range, int today);

	/*
	 * The rows (KisRow *) of an answer; true when another page follows:
	 * page then holds its request.
	 */
	bool		(*read) (KisPage *page, const KisPageAnswer *answer, List **rows);

	/*
	 * A failed answer: true when the call starts over (page then holds its
	 * first request); else *hint may say what to do about the failure.
	 */
	bool		(*failed) (KisPage *page, const KisEndpoint *ep,
						   const KisResponse *resp, const char **hint);

	/* A header the next request carries, or NULL */
	const char *(*header) (const KisPage *page);
} KisPagingOps;

extern const KisPagingOps *kis_paging_ops(KisPaging paging);
extern void kis_page_begin(KisPage *page, const KisRange *range, int today);
extern const char *kis_page_param(const KisPage *page, KisParamSource source);
extern char *kis_date_text(int jd);

#endif							/* KIS_PAGING_H */
