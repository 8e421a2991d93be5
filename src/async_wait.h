/*-------------------------------------------------------------------------
 *
 * async_wait.h
 *	  The descriptor an asynchronous Append waits on for one fetcher: an
 *	  epoll instance over the transport's sockets and a timerfd for the
 *	  fetcher's next deadline (async_wait.c).
 *
 * src/async_wait.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef KIS_ASYNC_WAIT_H
#define KIS_ASYNC_WAIT_H

#include "datatype/timestamp.h"
#include "utils/palloc.h"

typedef struct KisAsyncWait KisAsyncWait;

extern void kis_async_wait_create(MemoryContext cxt, KisAsyncWait **owner);
extern void kis_async_wait_release(KisAsyncWait **owner);
extern int	kis_async_wait_arm(KisAsyncWait *w, TimestampTz deadline, TimestampTz now);

#endif							/* KIS_ASYNC_WAIT_H */
