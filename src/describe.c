/*-------------------------------------------------------------------------
 *
 * describe.c
 *	  kis_fdw_endpoints() and kis_fdw_columns(): the endpoint catalogue as
 *	  SQL, so that documentation and tools read the same entries the FDW
 *	  runs on (the README's tables are checked against them by the tests).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "funcapi.h"
#include "utils/builtins.h"

#include "compat.h"
#include "endpoints.h"
#include "library.h"

/* One row of kis_fdw_endpoints(); tr_id_virtual NULL: real accounts only */
static void
put_endpoint(ReturnSetInfo *rsinfo, const char *name, const char *description,
			 const char *path, const char *tr_id_real, const char *tr_id_virtual,
			 const char *key_columns, int keys_per_request, KisPaging paging)
{
	Datum		values[8];
	bool		nulls[8] = {0};

	values[0] = CStringGetTextDatum(name);
	values[1] = CStringGetTextDatum(description);
	values[2] = CStringGetTextDatum(path);
	values[3] = CStringGetTextDatum(tr_id_real);
	if (tr_id_virtual != NULL)
		values[4] = CStringGetTextDatum(tr_id_virtual);
	else
		nulls[4] = true;
	values[5] = CStringGetTextDatum(key_columns);
	values[6] = Int32GetDatum(keys_per_request);
	values[7] = CStringGetTextDatum(kis_paging_name(paging));
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

PG_FUNCTION_INFO_V1(kis_fdw_endpoints);

Datum
kis_fdw_endpoints(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	kis_init_materialized_srf(fcinfo);
	for (const KisEndpoint *ep = kis_endpoints; ep->name; ep++)
		put_endpoint(rsinfo, ep->name, ep->description, ep->path, ep->tr_id_real,
					 ep->tr_id_virtual, kis_endpoint_key_columns(ep),
					 kis_endpoint_keys_per_request(ep), kis_endpoint_paging(ep));
	/* the library's declared tables: one request per key */
	for (const KisLibraryTable *t = kis_library; t->name; t++)
		put_endpoint(rsinfo, t->name, t->description, t->path, t->tr_id,
					 t->tr_id_virtual[0] != '\0' ? t->tr_id_virtual : NULL,
					 kis_library_key_columns(t), 1,
					 t->paging && strcmp(t->paging, "date") == 0 ? KIS_PAGING_DATE :
					 t->paging ? KIS_PAGING_CURSOR : KIS_PAGING_NONE);
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(kis_fdw_columns);

Datum
kis_fdw_columns(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	kis_init_materialized_srf(fcinfo);
	for (const KisEndpoint *ep = kis_endpoints; ep->name; ep++)
	{
		int			position = 0;

		for (const KisColumnDef *col = ep->columns; col->column; col++)
		{
			Datum		values[5];
			bool		nulls[5] = {0};

			values[0] = CStringGetTextDatum(ep->name);
			values[1] = Int32GetDatum(++position);
			values[2] = CStringGetTextDatum(col->column);
			values[3] = CStringGetTextDatum(col->field);
			values[4] = CStringGetTextDatum(col->type);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
	}
	for (const KisLibraryTable *t = kis_library; t->name; t++)
	{
		int			position = 0;

		/* the fields it reads; its key (param) columns are listed as keys */
		for (const KisLibraryColumn *col = t->columns; col->column; col++)
		{
			Datum		values[5];
			bool		nulls[5] = {0};

			if (col->field == NULL)
				continue;
			values[0] = CStringGetTextDatum(t->name);
			values[1] = Int32GetDatum(++position);
			values[2] = CStringGetTextDatum(col->column);
			values[3] = CStringGetTextDatum(col->field);
			values[4] = CStringGetTextDatum(col->type);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
	}
	return (Datum) 0;
}
