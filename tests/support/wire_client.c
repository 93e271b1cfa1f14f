/* The raw-frame test client: blocking loopback TCP with poll() timeouts, its own encoding of the
 * 16-byte prefix (written from docs/PROTOCOL.md, not shared with psd's codec), protobuf-c packing
 * of request headers, and reading one reply frame at a time through a read-ahead buffer. */
#include "support/wire_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <ps/internal/alloc.h>

#include "pb.h"

#define RBUF_CAP       (256u << 10)
#define MAX_REPLY_HDR  (64u << 20)
#define MAX_REPLY_BODY ((uint64_t) 4 << 30)

static void *pb_alloc(void *data, size_t size)
{
    (void) data;
    return ps_malloc(size);
}

static void pb_free(void *data, void *p)
{
    (void) data;
    ps_free(p);
}

static ProtobufCAllocator pb_allocator = {pb_alloc, pb_free, NULL};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait for events on the socket until deadline; 1 ready, 0 timeout, -1 error. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left < 0)
            left = 0;
        struct pollfd p = {.fd = fd, .events = events};
        int rc = poll(&p, 1, (int) left);
        if (rc > 0)
            return 1;
        if (rc == 0)
            return 0;
        if (errno != EINTR)
            return -1;
    }
}

int ps_wc_connect(ps_wc_t *c, uint16_t port, int timeout_ms)
{
    memset(c, 0, sizeof *c);
    c->fd = -1;
    c->timeout_ms = timeout_ms;
    c->next_id = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *) &sa, sizeof sa) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* Blocking I/O bounded by socket timeouts: one syscall per read or write, as a plain client
     * would do it (the wire benchmark relies on this). */
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    c->rbuf = ps_malloc(RBUF_CAP);
    if (c->rbuf == NULL) {
        close(fd);
        errno = ENOMEM;
        return -1;
    }
    c->rcap = RBUF_CAP;
    c->fd = fd;
    return 0;
}

void ps_wc_close(ps_wc_t *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    ps_free(c->rbuf);
    c->rbuf = NULL;
    c->rcap = c->rstart = c->rend = 0;
}

uint64_t ps_wc_id(ps_wc_t *c)
{
    return c->next_id++;
}

int ps_wc_send_raw(ps_wc_t *c, const void *data, size_t len)
{
    const uint8_t *p = data;
    int64_t deadline = now_ms() + c->timeout_ms;
    while (len > 0) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t) n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && now_ms() < deadline)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            errno = ETIMEDOUT;
        return -1;
    }
    return 0;
}

int ps_wc_send2(ps_wc_t *c, const void *a, size_t alen, const void *b, size_t blen)
{
    struct iovec iov[2] = {{(void *) (uintptr_t) a, alen}, {(void *) (uintptr_t) b, blen}};
    size_t first = 0;
    int64_t deadline = now_ms() + c->timeout_ms;
    while (first < 2) {
        if (iov[first].iov_len == 0) {
            first++;
            continue;
        }
        struct msghdr m;
        memset(&m, 0, sizeof m);
        m.msg_iov = iov + first;
        m.msg_iovlen = 2 - first;
        ssize_t n = sendmsg(c->fd, &m, MSG_NOSIGNAL);
        if (n > 0) {
            size_t left = (size_t) n;
            while (left > 0 && first < 2) {
                size_t k = left < iov[first].iov_len ? left : iov[first].iov_len;
                iov[first].iov_base = (char *) iov[first].iov_base + k;
                iov[first].iov_len -= k;
                left -= k;
                if (iov[first].iov_len == 0)
                    first++;
            }
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && now_ms() < deadline)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            errno = ETIMEDOUT;
        return -1;
    }
    return 0;
}

int ps_wc_send_buf(ps_wc_t *c, ps_wc_buf_t *b)
{
    int rc = ps_wc_send_raw(c, b->data, b->len);
    b->len = 0;
    return rc;
}

