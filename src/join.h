/*-------------------------------------------------------------------------
 *
 * join.h
 *	  The batched join: its GUCs and its registration (join.c); the
 *	  planner hook and plan are join_plan.c's, the node join_exec.c's.
 *
 * src/join.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef KIS_JOIN_H
#define KIS_JOIN_H

/* GUCs */
extern bool kis_enable_batched_join;
extern int	kis_batched_join_max_keys;

extern void kis_join_init(void);

#endif							/* KIS_JOIN_H */
