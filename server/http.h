/* http.h - the HTTP listener's life cycle (http.c), used by main.c. */
#ifndef SRV_HTTP_H
#define SRV_HTTP_H
#include <sys/socket.h>

/* Start the libmicrohttpd daemon on g_srv.cfg host:port; 0 or -1 (logged). */
int srv_http_start(void);
/* Stop accepting, wait up to wait_s for in-flight requests, stop. */
void srv_http_stop(double wait_s);
/* Resolve host:port to one socket address; 0 or -1. */
int srv_resolve(const char *host, unsigned port, struct sockaddr_storage *out, socklen_t *len);
/* 1 if host resolves to a loopback address (127/8, ::1). */
int srv_is_loopback(const char *host);
#endif
