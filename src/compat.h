/*-------------------------------------------------------------------------
 *
 * compat.h
 *		Every PostgreSQL-major, libcurl- and OpenSSL-version difference
 *		kis_fdw meets, in one place, so that the rest of the code reads as
 *		one version.
 *
 * PostgreSQL 14 to 18 are supported by these guards (15, 17 and 18 are
 * built and tested; docs/pg-versions.md says which API changed when).
 * libcurl 7.62.0 or later is needed (the URL API); newer options are used
 * where the headers have them.
 *
 * Include after postgres.h and the PostgreSQL headers a file uses, and after
 * <curl/curl.h> in files that call libcurl: the parts for explain and
 * libcurl are compiled only where those headers came first.
 *
 * src/compat.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef KIS_COMPAT_H
#define KIS_COMPAT_H

#if PG_VERSION_NUM < 140000
#error "kis_fdw needs PostgreSQL 14 or later"
#endif

/*
 * Wiping secrets: explicit_bzero() is declared by every supported major
 * (port.h; PostgreSQL supplies its own where the C library lacks it).
 * Wiping a malloc'd block before free (transport.c's allocator for libcurl)
 * needs its size: malloc_usable_size(), which glibc and musl have (kis_fdw
 * needs Linux anyway: epoll, timerfd).
 */
#include <malloc.h>
#define kis_malloc_usable_size(ptr) malloc_usable_size(ptr)

/*
 * Planner: create_foreignscan_path() gained fdw_restrictinfo (17) and
 * disabled_nodes (18).  kis_fdw passes neither: its paths are never
 * disabled, and it keeps its own pushed-down clauses in fdw_private.
 */
#if PG_VERSION_NUM >= 180000
#define kis_create_foreignscan_path(root, rel, target, rows, startup, total, \
									pathkeys, required_outer, outerpath, priv) \
	create_foreignscan_path((root), (rel), (target), (rows), 0, (startup), (total), \
							(pathkeys), (required_outer), (outerpath), NIL, (priv))
#elif PG_VERSION_NUM >= 170000
#define kis_create_foreignscan_path(root, rel, target, rows, startup, total, \
									pathkeys, required_outer, outerpath, priv) \
	create_foreignscan_path((root), (rel), (target), (rows), (startup), (total), \
							(pathkeys), (required_outer), (outerpath), NIL, (priv))
#else
#define kis_create_foreignscan_path create_foreignscan_path
#endif

/* heap_form_minimal_tuple() gained room for extra bytes (18); kis_fdw needs none */
#if PG_VERSION_NUM >= 180000
#define kis_form_minimal_tuple(desc, values, isnull) \
	heap_form_minimal_tuple((desc), (values), (isnull), 0)
#else
#define kis_form_minimal_tuple heap_form_minimal_tuple
#endif

/*
 * The role a foreign scan runs as (for its user mapping): the plan's
 * checkAsUser since 16, the range table entry's before.  InvalidOid means
 * the current user.
 */
#if PG_VERSION_NUM >= 160000
#define kis_scan_check_as_user(fsplan, estate) ((fsplan)->checkAsUser)
#else
#define kis_scan_check_as_user(fsplan, estate) \
	(exec_rt_fetch((fsplan)->scan.scanrelid, (estate))->checkAsUser)
#endif

/*
 * Since 16 a Var above an outer join that can null it names that join
 * (varnullingrels); before, there is nothing to name.
 */
#if PG_VERSION_NUM >= 160000
#define kis_var_nullingrels(var) ((var)->varnullingrels)
#define kis_set_var_nullingrels(var, relids) ((var)->varnullingrels = (relids))
#else
#define kis_var_nullingrels(var) ((Relids) NULL)
#define kis_set_var_nullingrels(var, relids) ((void) (relids))
#endif

/* Per-kind ACL checks became object_aclcheck() in 16 */
#if PG_VERSION_NUM >= 160000
#ifdef ACL_H
#include "catalog/pg_foreign_server.h"
#endif
#define kis_foreign_server_aclcheck(serverid, roleid, mode) \
	object_aclcheck(ForeignServerRelationId, (serverid), (roleid), (mode))
