/*-------------------------------------------------------------------------
 *
 * master.h
 *	  The stock master files: one zip download per market, read into rows
 *	  (master.c).
 *
 * src/master.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef KIS_MASTER_H
#define KIS_MASTER_H

#include "nodes/pg_list.h"

/* jansson's document (response.h has the typedef) */
struct json_t;

extern const char *const kis_master_markets[];
extern const char *kis_master_file(const char *market);
extern bool kis_zip_is_whole(const char *data, size_t size);
extern char *kis_zip_member(const char *data, size_t size, const char *suffix,
							size_t *len, const char **problem);
extern struct json_t *kis_master_rows(const char *market, const char *zip, size_t zip_len,
									  List **line_problems, const char **problem);

#endif							/* KIS_MASTER_H */