/*
 * Make at least one more byte available in rbuf; PS_WC_OK, PS_WC_EOF, PS_WC_ERR or PS_WC_TIMEOUT.
 * flags 0 blocks (bounded by SO_RCVTIMEO and deadline); MSG_DONTWAIT when data is known to wait.
 */
static int fill(ps_wc_t *c, int64_t deadline, int flags)
{
    if (c->rstart == c->rend)
        c->rstart = c->rend = 0;
    if (c->rend == c->rcap) {
        memmove(c->rbuf, c->rbuf + c->rstart, c->rend - c->rstart);
        c->rend -= c->rstart;
        c->rstart = 0;
    }
    for (;;) {
        ssize_t n = recv(c->fd, c->rbuf + c->rend, c->rcap - c->rend, flags);
        if (n > 0) {
            c->rend += (size_t) n;
            return PS_WC_OK;
        }
        if (n == 0)
            return PS_WC_EOF;
        if (errno == EINTR)
            continue;
        if (errno == ECONNRESET)
            return PS_WC_EOF;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return PS_WC_ERR;
        if (flags != 0 || now_ms() >= deadline)
            return PS_WC_TIMEOUT;
    }
}

/* Copy exactly len bytes into out (read-ahead first, then straight from the socket). */
static int read_exact(ps_wc_t *c, uint8_t *out, size_t len, int64_t deadline, int started)
{
    size_t got = 0;
    while (got < len) {
        size_t avail = c->rend - c->rstart;
        if (avail > 0) {
            size_t k = avail < len - got ? avail : len - got;
            memcpy(out + got, c->rbuf + c->rstart, k);
            c->rstart += k;
            got += k;
            continue;
        }
        if (len - got >= c->rcap / 2) {
            /* Large payloads go straight into place. */
            ssize_t n = recv(c->fd, out + got, len - got, 0);
            if (n > 0) {
                got += (size_t) n;
                continue;
            }
            if (n == 0 || (n < 0 && errno == ECONNRESET))
                return (started || got > 0) ? PS_WC_TRUNCATED : PS_WC_EOF;
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                return PS_WC_ERR;
            if (now_ms() >= deadline)
                return PS_WC_TIMEOUT;
            continue;
        }
        int rc = fill(c, deadline, 0);
        if (rc == PS_WC_EOF)
            return (started || got > 0) ? PS_WC_TRUNCATED : PS_WC_EOF;
        if (rc != PS_WC_OK)
            return rc;
    }
    return PS_WC_OK;
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
}

static uint64_t get_u64(const uint8_t *p)
{
    return (uint64_t) get_u32(p) | (uint64_t) get_u32(p + 4) << 32;
}

int ps_wc_recv(ps_wc_t *c, ps_wc_reply_t *r)
{
    return ps_wc_recv_into(c, r, NULL, 0);
}

int ps_wc_recv_into(ps_wc_t *c, ps_wc_reply_t *r, uint8_t *buf, size_t cap)
{
    memset(r, 0, sizeof *r);
    int64_t deadline = now_ms() + c->timeout_ms;
    uint8_t pre[16];
    int rc = read_exact(c, pre, sizeof pre, deadline, 0);
    if (rc != PS_WC_OK)
        return rc;
    if (pre[0] != 'P' || pre[1] != 'S' || pre[2] != 1 || pre[3] != 0)
        return PS_WC_BADFRAME;
    uint32_t hlen = get_u32(pre + 4);
    uint64_t flen = get_u64(pre + 8);
    if (hlen == 0 || hlen > flen || hlen > MAX_REPLY_HDR || flen - hlen > MAX_REPLY_BODY)
        return PS_WC_BADFRAME;
    uint8_t *hbuf = ps_malloc(hlen);
    if (hbuf == NULL)
        return PS_WC_ERR;
    rc = read_exact(c, hbuf, hlen, deadline, 1);
    if (rc != PS_WC_OK) {
        ps_free(hbuf);
        return rc;
    }
    if (c->client_decode) {
        ps_error_t err;
        r->h = ps_pb_header_unpack(hbuf, hlen, &err);
        r->client_decode = 1;
    } else {
        r->h = pscope__v1__header__unpack(&pb_allocator, hlen, hbuf);
    }
    ps_free(hbuf);
    if (r->h == NULL)
        return PS_WC_BADFRAME;
    r->header_len = hlen;
    r->payload_len = flen - hlen;
    if (r->payload_len > 0 && buf != NULL && r->payload_len <= cap) {
        r->payload = buf;
        r->borrowed = 1;
    } else if (r->payload_len > 0) {
        r->payload = ps_malloc((size_t) r->payload_len);
        if (r->payload == NULL) {
            ps_wc_reply_free(r);
            return PS_WC_ERR;
        }
    }
    if (r->payload_len > 0) {
        rc = read_exact(c, r->payload, (size_t) r->payload_len, deadline, 1);
        if (rc != PS_WC_OK) {
            ps_wc_reply_free(r);
            return rc;
        }
    }
    return PS_WC_OK;
}