#else
#define kis_foreign_server_aclcheck(serverid, roleid, mode) \
	pg_foreign_server_aclcheck((serverid), (roleid), (mode))
#endif

/* ExplainState and ExplainProperty*() left commands/explain.h in 18 */
#if defined(EXPLAIN_H) && PG_VERSION_NUM >= 180000
#include "commands/explain_format.h"
#include "commands/explain_state.h"
#endif

/*
 * A process-lifetime WaitEventSet, freed explicitly by its owner.  Since 17
 * CreateWaitEventSet() takes a resource owner and allocates in
 * TopMemoryContext; NULL means no resource owner releases it, which is
 * what a set kept across transactions needs (an owner would free it at the
 * end of the first one).  Before 17 the argument is the memory context.
 */
#if PG_VERSION_NUM >= 170000
#define kis_create_wait_event_set(nevents) CreateWaitEventSet(NULL, (nevents))
#else
#define kis_create_wait_event_set(nevents) CreateWaitEventSet(TopMemoryContext, (nevents))
#endif

/* A uniform random double in [0, 1): pg_prng since 15 */
#if PG_VERSION_NUM >= 150000
#include "common/pg_prng.h"
#define kis_random_fraction() pg_prng_double(&pg_global_prng_state)
#else
#define kis_random_fraction() ((double) random() / ((double) MAX_RANDOM_VALUE + 1))
#endif

/*
 * Shared memory is requested from shmem_request_hook since 15; before, it
 * was requested from _PG_init itself.
 */
#if PG_VERSION_NUM >= 150000
#define kis_install_shmem_request_hook(prev, hook) \
	((prev) = shmem_request_hook, shmem_request_hook = (hook))
#else
typedef void (*shmem_request_hook_type) (void);
#define kis_install_shmem_request_hook(prev, hook) ((prev) = NULL, (hook) ())
#endif

/* Warn about unknown kis_fdw.* settings: renamed in 15 */
#if PG_VERSION_NUM < 150000
#define MarkGUCPrefixReserved(prefix) EmitWarningsOnPlaceholders(prefix)
#endif

/*
 * A set-returning function's tuplestore: InitMaterializedSRF() since 15.1,
 * SetSingleFuncCall() in 15.0; kis_init_materialized_srf() before, which
 * does the same for the functions' fixed result types.
 */
#if PG_VERSION_NUM >= 150001
#define kis_init_materialized_srf(fcinfo) InitMaterializedSRF((fcinfo), 0)
#elif PG_VERSION_NUM >= 150000
#define kis_init_materialized_srf(fcinfo) SetSingleFuncCall((fcinfo), 0)
#else
#define kis_init_materialized_srf(fcinfo) kis_init_materialized_srf_14(fcinfo)
#ifdef FUNCAPI_H
#include "miscadmin.h"
#include "utils/tuplestore.h"
static inline void
kis_init_materialized_srf_14(FunctionCallInfo fcinfo)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MemoryContext old;
	TupleDesc	tupdesc;

	if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo) ||
		(rsinfo->allowedModes & SFRM_Materialize) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("set-valued function called in context that cannot accept a set")));
	old = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	rsinfo->returnMode = SFRM_Materialize;
	rsinfo->setResult = tuplestore_begin_heap(true, false, work_mem);
	rsinfo->setDesc = tupdesc;
	MemoryContextSwitchTo(old);
}
#endif
#endif

/*
 * PostgreSQL's JSON parser (common/jsonapi.h): semantic actions return an
 * error code since 16 (KIS_JSON_ACTION_OK: "go on"), and the lexer is made
 * into a caller's (or a new) struct since 17.  Compiled only in files that
 * include common/jsonapi.h first.
 */
#ifdef JSONAPI_H
#if PG_VERSION_NUM >= 160000
typedef JsonParseErrorType KisJsonActionResult;
#define KIS_JSON_ACTION_OK JSON_SUCCESS
#else
typedef void KisJsonActionResult;
#define KIS_JSON_ACTION_OK
#endif
#if PG_VERSION_NUM >= 170000
#define kis_json_lex(json, len) \
	makeJsonLexContextCstringLen(NULL, (json), (len), PG_UTF8, true)
