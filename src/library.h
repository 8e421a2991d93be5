/*-------------------------------------------------------------------------
 *
 * library.h
 *	  The library of declared tables (library.c).
 *
 * src/library.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef KIS_LIBRARY_H
#define KIS_LIBRARY_H

/* A column: its name and type, and the field it reads or the param it fills */
typedef struct KisLibraryColumn
{
	const char *column;
	const char *type;
	const char *field;
	const char *param;
	const char *from_param;		/* a date range's column: its bounds' params */
	const char *to_param;
} KisLibraryColumn;

/* A declared table: the options a user would write */
typedef struct KisLibraryTable
{
	const char *name;
	const char *description;
	const char *path;
	const char *tr_id;
	const char *tr_id_virtual;	/* "": real accounts only */
	const char *params;
	const char *rows;
	const char *paging;			/* NULL: none */
	const KisLibraryColumn *columns;	/* ended by a NULL column */
} KisLibraryTable;

extern const KisLibraryTable kis_library[];

extern char *kis_library_key_columns(const KisLibraryTable *t);
extern char *kis_library_table_ddl(const KisLibraryTable *t, const char *server_name);

#endif							/* KIS_LIBRARY_H */