void ps_wc_reply_free(ps_wc_reply_t *r)
{
    if (r->h != NULL && r->client_decode)
        ps_pb_header_free(r->h);
    else if (r->h != NULL)
        pscope__v1__header__free_unpacked(r->h, &pb_allocator);
    if (!r->borrowed)
        ps_free(r->payload);
    memset(r, 0, sizeof *r);
}

int ps_wc_wait_eof(ps_wc_t *c, int timeout_ms)
{
    if (c->rend > c->rstart)
        return PS_WC_OK;
    int w = wait_fd(c->fd, POLLIN, now_ms() + timeout_ms);
    if (w == 0)
        return PS_WC_TIMEOUT;
    if (w < 0)
        return PS_WC_ERR;
    return fill(c, 0, MSG_DONTWAIT);
}

int ps_wc_call(ps_wc_t *c, ps_wc_buf_t *b, ps_wc_reply_t *r)
{
    memset(r, 0, sizeof *r);
    if (ps_wc_send_buf(c, b) != 0)
        return PS_WC_ERR;
    return ps_wc_recv(c, r);
}

void ps_wc_buf_free(ps_wc_buf_t *b)
{
    int client_encode = b->client_encode;
    ps_free(b->data);
    memset(b, 0, sizeof *b);
    b->client_encode = client_encode;
}

/* Make room for len more bytes. */
static int buf_reserve(ps_wc_buf_t *b, size_t len)
{
    if (b->cap - b->len >= len)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->len < len)
        cap *= 2;
    uint8_t *p = ps_realloc(b->data, cap);
    if (p == NULL)
        return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

int ps_wc_buf_put(ps_wc_buf_t *b, const void *data, size_t len)
{
    if (len == 0)
        return 0;
    if (buf_reserve(b, len) != 0)
        return -1;
    memcpy(b->data + b->len, data, len);
    b->len += len;
    return 0;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t) (v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t) (v >> (8 * i));
}

void ps_wc_prefix(uint8_t out[16], uint32_t header_len, uint64_t frame_len)
{
    out[0] = 'P';
    out[1] = 'S';
    out[2] = 1;
    out[3] = 0;
    put_u32(out + 4, header_len);
    put_u64(out + 8, frame_len);
}

/* Append prefix + header for a frame whose payload_len bytes the caller appends next. */
static int add_head(ps_wc_buf_t *b, const Pscope__V1__Header *h, uint64_t payload_len)
{
    if (b->client_encode) {
        ps_pb_plan_t plan;
        ps_error_t err;
        size_t len = ps_pb_frame_size(h, payload_len, UINT32_MAX, &plan, &err);
        if (len == 0 || buf_reserve(b, len) != 0 ||
            ps_pb_frame_pack_into(h, payload_len, len, &plan, b->data + b->len, &err) != 0)
            return -1;
        b->len += len;
        return 0;
    }
    size_t hlen = pscope__v1__header__get_packed_size(h);
    if (buf_reserve(b, 16 + hlen) != 0)
        return -1;
    ps_wc_prefix(b->data + b->len, (uint32_t) hlen, (uint64_t) hlen + payload_len);
    b->len += 16;
    pscope__v1__header__pack(h, b->data + b->len);
    b->len += hlen;
    return 0;
}

