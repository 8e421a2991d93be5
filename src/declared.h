/*-------------------------------------------------------------------------
 *
 * declared.h
 *	  A KIS REST TR declared as a foreign table (declared.c).
 *
 * src/declared.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef KIS_DECLARED_H
#define KIS_DECLARED_H

#include "nodes/pg_list.h"

struct KisEndpoint;

extern void kis_declared_check_option(const char *name, const char *value);
extern void kis_declared_check_table(List *options);
extern void kis_declared_check_column(List *options);
extern bool kis_declared_is(List *options);
extern const struct KisEndpoint *kis_declared_endpoint(Oid relid, List *table_options);

#endif							/* KIS_DECLARED_H */
