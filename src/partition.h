/*-------------------------------------------------------------------------
 *
 * partition.h
 *	  A partition's scan keeps to its partition bound: the bound's keys and
 *	  dates, and the check of each row against it (partition.c).
 *
 * src/partition.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef KIS_PARTITION_H
#define KIS_PARTITION_H

#include "nodes/pg_list.h"

struct KisEndpoint;
struct RelationData;
struct TupleTableSlot;

typedef struct KisPartitionFilter KisPartitionFilter;

extern KisPartitionFilter *kis_partition_filter_create(struct RelationData *rel,
													   const struct KisEndpoint *ep);
extern List *kis_partition_needed(const KisPartitionFilter *filter, List *needed);
extern List *kis_partition_bound_clauses(Oid relid, Index varno);
extern List *kis_partition_keys(KisPartitionFilter *filter, List *keys);
extern bool kis_partition_row_ok(KisPartitionFilter *filter, struct TupleTableSlot *slot);
extern bool kis_partition_venue_allowed(struct RelationData *rel, const struct KisEndpoint *ep,
										const char *venue);

#endif							/* KIS_PARTITION_H */
