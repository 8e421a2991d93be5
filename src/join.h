/*-------------------------------------------------------------------------
 *
 * join.h
 *	  The batched join: a planner hook offering one request per batch of
 *	  outer rows' symbols, and its custom scan node (join.c).
 *
 * src/join.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef KIS_JOIN_H
#define KIS_JOIN_H

extern void kis_join_init(void);

#endif							/* KIS_JOIN_H */