int ps_wc_add_frame(ps_wc_buf_t *b,
                    const Pscope__V1__Header *h,
                    const void *payload,
                    size_t payload_len)
{
    if (add_head(b, h, payload_len) != 0)
        return -1;
    return ps_wc_buf_put(b, payload, payload_len);
}

static ProtobufCBinaryData bytes_of(const char *s, size_t len)
{
    ProtobufCBinaryData d;
    d.data = (uint8_t *) (uintptr_t) (s ? s : "");
    d.len = s ? (len ? len : strlen(s)) : 0;
    return d;
}

static Pscope__V1__Header header_for(uint64_t id, uint32_t method)
{
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    h.id = id;
    h.method = method;
    return h;
}

int ps_wc_add_ping(ps_wc_buf_t *b, uint64_t id)
{
    Pscope__V1__Header h = header_for(id, PSCOPE__V1__METHOD__PING);
    Pscope__V1__PingRequest body = PSCOPE__V1__PING_REQUEST__INIT;
    h.body_case = PSCOPE__V1__HEADER__BODY_PING;
    h.ping = &body;
    return ps_wc_add_frame(b, &h, NULL, 0);
}

int ps_wc_add_auth(ps_wc_buf_t *b, uint64_t id, const char *user, const void *pw, size_t pw_len)
{
    Pscope__V1__Header h = header_for(id, PSCOPE__V1__METHOD__AUTH);
    Pscope__V1__AuthRequest body = PSCOPE__V1__AUTH_REQUEST__INIT;
    if (user)
        body.user = (char *) user;
    body.password.data = (uint8_t *) pw;
    body.password.len = pw_len;
    h.body_case = PSCOPE__V1__HEADER__BODY_AUTH;
    h.auth = &body;
    return ps_wc_add_frame(b, &h, NULL, 0);
}

int ps_wc_add_stats(ps_wc_buf_t *b, uint64_t id)
{
    Pscope__V1__Header h = header_for(id, PSCOPE__V1__METHOD__STATS);
    Pscope__V1__StatsRequest body = PSCOPE__V1__STATS_REQUEST__INIT;
    h.body_case = PSCOPE__V1__HEADER__BODY_STATS;
    h.stats = &body;
    return ps_wc_add_frame(b, &h, NULL, 0);
}

/* Fill a TensorDesc (dims are copied into the caller's array of at least rank entries). */
static void tensor_desc(Pscope__V1__TensorDesc *td, const ps_wc_tensor_t *t)
{
    Pscope__V1__TensorDesc init = PSCOPE__V1__TENSOR_DESC__INIT;
    *td = init;
    td->name = bytes_of(t->name, t->name_len);
    td->dtype = (Pscope__V1__DType) t->dtype;
    td->n_dims = t->rank;
    td->dims = (int64_t *) (uintptr_t) t->dims;
}

int ps_wc_add_get_variable(ps_wc_buf_t *b, uint64_t id, const ps_wc_getvar_t *g)
{
    Pscope__V1__Header h = header_for(id, PSCOPE__V1__METHOD__GET_VARIABLE);
    Pscope__V1__GetVariableRequest body = PSCOPE__V1__GET_VARIABLE_REQUEST__INIT;
    Pscope__V1__ShapeSpec shape = PSCOPE__V1__SHAPE_SPEC__INIT;
    Pscope__V1__Initializer init;
    Pscope__V1__TensorDesc td;
    Pscope__V1__TensorDesc *tds[1] = {&td};
    ProtobufCBinaryData colls[64];
    if (g->ncollections > 64)
        return -1;
    body.name = bytes_of(g->name, g->name_len);
    body.mode = (Pscope__V1__LookupMode) g->mode;
    body.dtype = (Pscope__V1__DType) g->dtype;
    shape.unknown_rank = g->unknown_rank != 0;
    shape.n_dims = g->rank;
    shape.dims = (int64_t *) (uintptr_t) g->dims;
    body.shape = &shape;
    if (g->init != NULL) {
        init = *g->init;
        body.initializer = &init;
    }
    body.trainable = g->trainable != 0;
    for (size_t i = 0; i < g->ncollections; i++)
        colls[i] = bytes_of(g->collections[i], 0);
    body.n_collections = g->ncollections;
    body.collections = colls;
    body.kind = (Pscope__V1__VarKind) g->kind;
    if (g->creator != NULL)
        body.creator = (char *) (uintptr_t) g->creator;
    h.body_case = PSCOPE__V1__HEADER__BODY_GET_VARIABLE;
    h.get_variable = &body;
    const void *payload = NULL;
    size_t plen = 0;
    if (g->value != NULL) {
        tensor_desc(&td, g->value);
        h.n_tensors = 1;
        h.tensors = tds;
        payload = g->value->data;
        plen = g->value->len;
    }
    return ps_wc_add_frame(b, &h, payload, plen);
}

