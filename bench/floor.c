/*-------------------------------------------------------------------------
 *
 * floor.c
 *	  What one cold request costs below kis_fdw: the same GET requests to
 *	  the same mock, made by a program that does nothing with the answers.
 *
 *	  floor curl N FIRST [CONCURRENCY]
 *		libcurl the way kis_fdw's transport drives it: a multi handle, an
 *		epoll set fed by CURLMOPT_SOCKETFUNCTION, curl_multi_socket_action,
 *		CONCURRENCY (8) transfers in flight on kept-alive connections, easy
 *		handles reused, CURLOPT_NOSIGNAL.
 *	  floor tls N FIRST
 *		one blocking OpenSSL connection, kept alive: write a request, read
 *		its answer (Content-Length), and again.  No HTTP library at all.
 *
 *	  Each asks for symbols FIRST .. FIRST+N-1 (six digits), after a warm-up
 *	  of its own, and prints the process's CPU time (user + system, from
 *	  getrusage) per request in microseconds.  KIS_MOCK_URL and KIS_MOCK_CA
 *	  name the mock, as for bench.py.  See bench/README.md, "Overhead".
 *
 *-------------------------------------------------------------------------
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PRICE_PATH	"/uapi/domestic-stock/v1/quotations/inquire-price"
#define WARM_UP		64
#define MAX_INFLIGHT 64

static const char *base_url;
static const char *ca_file;
static char token[2048];

static void
die(const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	fputs("floor: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

static double
cpu_us(void)
{
	struct rusage r;

	getrusage(RUSAGE_SELF, &r);
	return (r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1e6 +
		r.ru_utime.tv_usec + r.ru_stime.tv_usec;
}

/* The access token out of a tokenP answer (nothing else is read of it) */
static void
take_token(const char *answer)
{
	const char *p = strstr(answer, "\"access_token\"");
	const char *end;

	if (p == NULL || (p = strchr(p + 14, '"')) == NULL ||
		(end = strchr(++p, '"')) == NULL || end - p >= (long) sizeof(token))
		die("no access_token in the tokenP answer");
	memcpy(token, p, end - p);
	token[end - p] = '\0';
}

static const char *
token_body(const char *key)
{
	static char body[256];

	snprintf(body, sizeof(body),
			 "{\"grant_type\":\"client_credentials\",\"appkey\":\"%s\","
			 "\"appsecret\":\"floor-secret\"}", key);
	return body;
}

/* ---------------------------------------------------------------- curl */

typedef struct Answer
{
	char		buf[8192];
	size_t		len;
} Answer;

static int	epfd;
static double deadline_ms = -1;	/* curl's timer, CLOCK_MONOTONIC; -1: none */

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static size_t
keep_cb(char *p, size_t size, size_t n, void *arg)
{
	Answer	   *a = arg;
	size_t		len = size * n;

	if (a->len + len < sizeof(a->buf))
	{
		memcpy(a->buf + a->len, p, len);
		a->buf[a->len += len] = '\0';
	}
	return len;
}

static size_t
drop_cb(char *p, size_t size, size_t n, void *arg)
{
	return size * n;
}

static int
socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct epoll_event ev = {0};

	ev.data.fd = fd;
	if (what == CURL_POLL_REMOVE)
	{
		epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
		return 0;
	}
	ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0) | (what & CURL_POLL_OUT ? EPOLLOUT : 0);
	if (epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev) != 0 &&
		epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
		die("epoll_ctl: %m");
	return 0;
}

static int
timer_cb(CURLM *multi, long ms, void *userp)
{
	deadline_ms = ms < 0 ? -1 : now_ms() + ms;
	return 0;
}

static struct curl_slist *
data_headers(const char *key)
{
	struct curl_slist *h = NULL;
	char		line[2200];

	h = curl_slist_append(h, "content-type: application/json; charset=utf-8");
	snprintf(line, sizeof(line), "authorization: Bearer %s", token);
	h = curl_slist_append(h, line);
	snprintf(line, sizeof(line), "appkey: %s", key);
	h = curl_slist_append(h, line);
	h = curl_slist_append(h, "appsecret: floor-secret");
	h = curl_slist_append(h, "tr_id: FHKST01010100");
	h = curl_slist_append(h, "custtype: P");
	return h;
}

