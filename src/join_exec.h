/*-------------------------------------------------------------------------
 *
 * join_exec.h
 *	  The batched join's node: its state, made for each CustomScan the
 *	  planner made (join_exec.c).
 *
 * src/join_exec.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef KIS_JOIN_EXEC_H
#define KIS_JOIN_EXEC_H

#include "nodes/nodes.h"

struct CustomScan;

extern Node *kis_join_create_state(struct CustomScan *cscan);

#endif							/* KIS_JOIN_EXEC_H */
