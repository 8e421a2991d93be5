/*-------------------------------------------------------------------------
 *
 * transport.h
 *	  The backend's HTTP transport over libcurl's multi interface: pooled
 *	  handles and connections, the sockets and timer curl asks us to watch,
 *	  one wait on them all, and transfers that collect their answer
 *	  (transport.c).  It knows nothing of KIS, requests' meaning or scans.
 *
 * src/transport.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef KIS_TRANSPORT_H
#define KIS_TRANSPORT_H

#include <curl/curl.h>

#include "datatype/timestamp.h"
#include "utils/palloc.h"

#define KIS_MAX_SOCKETS			256
#define KIS_MAX_RESPONSE_BYTES	(4 * 1024 * 1024)

/* One HTTP exchange on the wire; owned by its caller, sent again at will */
typedef struct KisTransfer
{
	void	   *owner;			/* handed back by kis_transport_next_done */
	MemoryContext cxt;			/* where the body grows */
	bool		secret;			/* what it sends or receives holds a secret:
								 * the body is wiped, the handle not pooled */
	const char *keep_header;	/* a reply header to keep, or NULL */
	char		kept[4];		/* its value (cut short), or "" */

	/* while on the wire; kis_transfer_release gives them back */
	CURL	   *easy;
	struct curl_slist *headers;

	char	   *body;			/* the answer, palloc'd without throwing */
	size_t		body_len;
	size_t		body_cap;
	bool		body_too_large;
	char	   *errbuf;			/* CURL_ERROR_SIZE bytes in cxt from the first
								 * send until kis_transfer_done, or NULL */
} KisTransfer;

/* The earlier of two times, -1 meaning none */
static inline TimestampTz
kis_earliest(TimestampTz a, TimestampTz b)
{
	if (a < 0)
		return b;
	if (b < 0)
		return a;
	return Min(a, b);
}

extern void kis_transport_global_init(void);
extern void kis_transport_attach(int max_connections);
extern void kis_transport_size_pool(void);
extern void kis_transport_detach(int max_connections, bool orderly);

extern void kis_transfer_begin(KisTransfer *x, const char *url, const char *ca_file);
extern void kis_transfer_add_header(KisTransfer *x, const char *line);
extern void kis_transfer_add_header_value(KisTransfer *x, const char *name,
										  const char *value);
extern void kis_transfer_post(KisTransfer *x, const char *body);
extern void kis_transfer_submit(KisTransfer *x);
extern bool kis_transfer_connecting(KisTransfer *x);
extern void kis_transfer_release(KisTransfer *x);
extern void kis_transfer_wipe_body(KisTransfer *x);
extern void kis_transfer_forget_body(KisTransfer *x);
extern const char *kis_transfer_error(KisTransfer *x, CURLcode rc);
extern void kis_transfer_set_error(KisTransfer *x, const char *fmt,...) pg_attribute_printf(2, 3);
extern void kis_transfer_done(KisTransfer *x);
extern bool kis_transfer_untrusted(CURLcode rc);

extern void kis_transport_wait(TimestampTz wake);
extern bool kis_transport_next_done(KisTransfer **x, CURLcode *rc, long *status);
extern TimestampTz kis_transport_timer(void);
extern uint64 kis_transport_socket_gen(void);
extern int	kis_transport_nsockets(void);
extern void kis_transport_socket(int i, int *fd, bool *readable, bool *writable);

#endif							/* KIS_TRANSPORT_H */
