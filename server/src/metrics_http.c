/* psd's metrics port: HTTP/1.1 requests parsed by http-parser on psd's loop, routed to /metrics,
 * /healthz or /readyz, each answered once with "Connection: close". Limits: PSD_MHTTP_MAX_REQUEST
 * bytes of request (431/413), PSD_MHTTP_MAX_CONNS connections (503), PSD_MHTTP_DEADLINE_MS from
 * accept to the last byte written (408, or a plain close while writing); a sweep timer enforces
 * the deadline. Only GET and HEAD are served (405); other paths get 404; a parse error 400. */
#include "metrics_http.h"

#include <http_parser.h>
#include <stdio.h>
#include <string.h>

#include <ps/internal/alloc.h>
#include <ps/internal/log.h>

#include "server.h"

#define URL_MAX 1024

typedef struct hconn {
    uv_tcp_t tcp;
    uv_write_t wreq;
    struct hconn *prev, *next;
    struct psd_mhttp *h;
    http_parser parser;
    uint64_t deadline_ms;
    size_t received;
    int headers_done;
    int answered; /* a response is queued (or the connection is closing) */
    size_t url_len;
    char url[URL_MAX];
    char rbuf[2048];
    psd_expo_t out;
} hconn_t;

struct psd_mhttp {
    uv_loop_t *loop;
    uv_tcp_t listener;
    uv_timer_t sweep;
    psd_mhttp_callbacks_t cb;
    hconn_t conns; /* list head */
    size_t nconns;
    int open_handles; /* listener, sweep and connections not yet closed */
    int closing;
};

static http_parser_settings settings;

static void on_handle_closed(uv_handle_t *hd)
{
    psd_mhttp_t *h = hd->data;
    h->open_handles--;
}

static void on_conn_closed(uv_handle_t *hd)
{
    hconn_t *c = hd->data;
    psd_mhttp_t *h = c->h;
    c->prev->next = c->next;
    c->next->prev = c->prev;
    h->nconns--;
    h->open_handles--;
    psd_expo_free(&c->out);
    ps_free(c);
}

static void conn_close(hconn_t *c)
{
    c->answered = 1;
    if (!uv_is_closing((uv_handle_t *) &c->tcp))
        uv_close((uv_handle_t *) &c->tcp, on_conn_closed);
}

static void on_written(uv_write_t *w, int status)
{
    (void) status;
    conn_close(w->data);
}

/* Queue one response and close after it; body NULL for none (HEAD gets the length only). */
static void respond(hconn_t *c,
                    int code,
                    const char *reason,
                    const char *ctype,
                    const char *extra,
                    const char *body,
                    size_t blen,
                    int head_only)
{
    if (c->answered)
        return;
    c->answered = 1;
    c->h->cb.ops->http_requests++;
    if (code >= 400)
        c->h->cb.ops->http_refused++;
    uv_read_stop((uv_stream_t *) &c->tcp);
    psd_expo_t *o = &c->out;
    o->len = 0;
    psd_expo_printf(o,
                    "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
                    "Connection: close\r\n\r\n",
                    code, reason, ctype, blen, extra ? extra : "");
    if (!head_only && blen && !o->oom) {
        if (o->cap - o->len < blen + 1) {
            size_t cap = o->len + blen + 1;
            char *nb = ps_realloc(o->buf, cap);
            if (!nb)
                o->oom = 1;
            else {
                o->buf = nb;
                o->cap = cap;
            }
        }
        if (!o->oom) {
            memcpy(o->buf + o->len, body, blen);
            o->len += blen;
        }
    }
    if (o->oom) {
        conn_close(c);
        return;
    }
    uv_buf_t b = uv_buf_init(o->buf, (unsigned) o->len);
    c->wreq.data = c;
    if (uv_write(&c->wreq, (uv_stream_t *) &c->tcp, &b, 1, on_written) != 0)
        conn_close(c);
}

static void respond_text(hconn_t *c, int code, const char *reason, const char *text)
{
    respond(c, code, reason, "text/plain; charset=utf-8", NULL, text, strlen(text), 0);
}

