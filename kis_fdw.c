/*-------------------------------------------------------------------------
 *
 * kis_fdw.c
 *	  The registry of kis_fdw: the FDW handler naming each callback, the
 *	  module's GUCs and start-up, and IMPORT FOREIGN SCHEMA.  The callbacks
 *	  live with the capability they belong to: planning in src/plan.c (what
 *	  it pushes down: src/pushdown.c), the scan's execution in src/scan.c,
 *	  the batched join in src/join.c (its planner hook in src/join_plan.c,
 *	  its node in src/join_exec.c), keys to tuples in src/run.c, HTTP in
 *	  src/fetch.c, JSON in src/response.c, options in src/options.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "foreign/fdwapi.h"
#include "foreign/foreign.h"
#include "utils/builtins.h"
#include "utils/guc.h"

#include "auth.h"
#include "compat.h"
#include "endpoints.h"
#include "fetch.h"
#include "join.h"
#include "library.h"
#include "plan.h"
#include "scan.h"
#include "shmem.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

PG_FUNCTION_INFO_V1(kis_fdw_handler);

/*
 * IMPORT FOREIGN SCHEMA kis FROM SERVER s INTO local: one table per
 * endpoint, with typed friendly columns.  LIMIT TO and EXCEPT are applied
 * by PostgreSQL to the returned statements.
 */
static List *
kisImportForeignSchema(ImportForeignSchemaStmt *stmt, Oid serverOid)
{
	ForeignServer *server = GetForeignServer(serverOid);
	List	   *commands = NIL;

	if (strcmp(stmt->remote_schema, "kis") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_SCHEMA_NOT_FOUND),
				 errmsg("kis_fdw offers no schema \"%s\"", stmt->remote_schema),
				 errhint("Use IMPORT FOREIGN SCHEMA kis FROM SERVER %s INTO ...;",
						 quote_identifier(server->servername))));
	for (const KisEndpoint *ep = kis_endpoints; ep->name; ep++)
		commands = lappend(commands, kis_endpoint_table_ddl(ep, server->servername));
	for (const KisLibraryTable *t = kis_library; t->name; t++)
		commands = lappend(commands, kis_library_table_ddl(t, server->servername));
	return commands;
}

/* ----------------------------------------------------------------
 * Module
 * ----------------------------------------------------------------
 */
Datum
kis_fdw_handler(PG_FUNCTION_ARGS)
{
	FdwRoutine *routine = makeNode(FdwRoutine);

	routine->GetForeignRelSize = kisGetForeignRelSize;
	routine->GetForeignPaths = kisGetForeignPaths;
	routine->GetForeignPlan = kisGetForeignPlan;
	routine->BeginForeignScan = kisBeginForeignScan;
	routine->IterateForeignScan = kisIterateForeignScan;
	routine->ReScanForeignScan = kisReScanForeignScan;
	routine->EndForeignScan = kisEndForeignScan;
	routine->ExplainForeignScan = kisExplainForeignScan;
	routine->ImportForeignSchema = kisImportForeignSchema;
	routine->IsForeignPathAsyncCapable = kisIsForeignPathAsyncCapable;
	routine->ForeignAsyncRequest = kisForeignAsyncRequest;
	routine->ForeignAsyncConfigureWait = kisForeignAsyncConfigureWait;
	routine->ForeignAsyncNotify = kisForeignAsyncNotify;

	PG_RETURN_POINTER(routine);
}

void
_PG_init(void)
{
	kis_fetch_global_init();

	DefineCustomIntVariable("kis_fdw.token_issue_interval",
							"Minimum time between two access-token issuances for one app key.",
							"KIS allows one issuance per minute per app key; lower it only for test servers.",
							&kis_token_issue_interval,
							60, 0, 3600,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);
	kis_join_init();
	kis_shmem_init();
	MarkGUCPrefixReserved("kis_fdw");
}
