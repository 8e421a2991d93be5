/*-------------------------------------------------------------------------
 *
 * plan.h
 *	  Planning a foreign scan: its size, paths, cost and plan, with the key
 *	  conditions it pushes down (plan.c; the batched join plans with it).
 *
 * src/plan.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef KIS_PLAN_H
#define KIS_PLAN_H

#include "nodes/nodes.h"
#include "nodes/pg_list.h"

#include "options.h"
#include "quals.h"

struct ForeignPath;
struct ForeignScan;
struct KisEndpoint;
struct KisPushdown;
struct Plan;
struct PlannerInfo;
struct RelOptInfo;

extern void kisGetForeignRelSize(struct PlannerInfo *root, struct RelOptInfo *baserel,
								 Oid foreigntableid);
extern void kisGetForeignPaths(struct PlannerInfo *root, struct RelOptInfo *baserel,
							   Oid foreigntableid);
extern struct ForeignScan *kisGetForeignPlan(struct PlannerInfo *root,
											 struct RelOptInfo *baserel,
											 Oid foreigntableid,
											 struct ForeignPath *best_path,
											 List *tlist, List *scan_clauses,
											 struct Plan *outer_plan);

/* The slots of a foreign scan's fdw_private (scan.c reads them) */
typedef enum KisScanPrivate
{
	KIS_SCAN_PUSHDOWN,			/* what it pushes down: kis_pushdown_to_list() */
	KIS_SCAN_NEEDED				/* attnums of the columns the query reads */
} KisScanPrivate;

/* Planner state of a kis foreign table, in its RelOptInfo's fdw_private */
typedef struct KisPlanState
{
	KisConfig	config;
	AttrNumber	key_attnums[KIS_NUM_KEYS];
	bool		has_qual[KIS_NUM_LIST_KEYS];
	KisKeyQual	quals[KIS_NUM_LIST_KEYS];
} KisPlanState;

extern double kis_planned_requests(const struct KisEndpoint *ep, double nkeys);
extern bool kisIsForeignPathAsyncCapable(struct ForeignPath *path);
extern double kis_planned_values(const KisPlanState *ps, KisKeyColumn key,
								 double if_unknown);
extern void kis_estimate_cost(const KisConfig *config, double nrequests, double rows,
							  Cost *startup, Cost *total);
extern List *kis_plan_keys(struct RelOptInfo *baserel, Oid relid, List *clauses,
						   struct KisPushdown *pd);
extern void kis_plan_partition_dates(struct PlannerInfo *root, struct RelOptInfo *baserel,
									 Oid relid, struct KisPushdown *pd);

#endif							/* KIS_PLAN_H */
