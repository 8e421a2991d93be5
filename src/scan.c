/*-------------------------------------------------------------------------
 *
 * scan.c
 *	  The executor side of a kis foreign scan: evaluate the pushed-down
 *	  key and date conditions when the scan starts, hand the keys to a run
 *	  (run.c), return its tuples, and show the work in EXPLAIN.
 *
 * A scan that may be rescanned with new key values (a nested loop's or a
 * correlated sub-select's parameters) keeps the tuples of its last run in
 * a tuplestore (work_mem, then disk); when a rescan's keys are the same,
 * it replays them instead of asking KIS again.
 *
 * Memory of a scan:
 *	  es_query_cxt
 *	    "kis_fdw scan"  config, key expressions, the runner (run.c), whose
 *	                    run context ends with each run, and the tuplestore
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "commands/explain.h"
#include "executor/execAsync.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/execnodes.h"
#include "nodes/nodeFuncs.h"
#include "storage/latch.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/tuplestore.h"

#include "compat.h"
#include "endpoints.h"
#include "fetch.h"
#include "keys.h"
#include "options.h"
#include "plan.h"
#include "pushdown.h"
#include "quals.h"
#include "run.h"
#include "scan.h"

/* Executor state, in node->fdw_state */
typedef struct KisScanState
{
	MemoryContext scan_cxt;
	KisConfig	config;
	Relation	rel;
	KisKeyExprs keys;			/* the pushed-down conditions */

	KisRunner  *runner;			/* NULL under plain EXPLAIN */

	bool		async;			/* an async child of an Append: never wait */
	KisPoll		polled;			/* what the last async step found */

	/*
	 * A scan that can be rescanned with new key values keeps the tuples of
	 * its last run; a rescan whose keys turn out the same replays them
	 * instead of asking KIS again.
	 */
	bool		keep_rows;
	bool		started;		/* keys evaluated for the current (re)scan */
	bool		replaying;
	Tuplestorestate *rows;		/* tuples of the last run, or NULL */
	TupleTableSlot *replay_slot;	/* reads them back */
	KisRunKeys	last;			/* that run's keys; valid when rows != NULL */
} KisScanState;

/* Does an expression read a parameter set while the query runs? */
static bool
contains_exec_param_walker(Node *node, void *context)
{
	if (node == NULL)
		return false;
	if (IsA(node, Param) && ((Param *) node)->paramkind == PARAM_EXEC)
		return true;
	return expression_tree_walker(node, contains_exec_param_walker, context);
}