int ps_wc_add_pull(ps_wc_buf_t *b, uint64_t id, const char *const *names, size_t n)
{
    Pscope__V1__Header h = header_for(id, PSCOPE__V1__METHOD__PULL);
    Pscope__V1__PullRequest body = PSCOPE__V1__PULL_REQUEST__INIT;
    ProtobufCBinaryData *v = ps_calloc(n ? n : 1, sizeof *v);
    if (v == NULL)
        return -1;
    for (size_t i = 0; i < n; i++)
        v[i] = bytes_of(names[i], 0);
    body.n_names = n;
    body.names = v;
    h.body_case = PSCOPE__V1__HEADER__BODY_PULL;
    h.pull = &body;
    int rc = ps_wc_add_frame(b, &h, NULL, 0);
    ps_free(v);
    return rc;
}

/* An update frame; with_payload 0 stops after the header (the caller sends the tensors). */
static int update_frame(ps_wc_buf_t *b,
                        uint64_t id,
                        const ps_wc_update_t *items,
                        size_t n,
                        uint64_t client_id,
                        uint64_t seq,
                        int with_payload)
{
    Pscope__V1__Header h = header_for(id, PSCOPE__V1__METHOD__UPDATE);
    Pscope__V1__UpdateRequest body = PSCOPE__V1__UPDATE_REQUEST__INIT;
    size_t k = n ? n : 1;
    Pscope__V1__TensorDesc *td = ps_calloc(k, sizeof *td);
    Pscope__V1__TensorDesc **tdp = ps_calloc(k, sizeof *tdp);
    Pscope__V1__UpdateItem *it = ps_calloc(k, sizeof *it);
    Pscope__V1__UpdateItem **itp = ps_calloc(k, sizeof *itp);
    int rc = -1;
    if (td == NULL || tdp == NULL || it == NULL || itp == NULL)
        goto out;
    size_t plen = 0;
    for (size_t i = 0; i < n; i++) {
        Pscope__V1__UpdateItem init = PSCOPE__V1__UPDATE_ITEM__INIT;
        tensor_desc(&td[i], &items[i].x);
        tdp[i] = &td[i];
        it[i] = init;
        it[i].op = (Pscope__V1__UpdateOp) items[i].op;
        it[i].alpha = items[i].alpha;
        itp[i] = &it[i];
        plen += items[i].x.len;
    }
    body.n_items = n;
    body.items = itp;
    body.client_id = client_id;
    body.seq = seq;
    h.n_tensors = n;
    h.tensors = tdp;
    h.body_case = PSCOPE__V1__HEADER__BODY_UPDATE;
    h.update = &body;
    rc = add_head(b, &h, plen);
    for (size_t i = 0; i < n && rc == 0 && with_payload; i++)
        rc = ps_wc_buf_put(b, items[i].x.data, items[i].x.len);
out:
    ps_free(td);
    ps_free(tdp);
    ps_free(it);
    ps_free(itp);
    return rc;
}

