/* In-process tests of psd's server loop (server/src/server.c, conn.c, net.c): a server on 127.0.0.1
 * port 0 and a libuv client on the same loop exchange frames; shutdown with a client still
 * connected flushes the reply, closes every handle and the loop closes clean (libuv's
 * MAKE_VALGRIND_HAPPY). */
#include <string.h>

#include <criterion/criterion.h>
#include <uv.h>

#include <ps/internal/alloc.h>
#include <ps/internal/frame.h>
#include <ps/internal/log.h>

#include "pb.h"
#include "server.h"

static psd_server_t srv;

static void start(void)
{
    psd_config_t cfg;
    psd_config_defaults(&cfg);
    strcpy(cfg.listen, "127.0.0.1:0");
    cfg.log_level = PS_LOG_WARNING;
    ps_error_t err;
    ps_error_clear(&err);
    cr_assert_eq(psd_server_start(&srv, &cfg, &err), 0, "%s", err.msg);
    cr_assert_gt(srv.port, 0);
}

static void on_stop_timer(uv_timer_t *t)
{
    psd_server_stop(t->data);
    uv_close((uv_handle_t *) t, NULL);
}

Test(server, idle_server_stops_and_loop_closes_clean)
{
    start();
    uv_timer_t t;
    uv_timer_init(&srv.loop, &t);
    t.data = &srv;
    uv_timer_start(&t, on_stop_timer, 20, 0);
    cr_assert_eq(psd_server_loop(&srv), 0, "the loop did not close clean");
}

/* A client on the server's own loop: connect, pipeline pings, read the replies, then stop psd. */
typedef struct client {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    uint8_t out[4096];
    size_t out_len;
    uint8_t in[8192];
    size_t in_len;
    int replies;
    uint64_t ids[8];
    int eof;
} client_t;

static client_t cli;

static void on_cli_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void) h;
    (void) suggested;
    *buf = uv_buf_init((char *) cli.in + cli.in_len, (unsigned) (sizeof cli.in - cli.in_len));
}

static void on_cli_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void) buf;
    if (nread < 0) {
        cli.eof = 1;
        uv_close((uv_handle_t *) s, NULL);
        return;
    }
    cli.in_len += (size_t) nread;
    /* Parse whole reply frames off the front. */
    for (;;) {
        if (cli.in_len < PS_FRAME_PREFIX_LEN)
            break;
        ps_frame_limits_t lim = {.max_header = 1 << 20, .max_payload = 1 << 20};
        ps_frame_prefix_t p;
        ps_error_t err;
        cr_assert_eq(ps_frame_prefix_decode(cli.in, &lim, &p, &err), 0, "%s", err.msg);
        size_t total = PS_FRAME_PREFIX_LEN + p.header_len + (size_t) p.payload_len;
        if (cli.in_len < total)
            break;
        Pscope__V1__Header *h =
            ps_pb_header_unpack(cli.in + PS_FRAME_PREFIX_LEN, p.header_len, &err);
        cr_assert_not_null(h);
        cr_assert_eq(h->code, 0, "%s", h->message);
        cr_assert_eq(h->body_case, PSCOPE__V1__HEADER__BODY_PING_REPLY);
        if (cli.replies < 8)
            cli.ids[cli.replies] = h->id;
        cli.replies++;
        ps_pb_header_free(h);
        memmove(cli.in, cli.in + total, cli.in_len - total);
        cli.in_len -= total;
    }
    if (cli.replies == 3) {
        /* Every reply is in: stop psd while this client is still connected. */
        psd_server_stop(&srv);
    }
}

static void on_cli_write(uv_write_t *req, int status)
{
    (void) req;
    cr_assert_eq(status, 0);
}

static void on_cli_connect(uv_connect_t *req, int status)
{
    cr_assert_eq(status, 0, "connect: %s", uv_strerror(status));
    uv_buf_t b = uv_buf_init((char *) cli.out, (unsigned) cli.out_len);
    cr_assert_eq(uv_write(&cli.wreq, req->handle, &b, 1, on_cli_write), 0);
    cr_assert_eq(uv_read_start(req->handle, on_cli_alloc, on_cli_read), 0);
}

static void add_ping(uint64_t id)
{
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    h.id = id;
    h.method = PSCOPE__V1__METHOD__PING;
    size_t len = 0;
    ps_error_t err;
    uint8_t *f = ps_pb_frame_pack(&h, 0, 1 << 20, &len, &err);
    cr_assert_not_null(f);
    memcpy(cli.out + cli.out_len, f, len);
    cli.out_len += len;
    ps_free(f);
}

Test(server, pipelined_pings_then_shutdown_with_client_connected)
{
    start();
    memset(&cli, 0, sizeof cli);
    add_ping(11);
    add_ping(12);
    add_ping(13);
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", srv.port, &addr);
    uv_tcp_init(&srv.loop, &cli.tcp);
    cr_assert_eq(
        uv_tcp_connect(&cli.creq, &cli.tcp, (const struct sockaddr *) &addr, on_cli_connect), 0);
    cr_assert_eq(psd_server_loop(&srv), 0, "the loop did not close clean");
    cr_assert_eq(cli.replies, 3);
    cr_assert_eq(cli.ids[0], 11);
    cr_assert_eq(cli.ids[1], 12);
    cr_assert_eq(cli.ids[2], 13);
    cr_assert(cli.eof, "psd did not close the connection on shutdown");
}

Test(server, bad_listen_address_fails_to_start)
{
    psd_config_t cfg;
    psd_config_defaults(&cfg);
    strcpy(cfg.listen, "not-an-address:1");
    ps_error_t err;
    ps_error_clear(&err);
    cr_assert_eq(psd_server_start(&srv, &cfg, &err), PS_ERR_INVALID_ARGUMENT);
    cr_assert_str_eq(err.msg, "--listen 'not-an-address:1': 'not-an-address' is not an IPv4 or "
                              "IPv6 address");
}
