/*-------------------------------------------------------------------------
 *
 * run.h
 *	  One run of requests, from keys to tuples: the fetch engine's answers
 *	  turned into rows of a foreign table (run.c; used by the scan and the
 *	  batched join).
 *
 * src/run.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef KIS_RUN_H
#define KIS_RUN_H

#include "nodes/pg_list.h"
#include "utils/palloc.h"

#include "fetch.h"
#include "keys.h"
#include "requests.h"

typedef struct KisRunner KisRunner;

struct ExplainState;
struct KisConfig;
struct RelationData;
struct TupleTableSlot;

extern KisRunner *kis_runner_create(struct RelationData *rel, const struct KisConfig *config,
									List *needed, MemoryContext parent);
extern void kis_runner_borrow_keys(KisRunner *runner);
extern void kis_runner_start(KisRunner *runner, const KisRunKeys *keys);
extern void kis_runner_start_keys(KisRunner *runner, List *keys, const KisRange *range,
								  bool can_match, bool from_rows);
extern bool kis_runner_started(const KisRunner *runner);
extern bool kis_runner_next(KisRunner *runner, struct TupleTableSlot *slot);
extern KisPoll kis_runner_poll(KisRunner *runner, struct TupleTableSlot *slot);
extern int	kis_runner_wait_fd(KisRunner *runner);
extern void kis_runner_end(KisRunner *runner);
extern void kis_runner_wait_any(KisRunner **runners, int nrunners);
extern int64 kis_runner_keys_requested(const KisRunner *runner);
extern void kis_runner_explain(const KisRunner *runner, struct ExplainState *es);
extern void kis_runners_explain(const KisRunner *const *runners, int nrunners,
								struct ExplainState *es);

#endif							/* KIS_RUN_H */
