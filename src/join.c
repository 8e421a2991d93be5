/*-------------------------------------------------------------------------
 *
 * join.c
 *	  The batched join: a kis foreign table joined on its key columns to
 *	  any other relation reads the other side first, collects its distinct
 *	  keys, fetches them as one concurrent, rate-gated run (run.c), and
 *	  joins locally.  Without it, such a join is a parameterized nested
 *	  loop: one request per outer row, one after another.
 *
 * This file holds its GUCs and registers it: join_plan.c offers the path
 * from set_join_pathlist_hook and makes the CustomScan, join_exec.c runs
 * it.  How it plans and executes, and what it relies on in PostgreSQL:
 * docs/batched-join.md.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/guc.h"

#include "join.h"
#include "join_plan.h"

bool		kis_enable_batched_join = true;
int			kis_batched_join_max_keys = 10000;

void
kis_join_init(void)
{
	DefineCustomBoolVariable("kis_fdw.enable_batched_join",
							 "Lets the planner join kis foreign tables in one batch of requests.",
							 "Like enable_hashjoin: turn it off to compare plans.",
							 &kis_enable_batched_join,
							 true,
							 PGC_USERSET, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("kis_fdw.batched_join_max_keys",
							"Most distinct keys one batched join fetches.",
							"A join whose other side holds more ends with an error.",
							&kis_batched_join_max_keys,
							10000, 1, 1000000,
							PGC_USERSET, 0,
							NULL, NULL, NULL);
	kis_join_plan_init();
}
