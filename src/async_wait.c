/*-------------------------------------------------------------------------
 *
 * async_wait.c
 *	  The descriptor an asynchronous Append waits on for one fetcher: an
 *	  epoll instance of its own holding the transport's sockets (with the
 *	  interest curl asked for) and a timerfd armed for the fetcher's next
 *	  deadline, so that waits without a socket (the rate gate, a back-off,
 *	  a token) still wake the Append.
 *
 * One instance per fetcher, since the Append's wait set refuses the same
 * descriptor twice; each watches all of curl's sockets, as they are shared.
 * The Append waits without our latch, so the timer is never armed further
 * than KIS_ASYNC_TICK_MS ahead: a cancel is seen that often at least.
 * docs/async.md describes the executor protocol this relies on.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "storage/fd.h"
#include "utils/memutils.h"

#include "async_wait.h"
#include "transport.h"

#define KIS_ASYNC_TICK_MS		100 /* an async wait sees interrupts this often */

struct KisAsyncWait
{
	int			epoll_fd;		/* -1 when closed */
	int			timer_fd;
	uint64		socket_gen;		/* the transport's socket_gen it was built for */
	uint32		events[KIS_MAX_SOCKETS];	/* registered, per transport socket */
};

/* Close the descriptors and forget *owner; never throws (cleanup callbacks) */
void
kis_async_wait_release(KisAsyncWait **owner)
{
	KisAsyncWait *w = *owner;

	if (w == NULL)
		return;
	if (w->epoll_fd >= 0)
	{
		close(w->epoll_fd);
		ReleaseExternalFD();
		w->epoll_fd = -1;
	}
	if (w->timer_fd >= 0)
	{
		close(w->timer_fd);
		ReleaseExternalFD();
		w->timer_fd = -1;
	}
	*owner = NULL;
}

/* Account a descriptor about to be opened; ERROR when the budget is spent */
static void
async_acquire_fd(void)
{
	if (!AcquireExternalFD())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("too many open files for an asynchronous KIS scan"),
				 errhint("Raise max_files_per_process, or set the foreign table's async_capable option to false.")));
}

static void
async_epoll_ctl(int epoll_fd, int op, int fd, uint32 events)
{
	struct epoll_event ev;

	ev.events = events;
	ev.data.fd = fd;
	if (epoll_ctl(epoll_fd, op, fd, &ev) < 0)
		ereport(ERROR,
				(errcode_for_socket_access(),
				 errmsg("could not watch a KIS connection for an asynchronous scan: %m")));
}

/* A fresh epoll instance holding the timerfd; curl's sockets come after */
static void
async_epoll_rebuild(KisAsyncWait *w)
{
	if (w->epoll_fd >= 0)
	{
		close(w->epoll_fd);
		ReleaseExternalFD();
		w->epoll_fd = -1;
	}
	async_acquire_fd();
	w->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (w->epoll_fd < 0)
	{
		ReleaseExternalFD();
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("could not create an epoll instance for an asynchronous KIS scan: %m")));
	}
	async_epoll_ctl(w->epoll_fd, EPOLL_CTL_ADD, w->timer_fd, EPOLLIN);
	memset(w->events, 0, sizeof(w->events));
	w->socket_gen = kis_transport_socket_gen();
}

/*
 * A wait in cxt; *owner is set before any descriptor is opened, so that
 * the caller's cleanup (kis_async_wait_release) closes whatever exists.
 */
void
kis_async_wait_create(MemoryContext cxt, KisAsyncWait **owner)
{
	KisAsyncWait *w = MemoryContextAllocZero(cxt, sizeof(KisAsyncWait));

	w->epoll_fd = -1;
	w->timer_fd = -1;
	*owner = w;

	async_acquire_fd();
	w->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (w->timer_fd < 0)
	{
		ReleaseExternalFD();
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("could not create a timer for an asynchronous KIS scan: %m")));
	}
	async_epoll_rebuild(w);
}

/*
 * Make the epoll instance watch curl's sockets as curl wants them watched
 * now.  Positions of the transport's sockets are stable while its
 * socket_gen is, so only changed interests are modified; a socket that
 * came or went means a new instance (a closed socket leaves epoll by
 * itself, and its number may already belong to a new one).
 */
static void
async_epoll_sync(KisAsyncWait *w)
{
	if (w->socket_gen != kis_transport_socket_gen())
		async_epoll_rebuild(w);
	for (int i = 0; i < kis_transport_nsockets(); i++)
	{
		uint32		events = 0;
		int			fd;
		bool		readable;
		bool		writable;

		kis_transport_socket(i, &fd, &readable, &writable);
		if (readable)
			events |= EPOLLIN;
		if (writable)
			events |= EPOLLOUT;
		if (events == w->events[i])
			continue;
		async_epoll_ctl(w->epoll_fd,
						w->events[i] == 0 ? EPOLL_CTL_ADD :
						events == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD,
						fd, events);
		w->events[i] = events;
	}
}

/*
 * The descriptor to wait on, readable when curl has something to do or at
 * deadline (-1: none), whichever comes first.  Valid until the next call.
 */
int
kis_async_wait_arm(KisAsyncWait *w, TimestampTz deadline, TimestampTz now)
{
	int64		delay_us;
	struct itimerspec spec;

	delay_us = deadline < 0 ? KIS_ASYNC_TICK_MS * 1000 :
		Min(deadline - now, KIS_ASYNC_TICK_MS * 1000);
	delay_us = Max(delay_us, 1);	/* 0 would disarm the timer */

	async_epoll_sync(w);
	memset(&spec, 0, sizeof(spec));
	spec.it_value.tv_sec = delay_us / USECS_PER_SEC;
	spec.it_value.tv_nsec = (delay_us % USECS_PER_SEC) * 1000;
	/* re-arming also forgets an expiry nobody read */
	if (timerfd_settime(w->timer_fd, 0, &spec, NULL) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not arm the timer of an asynchronous KIS scan: %m")));
	return w->epoll_fd;
}