static void
set_common(CURL *easy)
{
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_CAINFO, ca_file);
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(easy, CURLOPT_USERAGENT, "kis_fdw/1.0");
	curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
}

static void
curl_token(const char *key)
{
	CURL	   *easy = curl_easy_init();
	Answer		a = {0};
	char		url[512];
	struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");

	snprintf(url, sizeof(url), "%s/oauth2/tokenP", base_url);
	set_common(easy);
	curl_easy_setopt(easy, CURLOPT_URL, url);
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(easy, CURLOPT_POSTFIELDS, token_body(key));
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, keep_cb);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, &a);
	if (curl_easy_perform(easy) != CURLE_OK)
		die("tokenP failed");
	take_token(a.buf);
	curl_easy_cleanup(easy);
	curl_slist_free_all(h);
}

/* Put easy on the wire for the price of one symbol */
static void
start_price(CURLM *multi, CURL *easy, int symbol)
{
	char		url[512];

	snprintf(url, sizeof(url), "%s" PRICE_PATH "?FID_COND_MRKT_DIV_CODE=J&FID_INPUT_ISCD=%06d",
			 base_url, symbol);
	curl_easy_setopt(easy, CURLOPT_URL, url);	/* curl copies it */
	curl_multi_add_handle(multi, easy);
}

static double
run_curl(int n, int first, int concurrency)
{
	const char *key = "floor-curl-key";
	CURLM	   *multi;
	CURL	   *pool[MAX_INFLIGHT];
	struct curl_slist *h;
	int			next = 0,
				done = 0,
				total = n + WARM_UP,
				running;
	double		t0 = 0;

	curl_token(key);
	h = data_headers(key);
	if ((epfd = epoll_create1(EPOLL_CLOEXEC)) < 0)
		die("epoll_create1: %m");
	multi = curl_multi_init();
	curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
	curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, timer_cb);

	for (int i = 0; i < concurrency; i++)
	{
		pool[i] = curl_easy_init();
		set_common(pool[i]);
		curl_easy_setopt(pool[i], CURLOPT_HTTPHEADER, h);
		curl_easy_setopt(pool[i], CURLOPT_WRITEFUNCTION, drop_cb);
	}

	for (int i = 0; i < concurrency && next < total; i++)
		start_price(multi, pool[i], first + next++);
	curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
	while (done < total)
	{
		struct epoll_event ev[MAX_INFLIGHT];
		int			nev = 0;
		CURLMsg    *msg;
		int			left;

		/* as the transport: an expired timer first, then wait on the sockets */
		if (deadline_ms >= 0 && now_ms() >= deadline_ms)
		{
			deadline_ms = -1;
			curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
		}
		else
			nev = epoll_wait(epfd, ev, MAX_INFLIGHT,
							 deadline_ms < 0 ? 1000 : (int) (deadline_ms - now_ms()) + 1);
		for (int i = 0; i < nev; i++)
			curl_multi_socket_action(multi, ev[i].data.fd,
									 (ev[i].events & EPOLLIN ? CURL_CSELECT_IN : 0) |
									 (ev[i].events & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
									 (ev[i].events & (EPOLLERR | EPOLLHUP) ? CURL_CSELECT_ERR : 0),
									 &running);
		while ((msg = curl_multi_info_read(multi, &left)) != NULL)
		{
			CURL	   *easy = msg->easy_handle;
			long		status = 0;

			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
			if (msg->data.result != CURLE_OK || status != 200)
				die("request failed: %s, HTTP %ld", curl_easy_strerror(msg->data.result), status);
			curl_multi_remove_handle(multi, easy);
			if (++done == WARM_UP)
				t0 = cpu_us();
			if (next < total)
				start_price(multi, easy, first + next++);
		}
	}
	return (cpu_us() - t0) / n;
}

/* ---------------------------------------------------------------- tls */

static SSL *ssl;
static char rbuf[65536];
static int	rlen;

