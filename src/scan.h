/*-------------------------------------------------------------------------
 *
 * scan.h
 *	  Executing a foreign scan, synchronously or as an asynchronous Append
 *	  child, and its EXPLAIN (scan.c).
 *
 * src/scan.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef KIS_SCAN_H
#define KIS_SCAN_H

struct AsyncRequest;
struct ExplainState;
struct ForeignScanState;
struct TupleTableSlot;

extern void kisBeginForeignScan(struct ForeignScanState *node, int eflags);
extern struct TupleTableSlot *kisIterateForeignScan(struct ForeignScanState *node);
extern void kisReScanForeignScan(struct ForeignScanState *node);
extern void kisEndForeignScan(struct ForeignScanState *node);
extern void kisExplainForeignScan(struct ForeignScanState *node, struct ExplainState *es);
extern void kisForeignAsyncRequest(struct AsyncRequest *areq);
extern void kisForeignAsyncConfigureWait(struct AsyncRequest *areq);
extern void kisForeignAsyncNotify(struct AsyncRequest *areq);

#endif							/* KIS_SCAN_H */
