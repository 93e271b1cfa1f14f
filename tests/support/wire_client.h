/* A blocking raw-frame client for integration tests and the wire benchmark: TCP to psd on loopback
 * with poll()-based timeouts, frames built byte by byte from docs/PROTOCOL.md (its own prefix code,
 * so it checks psd's codec instead of sharing it), request builders for every method, and one-reply
 * reads that keep the header and the payload apart. */
#ifndef PS_TEST_WIRE_CLIENT_H
#define PS_TEST_WIRE_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "pscope.pb-c.h"

/* Return values of ps_wc_recv and ps_wc_wait_eof. */
#define PS_WC_OK        0
#define PS_WC_EOF       1  /* the peer closed before the first byte of a frame */
#define PS_WC_ERR       -1 /* socket error (errno set) */
#define PS_WC_TIMEOUT   -2 /* nothing complete within the timeout */
#define PS_WC_TRUNCATED -3 /* EOF in the middle of a frame */
#define PS_WC_BADFRAME  -4 /* the reply's prefix or header is malformed */

typedef struct ps_wc {
    int fd;
    int timeout_ms; /* per blocking operation */
    uint8_t *rbuf;  /* read-ahead buffer */
    size_t rcap;
    size_t rstart;
    size_t rend;
    uint64_t next_id; /* ps_wc_id() hands these out, starting at 1 */
    /* Replies' headers are unpacked by protobuf-c (0, the default: an independent reading of what
     * psd sends) or, when set, by libpsclient's own ps_pb_header_unpack (benchmarks that parse a
     * reply as a client would). */
    int client_decode;
} ps_wc_t;

/** A growable byte buffer of frames to send (pipelining = append many, send once). */
typedef struct ps_wc_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
    /* Frames' headers are packed by protobuf-c (0, the default) or, when set, by libpsclient's own
     * ps_pb_frame_pack_into (the same bytes: benchmarks that build requests as a client would). */
    int client_encode;
} ps_wc_buf_t;

/** One reply frame: the unpacked header and the raw payload (NULL when payload_len is 0). */
typedef struct ps_wc_reply {
    Pscope__V1__Header *h;
    uint8_t *payload;
    uint64_t payload_len;
    uint32_t header_len;
    int borrowed;      /* payload points into the caller's buffer (ps_wc_recv_into) */
    int client_decode; /* h came from ps_pb_header_unpack (free with ps_pb_header_free) */
} ps_wc_reply_t;

/** Connect to 127.0.0.1:port. Returns 0, or -1 with errno. */
int ps_wc_connect(ps_wc_t *c, uint16_t port, int timeout_ms);

/** Close the socket and free the read buffer. Safe on a closed client. */
void ps_wc_close(ps_wc_t *c);

/** The next request id of this client. */
uint64_t ps_wc_id(ps_wc_t *c);

/** Write all len bytes (poll for writability between partial writes). 0, or -1 (errno; ETIMEDOUT).
 */
int ps_wc_send_raw(ps_wc_t *c, const void *data, size_t len);

/** Send every byte in b and empty it. 0 or -1. */
int ps_wc_send_buf(ps_wc_t *c, ps_wc_buf_t *b);

/** Read one whole reply frame into r (free with ps_wc_reply_free). Returns a PS_WC_* value. */
int ps_wc_recv(ps_wc_t *c, ps_wc_reply_t *r);

/**
 * Like ps_wc_recv, but a payload of at most cap bytes is read straight into buf (r->payload then
 * points into buf and is not freed by ps_wc_reply_free); a larger one is allocated as usual.
 */
int ps_wc_recv_into(ps_wc_t *c, ps_wc_reply_t *r, uint8_t *buf, size_t cap);

/** Write a then b with as few syscalls as possible (sendmsg), like ps_wc_send_raw. */
int ps_wc_send2(ps_wc_t *c, const void *a, size_t alen, const void *b, size_t blen);

/** Free what r holds and zero it. */
void ps_wc_reply_free(ps_wc_reply_t *r);

/**
 * Wait up to timeout_ms for the peer to close: PS_WC_EOF (closed, or reset), PS_WC_TIMEOUT (still
 * open and silent), PS_WC_OK (data arrived instead: the connection is open; nothing is consumed).
 */
int ps_wc_wait_eof(ps_wc_t *c, int timeout_ms);

/** Send b (emptying it) and read one reply into r; PS_WC_OK or the failure. */
int ps_wc_call(ps_wc_t *c, ps_wc_buf_t *b, ps_wc_reply_t *r);

void ps_wc_buf_free(ps_wc_buf_t *b);

/** Append raw bytes. 0, or -1 when out of memory. */
int ps_wc_buf_put(ps_wc_buf_t *b, const void *data, size_t len);

/** Write a 16-byte prefix: magic "PS", version 1, flags 0, header_len (u32 LE), frame_len (u64 LE).
 */
void ps_wc_prefix(uint8_t out[16], uint32_t header_len, uint64_t frame_len);

/** Append prefix + packed header + payload (payload may be NULL when payload_len is 0). */
int ps_wc_add_frame(ps_wc_buf_t *b,
                    const Pscope__V1__Header *h,
                    const void *payload,
                    size_t payload_len);