static void route(hconn_t *c)
{
    int head = c->parser.method == HTTP_HEAD;
    if (c->parser.method != HTTP_GET && !head) {
        respond(c, 405, "Method Not Allowed", "text/plain; charset=utf-8", "Allow: GET, HEAD\r\n",
                "only GET and HEAD are served\n", 29, 0);
        return;
    }
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (http_parser_parse_url(c->url, c->url_len, 0, &u) != 0 || !(u.field_set & (1 << UF_PATH))) {
        respond_text(c, 400, "Bad Request", "malformed request target\n");
        return;
    }
    const char *path = c->url + u.field_data[UF_PATH].off;
    size_t plen = u.field_data[UF_PATH].len;
    psd_mhttp_t *h = c->h;
#define IS(p) (plen == sizeof(p) - 1 && memcmp(path, p, plen) == 0)
    if (IS("/metrics")) {
        psd_expo_t body = {0};
        h->cb.ops->http_requests++; /* this request counts in its own exposition */
        h->cb.render(h->cb.ctx, &body);
        h->cb.ops->http_requests--;
        if (body.oom) {
            psd_expo_free(&body);
            respond_text(c, 500, "Internal Server Error", "out of memory rendering metrics\n");
            return;
        }
        respond(c, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", NULL, body.buf, body.len,
                head);
        psd_expo_free(&body);
    } else if (IS("/healthz")) {
        respond(c, 200, "OK", "text/plain; charset=utf-8", NULL, "ok\n", 3, head);
    } else if (IS("/readyz")) {
        psd_state_t s = h->cb.ops->state;
        char text[32];
        snprintf(text, sizeof text, "%s\n", psd_state_name(s));
        if (s == PSD_STATE_READY)
            respond(c, 200, "OK", "text/plain; charset=utf-8", NULL, text, strlen(text), head);
        else
            respond(c, 503, "Service Unavailable", "text/plain; charset=utf-8", NULL, text,
                    strlen(text), head);
    } else {
        respond_text(c, 404, "Not Found",
                     "not found: this port serves /metrics, /healthz and /readyz\n");
    }
#undef IS
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    hconn_t *c = p->data;
    if (len > URL_MAX - 1 - c->url_len) {
        respond_text(c, 414, "URI Too Long", "request target too long\n");
        return 1;
    }
    memcpy(c->url + c->url_len, at, len);
    c->url_len += len;
    c->url[c->url_len] = '\0';
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    hconn_t *c = p->data;
    c->headers_done = 1;
    return 0;
}

static int on_message_complete(http_parser *p)
{
    hconn_t *c = p->data;
    route(c);
    return 1; /* one request per connection: stop parsing */
}