int ps_wc_add_update(ps_wc_buf_t *b,
                     uint64_t id,
                     const ps_wc_update_t *items,
                     size_t n,
                     uint64_t client_id,
                     uint64_t seq)
{
    return update_frame(b, id, items, n, client_id, seq, 1);
}

int ps_wc_add_update_head(ps_wc_buf_t *b,
                          uint64_t id,
                          const ps_wc_update_t *items,
                          size_t n,
                          uint64_t client_id,
                          uint64_t seq)
{
    return update_frame(b, id, items, n, client_id, seq, 0);
}

int ps_wc_add_list(ps_wc_buf_t *b,
                   uint64_t id,
                   const char *prefix,
                   const char *collection,
                   const char *start_after,
                   uint32_t limit)
{
    Pscope__V1__Header h = header_for(id, PSCOPE__V1__METHOD__LIST);
    Pscope__V1__ListRequest body = PSCOPE__V1__LIST_REQUEST__INIT;
    body.prefix = bytes_of(prefix, 0);
    body.collection = bytes_of(collection, 0);
    body.start_after = bytes_of(start_after, 0);
    body.limit = limit;
    h.body_case = PSCOPE__V1__HEADER__BODY_LIST;
    h.list = &body;
    return ps_wc_add_frame(b, &h, NULL, 0);
}

int ps_wc_add_describe(ps_wc_buf_t *b, uint64_t id, const char *name)
{
    Pscope__V1__Header h = header_for(id, PSCOPE__V1__METHOD__DESCRIBE);
    Pscope__V1__DescribeRequest body = PSCOPE__V1__DESCRIBE_REQUEST__INIT;
    body.name = bytes_of(name, 0);
    h.body_case = PSCOPE__V1__HEADER__BODY_DESCRIBE;
    h.describe = &body;
    return ps_wc_add_frame(b, &h, NULL, 0);
}

int ps_wc_add_delete(
    ps_wc_buf_t *b, uint64_t id, const char *const *names, size_t n, const char *prefix)
{
    Pscope__V1__Header h = header_for(id, PSCOPE__V1__METHOD__DELETE);
    Pscope__V1__DeleteRequest body = PSCOPE__V1__DELETE_REQUEST__INIT;
    ProtobufCBinaryData *v = ps_calloc(n ? n : 1, sizeof *v);
    if (v == NULL)
        return -1;
    for (size_t i = 0; i < n; i++)
        v[i] = bytes_of(names[i], 0);
    body.n_names = n;
    body.names = v;
    body.prefix = bytes_of(prefix, 0);
    h.body_case = PSCOPE__V1__HEADER__BODY_DELETE;
    h.delete_ = &body;
    int rc = ps_wc_add_frame(b, &h, NULL, 0);
    ps_free(v);
    return rc;
}

int ps_wc_bytes_eq(ProtobufCBinaryData b, const char *s)
{
    size_t n = strlen(s);
    return b.len == n && (n == 0 || memcmp(b.data, s, n) == 0);
}

size_t ps_wc_dtype_size(int dtype)
{
    switch (dtype) {
    case PSCOPE__V1__DTYPE__DT_FLOAT:
    case PSCOPE__V1__DTYPE__DT_INT32:
        return 4;
    case PSCOPE__V1__DTYPE__DT_DOUBLE:
    case PSCOPE__V1__DTYPE__DT_INT64:
        return 8;
    default:
        return 0;
    }
}

/* Send what b holds (request id), read one reply, check the id, free b. */
static int roundtrip(ps_wc_t *c, ps_wc_buf_t *b, int built, uint64_t id, ps_wc_reply_t *r)
{
    memset(r, 0, sizeof *r);
    int rc = built == 0 ? ps_wc_call(c, b, r) : PS_WC_ERR;
    ps_wc_buf_free(b);
    if (rc == PS_WC_OK && r->h->id != id)
        return PS_WC_BADFRAME;
    return rc;
}

int ps_wc_ping(ps_wc_t *c, ps_wc_reply_t *r)
{
    ps_wc_buf_t b = {0};
    uint64_t id = ps_wc_id(c);
    return roundtrip(c, &b, ps_wc_add_ping(&b, id), id, r);
}