/** One tensor of a request: name (name_len 0 = strlen), dtype, dims, and its bytes. */
typedef struct ps_wc_tensor {
    const char *name;
    size_t name_len;
    int dtype;
    size_t rank;
    const int64_t *dims;
    const void *data;
    size_t len;
} ps_wc_tensor_t;

/** A GetVariableRequest. Zero-initialise, then set what the case needs. */
typedef struct ps_wc_getvar {
    const char *name;
    size_t name_len; /* 0 = strlen(name) */
    int mode;        /* PSCOPE__V1__LOOKUP_MODE__* */
    int dtype;       /* PSCOPE__V1__DTYPE__* */
    int unknown_rank;
    size_t rank;
    const int64_t *dims;                 /* -1 = unknown dimension */
    const Pscope__V1__Initializer *init; /* NULL = no initializer message (INIT_DEFAULT) */
    int trainable;
    const char *const *collections;
    size_t ncollections;
    int kind; /* PSCOPE__V1__VAR_KIND__* */
    const char *creator;
    const ps_wc_tensor_t *value; /* INIT_FROM_VALUE: Header.tensors[0] and the payload */
} ps_wc_getvar_t;

/** One update item: the tensor x (names the variable) with its op and alpha. */
typedef struct ps_wc_update {
    ps_wc_tensor_t x;
    int op; /* PSCOPE__V1__UPDATE_OP__* */
    double alpha;
} ps_wc_update_t;

int ps_wc_add_ping(ps_wc_buf_t *b, uint64_t id);
/** AUTH with user and the password's pw_len bytes (user NULL = no user field). */
int ps_wc_add_auth(ps_wc_buf_t *b, uint64_t id, const char *user, const void *pw, size_t pw_len);
int ps_wc_add_stats(ps_wc_buf_t *b, uint64_t id);
int ps_wc_add_get_variable(ps_wc_buf_t *b, uint64_t id, const ps_wc_getvar_t *g);
int ps_wc_add_pull(ps_wc_buf_t *b, uint64_t id, const char *const *names, size_t n);
int ps_wc_add_update(ps_wc_buf_t *b,
                     uint64_t id,
                     const ps_wc_update_t *items,
                     size_t n,
                     uint64_t client_id,
                     uint64_t seq);
/** The prefix and header of an update frame only: the caller sends the tensors' bytes next. */
int ps_wc_add_update_head(ps_wc_buf_t *b,
                          uint64_t id,
                          const ps_wc_update_t *items,
                          size_t n,
                          uint64_t client_id,
                          uint64_t seq);
/** prefix, collection, start_after may be NULL (empty). */
int ps_wc_add_list(ps_wc_buf_t *b,
                   uint64_t id,
                   const char *prefix,
                   const char *collection,
                   const char *start_after,
                   uint32_t limit);
int ps_wc_add_describe(ps_wc_buf_t *b, uint64_t id, const char *name);
/** names may be NULL with n 0; prefix may be NULL. */
int ps_wc_add_delete(
    ps_wc_buf_t *b, uint64_t id, const char *const *names, size_t n, const char *prefix);

/*
 * One request, one reply: each builds the request with the next id, sends it, reads one reply into
 * r (free with ps_wc_reply_free) and checks that the reply carries the same id. Returns PS_WC_OK
 * when a reply with that id arrived (whatever its code), PS_WC_BADFRAME when the id differs, or the
 * transport failure.
 */
int ps_wc_ping(ps_wc_t *c, ps_wc_reply_t *r);
/** AUTH with a NUL-terminated password. */
int ps_wc_auth(ps_wc_t *c, const char *user, const char *password, ps_wc_reply_t *r);
/** Any request: h (its id is set here) and payload_len bytes of payload. */
int ps_wc_request(
    ps_wc_t *c, Pscope__V1__Header *h, const void *payload, size_t payload_len, ps_wc_reply_t *r);
int ps_wc_stats(ps_wc_t *c, ps_wc_reply_t *r);
int ps_wc_get_variable(ps_wc_t *c, const ps_wc_getvar_t *g, ps_wc_reply_t *r);
int ps_wc_pull(ps_wc_t *c, const char *const *names, size_t n, ps_wc_reply_t *r);
int ps_wc_update(ps_wc_t *c,
                 const ps_wc_update_t *items,
                 size_t n,
                 uint64_t client_id,
                 uint64_t seq,
                 ps_wc_reply_t *r);
int ps_wc_list(ps_wc_t *c,
               const char *prefix,
               const char *collection,
               const char *start_after,
               uint32_t limit,
               ps_wc_reply_t *r);
int ps_wc_describe(ps_wc_t *c, const char *name, ps_wc_reply_t *r);
int ps_wc_delete(
    ps_wc_t *c, const char *const *names, size_t n, const char *prefix, ps_wc_reply_t *r);

/**
 * Create (get-or-create) a variable of dtype and shape whose every element is value (a constant
 * initializer). Returns the reply's code (0 = OK), or -1 when no reply came.
 */
int ps_wc_create_const(
    ps_wc_t *c, const char *name, int dtype, size_t rank, const int64_t *dims, double value);

/** 1 when the bytes field holds exactly the bytes of the C string s. */
int ps_wc_bytes_eq(ProtobufCBinaryData b, const char *s);

/** Bytes per element of a wire dtype; 0 for an unknown one. */
size_t ps_wc_dtype_size(int dtype);

#endif /* PS_TEST_WIRE_CLIENT_H */