static void on_alloc(uv_handle_t *hd, size_t suggested, uv_buf_t *buf)
{
    (void) suggested;
    hconn_t *c = hd->data;
    *buf = uv_buf_init(c->rbuf, sizeof c->rbuf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    hconn_t *c = s->data;
    if (nread == 0 || c->answered)
        return;
    if (nread < 0) {
        if (nread != UV_EOF)
            c->h->cb.ops->http_refused++;
        conn_close(c);
        return;
    }
    if ((size_t) nread > PSD_MHTTP_MAX_REQUEST - c->received) {
        if (c->headers_done)
            respond_text(c, 413, "Content Too Large", "request body too large\n");
        else
            respond_text(c, 431, "Request Header Fields Too Large", "request headers too large\n");
        return;
    }
    c->received += (size_t) nread;
    size_t n = http_parser_execute(&c->parser, &settings, buf->base, (size_t) nread);
    if (c->answered)
        return;
    if (HTTP_PARSER_ERRNO(&c->parser) != HPE_OK || n != (size_t) nread) {
        char text[160];
        snprintf(text, sizeof text, "malformed HTTP request: %s\n",
                 http_errno_description(HTTP_PARSER_ERRNO(&c->parser)));
        respond_text(c, 400, "Bad Request", text);
    }
}

static void on_connection(uv_stream_t *listener, int status)
{
    psd_mhttp_t *h = listener->data;
    if (status < 0 || h->closing)
        return;
    hconn_t *c = ps_calloc(1, sizeof *c);
    if (!c) {
        PS_LOG(PS_LOG_WARNING, "metrics", "out of memory accepting a metrics connection");
        return;
    }
    c->h = h;
    uv_tcp_init(h->loop, &c->tcp);
    c->tcp.data = c;
    c->next = h->conns.next;
    c->prev = &h->conns;
    h->conns.next->prev = c;
    h->conns.next = c;
    h->nconns++;
    h->open_handles++;
    if (uv_accept(listener, (uv_stream_t *) &c->tcp) != 0) {
        conn_close(c);
        return;
    }
    if (h->nconns > PSD_MHTTP_MAX_CONNS) {
        static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                                   "Connection: close\r\n\r\n";
        uv_buf_t b = uv_buf_init((char *) busy, sizeof busy - 1);
        uv_try_write((uv_stream_t *) &c->tcp, &b, 1);
        h->cb.ops->http_refused++;
        conn_close(c);
        return;
    }
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    c->deadline_ms = uv_now(h->loop) + PSD_MHTTP_DEADLINE_MS;
    if (uv_read_start((uv_stream_t *) &c->tcp, on_alloc, on_read) != 0)
        conn_close(c);
}

static void on_sweep(uv_timer_t *t)
{
    psd_mhttp_t *h = t->data;
    uint64_t now = uv_now(h->loop);
    for (hconn_t *c = h->conns.next, *next; c != &h->conns; c = next) {
        next = c->next;
        if (now < c->deadline_ms || uv_is_closing((uv_handle_t *) &c->tcp))
            continue;
        if (!c->answered) {
            /* A slow or silent client: answer without waiting for it to read, then close. */
            static const char slow[] = "HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n"
                                       "Connection: close\r\n\r\n";
            uv_buf_t b = uv_buf_init((char *) slow, sizeof slow - 1);
            uv_try_write((uv_stream_t *) &c->tcp, &b, 1);
            h->cb.ops->http_requests++;
        }
        h->cb.ops->http_refused++;
        conn_close(c);
    }
}

int psd_mhttp_open(psd_mhttp_t **out,
                   uv_loop_t *loop,
                   const char *spec,
                   const psd_mhttp_callbacks_t *cb,
                   int *port,
                   ps_error_t *err)
{
    *out = NULL;
    psd_mhttp_t *h = ps_calloc(1, sizeof *h);
    if (!h)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    if (!settings.on_message_complete) {
        settings.on_url = on_url;
        settings.on_headers_complete = on_headers_complete;
        settings.on_message_complete = on_message_complete;
    }
    h->loop = loop;
    h->cb = *cb;
    h->conns.next = h->conns.prev = &h->conns;
    uv_tcp_init(loop, &h->listener);
    uv_timer_init(loop, &h->sweep);
    h->listener.data = h->sweep.data = h;
    h->open_handles = 2;
    int rc = psd_net_bind_listen(&h->listener, "metrics-listen", spec, on_connection, port, err);
    if (rc) {
        psd_mhttp_close(h);
        /* The two handles close on the loop's next run; the caller runs it before freeing. */
        *out = h;
        return rc;
    }
    uv_timer_start(&h->sweep, on_sweep, PSD_MHTTP_SWEEP_MS, PSD_MHTTP_SWEEP_MS);
    uv_unref((uv_handle_t *) &h->sweep);
    *out = h;
    return 0;
}

void psd_mhttp_close(psd_mhttp_t *h)
{
    if (!h || h->closing)
        return;
    h->closing = 1;
    uv_close((uv_handle_t *) &h->listener, on_handle_closed);
    uv_close((uv_handle_t *) &h->sweep, on_handle_closed);
    for (hconn_t *c = h->conns.next, *next; c != &h->conns; c = next) {
        next = c->next;
        conn_close(c);
    }
}

void psd_mhttp_free(psd_mhttp_t *h)
{
    if (!h)
        return;
    if (h->open_handles)
        PS_LOG(PS_LOG_WARNING, "metrics", "freed with %d handles open", h->open_handles);
    ps_free(h);
}
