/* psd's listening side: parsing HOST:PORT (IPv4 or [IPv6]), binding and listening (the data port,
 * and the metrics port for metrics_http.c), accepting into connections (conn.c), and port files
 * written atomically (temp file + rename) once a port is known, so launchers can use port 0. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include <ps/internal/log.h>

#include "conn.h"
#include "server.h"

static void on_connection(uv_stream_t *listener, int status)
{
    psd_server_t *srv = listener->data;
    if (status < 0) {
        PS_LOG(PS_LOG_WARNING, "net", "accept error: %s", uv_strerror(status));
        return;
    }
    if (srv->stopping)
        return;
    psd_conn_accept(srv);
}

int psd_net_parse_addr(const char *flag,
                       const char *spec,
                       struct sockaddr_storage *ss,
                       ps_error_t *err)
{
    char host[256];
    const char *colon = strrchr(spec, ':');
    if (!colon)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "--%s '%s': expected HOST:PORT", flag,
                            spec);
    size_t hlen = (size_t) (colon - spec);
    const char *hs = spec;
    if (hlen >= 2 && spec[0] == '[' && spec[hlen - 1] == ']') {
        hs = spec + 1;
        hlen -= 2;
    }
    if (hlen == 0 || hlen >= sizeof host)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "--%s '%s': bad host", flag, spec);
    memcpy(host, hs, hlen);
    host[hlen] = '\0';
    char *end = NULL;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (errno || !colon[1] || *end || port < 0 || port > 65535)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "--%s '%s': port must be a number from 0 to 65535", flag, spec);
    if (uv_ip4_addr(host, (int) port, (struct sockaddr_in *) ss) == 0)
        return 0;
    if (uv_ip6_addr(host, (int) port, (struct sockaddr_in6 *) ss) == 0)
        return 0;
    return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                        "--%s '%s': '%s' is not an IPv4 or IPv6 address", flag, spec, host);
}

int psd_net_bind_listen(uv_tcp_t *tcp,
                        const char *flag,
                        const char *spec,
                        uv_connection_cb cb,
                        int *port,
                        ps_error_t *err)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    int rc = psd_net_parse_addr(flag, spec, &ss, err);
    if (rc)
        return rc;
    if ((rc = uv_tcp_bind(tcp, (const struct sockaddr *) &ss, 0)) == 0)
        rc = uv_listen((uv_stream_t *) tcp, 511, cb);
    if (rc < 0)
        return ps_error_set(err, PS_ERR_UNAVAILABLE, "cannot listen on %s (--%s): %s", spec, flag,
                            uv_strerror(rc));
    struct sockaddr_storage bound;
    int len = sizeof bound;
    if ((rc = uv_tcp_getsockname(tcp, (struct sockaddr *) &bound, &len)) < 0)
        return ps_error_set(err, PS_ERR_UNAVAILABLE, "getsockname: %s", uv_strerror(rc));
    char name[64] = "";
    if (bound.ss_family == AF_INET) {
        uv_ip4_name((const struct sockaddr_in *) &bound, name, sizeof name);
        *port = ntohs(((const struct sockaddr_in *) &bound)->sin_port);
        PS_LOG(PS_LOG_NOTICE, "net", "--%s: listening on %s:%d", flag, name, *port);
    } else {
        uv_ip6_name((const struct sockaddr_in6 *) &bound, name, sizeof name);
        *port = ntohs(((const struct sockaddr_in6 *) &bound)->sin6_port);
        PS_LOG(PS_LOG_NOTICE, "net", "--%s: listening on [%s]:%d", flag, name, *port);
    }
    return 0;
}

int psd_net_listen(psd_server_t *srv, ps_error_t *err)
{
    srv->listener.data = srv;
    return psd_net_bind_listen(&srv->listener, "listen", srv->cfg.listen, on_connection, &srv->port,
                               err);
}

int psd_net_write_port_file(const char *flag, const char *path, int port, ps_error_t *err)
{
    if (!path[0])
        return 0;
    char tmp[PSD_CONFIG_STR_MAX + 32];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long) getpid());
    FILE *f = fopen(tmp, "w");
    if (!f)
        return ps_error_set(err, PS_ERR_UNAVAILABLE, "--%s: cannot create %s: %s", flag, tmp,
                            strerror(errno));
    int ok = fprintf(f, "%d\n", port) > 0;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return ps_error_set(err, PS_ERR_UNAVAILABLE, "--%s: cannot write %s: %s", flag, path,
                            strerror(e));
    }
    return 0;
}