#else
#define kis_json_lex(json, len) \
	makeJsonLexContextCstringLen((char *) (json), (int) (len), PG_UTF8, true)
#endif
#endif

/*
 * OpenSSL: SHA-256 looked up once per process.  In OpenSSL 3 EVP_sha256()
 * makes every digest look the implementation up again; EVP_MD_fetch() does
 * it once.  OpenSSL 1.1 has no lookup to save.  Compiled only in files that
 * include <openssl/evp.h> first.
 */
#if defined(OPENSSL_EVP_H) || defined(HEADER_ENVELOPE_H)
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
#define kis_fetch_sha256() EVP_MD_fetch(NULL, "SHA256", NULL)
#else
#define kis_fetch_sha256() EVP_sha256()
#endif
#endif

/*
 * OpenSSL: wiping a record's plaintext once handed over exists from 3.0;
 * before, record buffers are not kept (transport.c, ssl_ctx_cb).  Compiled
 * only in files that include <openssl/ssl.h> first.
 */
#if defined(OPENSSL_SSL_H) || defined(HEADER_SSL_H)
#ifdef SSL_OP_CLEANSE_PLAINTEXT
#define KIS_SSL_CAN_CLEANSE 1
#else
#define KIS_SSL_CAN_CLEANSE 0
#define SSL_OP_CLEANSE_PLAINTEXT 0
#endif
#endif

/*
 * libcurl: the oldest supported version, and options that newer versions
 * have.  Compiled only in files that include <curl/curl.h> first.
 */
#ifdef LIBCURL_VERSION_NUM

#if LIBCURL_VERSION_NUM < 0x073e00
#error "kis_fdw needs libcurl 7.62.0 or later (the URL API, curl_url())"
#endif

/*
 * Limit a transfer to one protocol ("http" or "https"): a string option
 * since 7.85, which deprecated the bitmask one.
 */
#if LIBCURL_VERSION_NUM >= 0x075500
#define kis_curl_protocols_option CURLOPT_PROTOCOLS_STR
#define kis_curl_protocols(https) ((https) ? "https" : "http")
#else
#define kis_curl_protocols_option CURLOPT_PROTOCOLS
#define kis_curl_protocols(https) ((long) ((https) ? CURLPROTO_HTTPS : CURLPROTO_HTTP))
#endif

/*
 * CURLOPT_QUICK_EXIT (7.87): releasing a transfer that is still resolving
 * does not wait for the resolver thread.  Older libcurl waits.
 */
#if LIBCURL_VERSION_NUM >= 0x075700
#define KIS_HAVE_CURLOPT_QUICK_EXIT 1
#endif

/*
 * curl_easy_setopt() and curl_multi_setopt() with their results checked: an
 * option libcurl refuses (not built in, out of memory) is an error naming
 * the option, never a transfer that silently runs without it.
 */
#define kis_easy_setopt(easy, option, value) \
	do { \
		CURLcode	kis_rc_ = curl_easy_setopt((easy), (option), (value)); \
		if (kis_rc_ != CURLE_OK) \
			kis_setopt_failed(#option, curl_easy_strerror(kis_rc_), \
							  kis_rc_ == CURLE_OUT_OF_MEMORY); \
	} while (0)

#define kis_multi_setopt(multi, option, value) \
	do { \
		CURLMcode	kis_rc_ = curl_multi_setopt((multi), (option), (value)); \
		if (kis_rc_ != CURLM_OK) \
			kis_setopt_failed(#option, curl_multi_strerror(kis_rc_), \
							  kis_rc_ == CURLM_OUT_OF_MEMORY); \
	} while (0)

static inline void
kis_setopt_failed(const char *option, const char *why, bool out_of_memory)
{
	ereport(ERROR,
			(errcode(out_of_memory ? ERRCODE_OUT_OF_MEMORY : ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("could not set libcurl option %s: %s", option, why),
			 errdetail("libcurl version: %s.", curl_version())));
}

#endif							/* LIBCURL_VERSION_NUM */

/* malloc statistics: mallinfo2() from glibc 2.33 (mallinfo()'s ints wrap) */
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
#define KIS_HAVE_MALLINFO2 1
#endif

#endif							/* KIS_COMPAT_H */
