/*-------------------------------------------------------------------------
 *
 * harness.h
 *	  What fuzz_kis.c (the scans and checks) and fake_fetch.c (the fetch
 *	  engine it replaces) share: the queue of requests the harness answers.
 *
 *-------------------------------------------------------------------------
 */
#ifndef KIS_FUZZ_HARNESS_H
#define KIS_FUZZ_HARNESS_H

#include "nodes/pg_list.h"

#include "endpoints.h"
#include "fetch.h"

#define MAX_REQUESTS	4096	/* a scan asking more than this is a finding */

/* One request the scan queued, answered by the input's next segment */
typedef struct FuzzRequest
{
	void	   *arg;
	List	   *keys;			/* the scan's keys it asked for (request_keys) */
	int			nkeys;			/* how many it asked for */
	int			attempts;		/* sends so far */
	int			token_rejections;
} FuzzRequest;

/* The fake fetcher: a queue, and what the checks need to know */
struct KisFetcher
{
	const KisEndpoint *ep;
	MemoryContext cxt;			/* the scan's: holds what the queue keeps */
	List	   *scan_keys;		/* what kis_requests_start was given */
	FuzzRequest queue[MAX_REQUESTS];
	int			head;
	int			tail;
	int			added;
	KisAnswerCheck check;		/* as the engine: refuses another's answer */
};

extern bool harness_verbose;	/* KIS_FUZZ_VERBOSE=1: trace requests and rows */
extern void harness_abort(const char *what);

#endif							/* KIS_FUZZ_HARNESS_H */