int ps_wc_auth(ps_wc_t *c, const char *user, const char *password, ps_wc_reply_t *r)
{
    ps_wc_buf_t b = {0};
    uint64_t id = ps_wc_id(c);
    return roundtrip(c, &b, ps_wc_add_auth(&b, id, user, password, strlen(password)), id, r);
}

int ps_wc_request(
    ps_wc_t *c, Pscope__V1__Header *h, const void *payload, size_t payload_len, ps_wc_reply_t *r)
{
    ps_wc_buf_t b = {0};
    h->id = ps_wc_id(c);
    return roundtrip(c, &b, ps_wc_add_frame(&b, h, payload, payload_len), h->id, r);
}

int ps_wc_stats(ps_wc_t *c, ps_wc_reply_t *r)
{
    ps_wc_buf_t b = {0};
    uint64_t id = ps_wc_id(c);
    return roundtrip(c, &b, ps_wc_add_stats(&b, id), id, r);
}

int ps_wc_get_variable(ps_wc_t *c, const ps_wc_getvar_t *g, ps_wc_reply_t *r)
{
    ps_wc_buf_t b = {0};
    uint64_t id = ps_wc_id(c);
    return roundtrip(c, &b, ps_wc_add_get_variable(&b, id, g), id, r);
}

int ps_wc_pull(ps_wc_t *c, const char *const *names, size_t n, ps_wc_reply_t *r)
{
    ps_wc_buf_t b = {0};
    uint64_t id = ps_wc_id(c);
    return roundtrip(c, &b, ps_wc_add_pull(&b, id, names, n), id, r);
}

int ps_wc_update(ps_wc_t *c,
                 const ps_wc_update_t *items,
                 size_t n,
                 uint64_t client_id,
                 uint64_t seq,
                 ps_wc_reply_t *r)
{
    ps_wc_buf_t b = {0};
    uint64_t id = ps_wc_id(c);
    return roundtrip(c, &b, ps_wc_add_update(&b, id, items, n, client_id, seq), id, r);
}

int ps_wc_list(ps_wc_t *c,
               const char *prefix,
               const char *collection,
               const char *start_after,
               uint32_t limit,
               ps_wc_reply_t *r)
{
    ps_wc_buf_t b = {0};
    uint64_t id = ps_wc_id(c);
    return roundtrip(c, &b, ps_wc_add_list(&b, id, prefix, collection, start_after, limit), id, r);
}

int ps_wc_describe(ps_wc_t *c, const char *name, ps_wc_reply_t *r)
{
    ps_wc_buf_t b = {0};
    uint64_t id = ps_wc_id(c);
    return roundtrip(c, &b, ps_wc_add_describe(&b, id, name), id, r);
}

int ps_wc_delete(
    ps_wc_t *c, const char *const *names, size_t n, const char *prefix, ps_wc_reply_t *r)
{
    ps_wc_buf_t b = {0};
    uint64_t id = ps_wc_id(c);
    return roundtrip(c, &b, ps_wc_add_delete(&b, id, names, n, prefix), id, r);
}

int ps_wc_create_const(
    ps_wc_t *c, const char *name, int dtype, size_t rank, const int64_t *dims, double value)
{
    Pscope__V1__Initializer init = PSCOPE__V1__INITIALIZER__INIT;
    init.kind = PSCOPE__V1__INIT_KIND__INIT_CONSTANT;
    init.value = value;
    ps_wc_getvar_t g = {0};
    g.name = name;
    g.mode = PSCOPE__V1__LOOKUP_MODE__GET_OR_CREATE;
    g.dtype = dtype;
    g.rank = rank;
    g.dims = dims;
    g.init = &init;
    g.trainable = 1;
    ps_wc_reply_t r;
    int rc = ps_wc_get_variable(c, &g, &r);
    int code = rc == PS_WC_OK ? (int) r.h->code : -1;
    ps_wc_reply_free(&r);
    return code;
}