/* Send one request, read its whole answer into rbuf */
static void
exchange(const char *req, int len)
{
	char	   *end;
	const char *cl;

	if (SSL_write(ssl, req, len) != len)
		die("SSL_write failed");
	rlen = 0;
	for (;;)
	{
		int			got = SSL_read(ssl, rbuf + rlen, sizeof(rbuf) - 1 - rlen);

		if (got <= 0)
			die("SSL_read failed");
		rbuf[rlen += got] = '\0';
		if ((end = strstr(rbuf, "\r\n\r\n")) == NULL)
			continue;
		if ((cl = strcasestr(rbuf, "\ncontent-length:")) == NULL || cl > end)
			die("an answer without Content-Length");
		if (rlen >= (end - rbuf) + 4 + atol(cl + 16))
			return;
	}
}

static double
run_tls(int n, int first)
{
	const char *key = "floor-tls-key";
	const char *hostport = strstr(base_url, "://");
	char		host[256];
	char		req[4096];
	const char *colon;
	SSL_CTX    *ctx;
	struct sockaddr_in sa = {.sin_family = AF_INET};
	int			fd,
				one = 1,
				len;
	double		t0 = 0;

	if (hostport == NULL || (colon = strrchr(hostport += 3, ':')) == NULL ||
		colon - hostport >= (long) sizeof(host))
		die("cannot read host:port from KIS_MOCK_URL");
	memcpy(host, hostport, colon - hostport);
	host[colon - hostport] = '\0';
	sa.sin_port = htons(atoi(colon + 1));
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
		die("tls mode wants an IPv4 address in KIS_MOCK_URL");

	ctx = SSL_CTX_new(TLS_client_method());
	if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1)
		die("cannot load %s", ca_file);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if ((fd = socket(AF_INET, SOCK_STREAM, 0)) < 0 ||
		connect(fd, (struct sockaddr *) &sa, sizeof(sa)) != 0)
		die("connect: %m");
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	ssl = SSL_new(ctx);
	X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host);
	SSL_set_fd(ssl, fd);
	if (SSL_connect(ssl) != 1)
		die("TLS handshake failed");

	len = snprintf(req, sizeof(req),
				   "POST /oauth2/tokenP HTTP/1.1\r\nHost: %s\r\n"
				   "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
				   hostport, strlen(token_body(key)), token_body(key));
	exchange(req, len);
	take_token(rbuf);

	for (int i = 0; i < n + WARM_UP; i++)
	{
		if (i == WARM_UP)
			t0 = cpu_us();
		len = snprintf(req, sizeof(req),
					   "GET " PRICE_PATH "?FID_COND_MRKT_DIV_CODE=J&FID_INPUT_ISCD=%06d HTTP/1.1\r\n"
					   "Host: %s\r\nUser-Agent: kis_fdw/1.0\r\nAccept: */*\r\n"
					   "content-type: application/json; charset=utf-8\r\n"
					   "authorization: Bearer %s\r\nappkey: %s\r\nappsecret: floor-secret\r\n"
					   "tr_id: FHKST01010100\r\ncusttype: P\r\n\r\n",
					   first + i, hostport, token, key);
		exchange(req, len);
		if (strncmp(rbuf, "HTTP/1.1 200", 12) != 0)
			die("request failed: %.40s", rbuf);
	}
	return (cpu_us() - t0) / n;
}

int
main(int argc, char **argv)
{
	int			n,
				first;
	double		us;

	base_url = getenv("KIS_MOCK_URL");
	ca_file = getenv("KIS_MOCK_CA");
	if (argc < 4 || base_url == NULL || ca_file == NULL)
		die("usage: floor curl|tls N FIRST [CONCURRENCY], with KIS_MOCK_URL and KIS_MOCK_CA set");
	n = atoi(argv[2]);
	first = atoi(argv[3]);
	if (n <= 0)
		die("N must be positive");
	if (strcmp(argv[1], "curl") == 0)
	{
		int			c = argc > 4 ? atoi(argv[4]) : 8;

		if (c < 1 || c > MAX_INFLIGHT)
			die("CONCURRENCY must be 1 to %d", MAX_INFLIGHT);
		curl_global_init(CURL_GLOBAL_DEFAULT);
		us = run_curl(n, first, c);
	}
	else if (strcmp(argv[1], "tls") == 0)
		us = run_tls(n, first);
	else
		die("unknown mode \"%s\"", argv[1]);
	printf("%.2f\n", us);
	return 0;
}