void
kisBeginForeignScan(ForeignScanState *node, int eflags)
{
	ForeignScan *fsplan = (ForeignScan *) node->ss.ps.plan;
	EState	   *estate = node->ss.ps.state;
	KisScanState *st = palloc0(sizeof(KisScanState));
	List	   *needed = list_nth(fsplan->fdw_private, KIS_SCAN_NEEDED);
	MemoryContext old;
	Oid			userid;

	node->fdw_state = st;
	st->rel = node->ss.ss_currentRelation;
	st->async = node->ss.ps.async_capable;
	st->scan_cxt = AllocSetContextCreate(estate->es_query_cxt, "kis_fdw scan",
										 ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(st->scan_cxt);
	kis_config_for_table(RelationGetRelid(st->rel), &st->config);
	MemoryContextSwitchTo(old);

	/* plain EXPLAIN: no credentials needed, nothing sent */
	kis_keys_init(&st->keys, list_nth(fsplan->fdw_private, KIS_SCAN_PUSHDOWN),
				  fsplan->fdw_exprs,
				  (eflags & EXEC_FLAG_EXPLAIN_ONLY) ? NULL : (PlanState *) node);
	if (eflags & EXEC_FLAG_EXPLAIN_ONLY)
		return;

	userid = kis_scan_check_as_user(fsplan, estate);
	if (!OidIsValid(userid))
		userid = GetUserId();

	old = MemoryContextSwitchTo(st->scan_cxt);
	kis_config_add_credentials(&st->config, userid);
	MemoryContextSwitchTo(old);

	st->runner = kis_runner_create(st->rel, &st->config, needed, st->scan_cxt);

	/*
	 * Rescans that may repeat the same keys: a scan whose keys are set
	 * while the query runs (a nested loop's or a correlated sub-select's
	 * parameters), or one its parent asks to be cheap to rescan.
	 */
	st->keep_rows = (eflags & EXEC_FLAG_REWIND) != 0 ||
		contains_exec_param_walker((Node *) fsplan->fdw_exprs, NULL);
}

/*
 * Evaluate the keys; start a run that fetches them, or replay the last
 * run's tuples when it asked for the same.
 */
static void
start_scan(ForeignScanState *node, KisScanState *st)
{
	KisRunKeys	keys;
	MemoryContext old;

	kis_keys_eval(&st->keys, node->ss.ps.ps_ExprContext, st->rel, &st->config,
				  true, &keys);
	st->started = true;
	st->replaying = false;

	if (st->rows != NULL && kis_run_keys_equal(&keys, &st->last))
	{
		/* a run left early (LIMIT, EXISTS) is read to its end first */
		if (kis_runner_started(st->runner))
		{
			TupleTableSlot *slot = node->ss.ss_ScanTupleSlot;

			while (kis_runner_next(st->runner, slot))
				tuplestore_puttupleslot(st->rows, slot);
			kis_runner_end(st->runner);
		}
		tuplestore_rescan(st->rows);
		st->replaying = true;
		return;
	}

	if (kis_runner_started(st->runner))
		kis_runner_end(st->runner);
	if (st->keep_rows)
	{
		old = MemoryContextSwitchTo(st->scan_cxt);
		if (st->rows == NULL)
		{
			st->rows = tuplestore_begin_heap(false, false, work_mem);
			st->replay_slot = MakeSingleTupleTableSlot(RelationGetDescr(st->rel),
													   &TTSOpsMinimalTuple);
		}
		else
			tuplestore_clear(st->rows);
		kis_run_keys_copy(&st->last, &keys);
		MemoryContextSwitchTo(old);
	}
	kis_runner_start(st->runner, &keys);
}

TupleTableSlot *
kisIterateForeignScan(ForeignScanState *node)
{
	KisScanState *st = (KisScanState *) node->fdw_state;
	TupleTableSlot *slot = node->ss.ss_ScanTupleSlot;

	if (!st->started)
		start_scan(node, st);
	st->polled = KIS_POLL_END;
	if (st->replaying)
	{
		if (!tuplestore_gettupleslot(st->rows, true, false, st->replay_slot))
			return ExecClearTuple(slot);
		st->polled = KIS_POLL_ROW;
		return ExecCopySlot(slot, st->replay_slot);
	}
	if (!kis_runner_started(st->runner))
		return ExecClearTuple(slot);
	if (st->async)
		st->polled = kis_runner_poll(st->runner, slot);
	else
		st->polled = kis_runner_next(st->runner, slot) ? KIS_POLL_ROW : KIS_POLL_END;
	if (st->polled == KIS_POLL_ROW && st->rows != NULL)
		tuplestore_puttupleslot(st->rows, slot);
	else if (st->polled == KIS_POLL_END)
		kis_runner_end(st->runner);
	return slot;
}

/*
 * Asynchronous execution, as a child of an Append: the Append asks for a
 * tuple (Request), and while none is ready waits on the descriptor the
 * scan gives it (ConfigureWait) along with its other children's, then
 * calls the scan back (Notify).  A tuple goes through the node's ExecScan,
 * so local conditions and projection apply as in a synchronous scan; our
 * Iterate never waits in this mode and leaves in st->polled whether an
 * empty slot means "not yet" or "no more".
 */
static void
async_produce(AsyncRequest *areq)
{
	ForeignScanState *node = (ForeignScanState *) areq->requestee;
	KisScanState *st = (KisScanState *) node->fdw_state;
	TupleTableSlot *result;

	/* ExecAsyncRequest and ExecAsyncNotify do the node's instrumentation */
	st->polled = KIS_POLL_END;
	result = node->ss.ps.ExecProcNodeReal((PlanState *) node);
	if (!TupIsNull(result))
		ExecAsyncRequestDone(areq, result);
	else if (st->polled == KIS_POLL_WAIT)
		ExecAsyncRequestPending(areq);
	else
		ExecAsyncRequestDone(areq, NULL);
}

void
kisForeignAsyncRequest(AsyncRequest *areq)
{
	async_produce(areq);
}

void
kisForeignAsyncConfigureWait(AsyncRequest *areq)
{
	ForeignScanState *node = (ForeignScanState *) areq->requestee;
	KisScanState *st = (KisScanState *) node->fdw_state;
	AppendState *requestor = (AppendState *) areq->requestor;

	AddWaitEventToSet(requestor->as_eventset, WL_SOCKET_READABLE,
					  kis_runner_wait_fd(st->runner), NULL, areq);
}

void
kisForeignAsyncNotify(AsyncRequest *areq)
{
	async_produce(areq);
}

/*
 * A rescan evaluates the keys again at the next tuple.  A run that stopped
 * early is kept until then: if the keys are the same, its remaining
 * tuples complete the stored ones.
 */
void
kisReScanForeignScan(ForeignScanState *node)
{
	KisScanState *st = (KisScanState *) node->fdw_state;

	st->started = false;
	if (st->rows == NULL && kis_runner_started(st->runner))
		kis_runner_end(st->runner);
}

void
kisEndForeignScan(ForeignScanState *node)
{
	KisScanState *st = (KisScanState *) node->fdw_state;

	if (st == NULL)
		return;
	if (st->runner != NULL && kis_runner_started(st->runner))
		kis_runner_end(st->runner);
	if (st->rows != NULL)
	{
		tuplestore_end(st->rows);
		ExecDropSingleTupleTableSlot(st->replay_slot);
	}
	MemoryContextDelete(st->scan_cxt);
}

/*
 * EXPLAIN: endpoint and planned work; with ANALYZE, what was done.
 * Never a credential, a token or a URL.
 */
void
kisExplainForeignScan(ForeignScanState *node, ExplainState *es)
{
	KisScanState *st = (KisScanState *) node->fdw_state;
	const KisEndpoint *ep = st->config.endpoint;
	const KisPushdown *pd = &st->keys.pushdown;
	KisKeyColumn venue_key = kis_endpoint_venue_key(ep);
	KisKeying	keying = kis_endpoint_keying(ep);
	int			nsym = pd->keys[KIS_KEY_SYMBOL].nplanned;
	int			nven = kis_pushdown_has_key(pd, venue_key) ? pd->keys[venue_key].nplanned : 1;

	/* each property has one type in every format (README, EXPLAIN ANALYZE) */
	ExplainPropertyText("KIS Endpoint", ep->name, es);
	if (keying == KIS_KEYING_SYMBOL && kis_endpoint_is_declared(ep))
	{
		/* a declared table's key values; without a condition, its params value */
		if (!kis_pushdown_has_key(pd, KIS_KEY_SYMBOL))
			nsym = 1;
		if (nsym >= 0)
			ExplainPropertyInteger("KIS Key Values", NULL, nsym, es);
		else
			ExplainPropertyText("KIS Key Values Computed", "at scan start", es);
	}
	else if (keying == KIS_KEYING_SYMBOL)
	{
		if (nsym >= 0)
			ExplainPropertyInteger("KIS Symbols", NULL, nsym, es);
		else
			ExplainPropertyText("KIS Symbols Computed", "at scan start", es);
	}
	if (keying == KIS_KEYING_MARKET)
	{
		/* a download per market: those of the condition, else all */
		int			nmarkets = kis_endpoint_nmarkets(ep);

		if (kis_pushdown_has_key(pd, KIS_KEY_MARKET))
			nmarkets = pd->keys[KIS_KEY_MARKET].nplanned;
		if (nmarkets >= 0)
			ExplainPropertyInteger("KIS Planned Requests", NULL, nmarkets, es);
	}
	else if (kis_endpoint_streamed(ep))
		ExplainPropertyText(kis_endpoint_ringed(ep) ? "KIS Tick Ring" : "KIS Live Stream",
							kis_live_tr_id(ep->stream), es);
	else if (keying != KIS_KEYING_SYMBOL || (nsym >= 0 && nven >= 0))
		ExplainPropertyInteger("KIS Planned Requests", NULL,
							   (int64) kis_planned_requests(ep, (double) Max(nsym, 0) * nven), es);
	if (kis_endpoint_paging(ep) != KIS_PAGING_NONE)
		ExplainPropertyText("KIS Paging", kis_endpoint_paging_detail(ep), es);
	if (pd->ndates > 0)
		ExplainPropertyInteger(kis_endpoint_ringed(ep) ? "KIS Seq Conditions" :
							   "KIS Date Conditions", NULL, pd->ndates, es);

	if (es->analyze && st->runner != NULL)
		kis_runner_explain(st->runner, es);
}
