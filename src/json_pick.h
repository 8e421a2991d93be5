/*-------------------------------------------------------------------------
 *
 * json_pick.h
 *	  Parsing a KIS answer keeping, of each row object, only the fields a
 *	  reader uses (json_pick.c).
 *
 * src/json_pick.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef KIS_JSON_PICK_H
#define KIS_JSON_PICK_H

#include "nodes/pg_list.h"

#include "response.h"

extern KisJsonPick *kis_json_pick_create(List *fields);
extern json_t *kis_json_parse_picked(const char *body, size_t len,
									 const KisJsonPick *pick);

#endif							/* KIS_JSON_PICK_H */
