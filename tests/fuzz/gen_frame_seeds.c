/* Writes the seed corpus of fuzz_frame into a directory: a few valid frame streams (ping, pull
 * reply with payload, get_variable, several frames back to back) with different chunk plans. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ps/internal/alloc.h>

#include "pb.h"

static size_t
append_frame(uint8_t *out, const Pscope__V1__Header *h, const void *payload, size_t plen)
{
    size_t n;
    uint8_t *f = ps_pb_frame_pack(h, plen, 1u << 20, &n, NULL);
    if (f == NULL)
        exit(1);
    memcpy(out, f, n);
    if (plen > 0)
        memcpy(out + n, payload, plen);
    ps_free(f);
    return n + plen;
}

static void write_seed(const char *dir,
                       const char *name,
                       const uint8_t *prefix,
                       size_t plen,
                       const uint8_t *stream,
                       size_t slen)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "wb");
    if (fp == NULL || fwrite(prefix, 1, plen, fp) != plen || fwrite(stream, 1, slen, fp) != slen) {
        perror(path);
        exit(1);
    }
    fclose(fp);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    static uint8_t s[8192];
    size_t n = 0;

    Pscope__V1__PingRequest ping = PSCOPE__V1__PING_REQUEST__INIT;
    Pscope__V1__Header hp = PSCOPE__V1__HEADER__INIT;
    hp.id = 1;
    hp.method = PSCOPE__V1__METHOD__PING;
    hp.body_case = PSCOPE__V1__HEADER__BODY_PING;
    hp.ping = &ping;

    float vals[6] = {1, 2, 3, 4, 5, 6};
    int64_t dims_a[1] = {2};
    int64_t dims_b[2] = {2, 2};
    Pscope__V1__TensorDesc ta = PSCOPE__V1__TENSOR_DESC__INIT, tb = PSCOPE__V1__TENSOR_DESC__INIT;
    ta.name = ps_pb_bytes("scope/bias");
    ta.dtype = PSCOPE__V1__DTYPE__DT_FLOAT;
    ta.n_dims = 1;
    ta.dims = dims_a;
    tb.name = ps_pb_bytes("scope/kernel");
    tb.dtype = PSCOPE__V1__DTYPE__DT_FLOAT;
    tb.n_dims = 2;
    tb.dims = dims_b;
    Pscope__V1__TensorDesc *tds[2] = {&ta, &tb};
    Pscope__V1__Header hr = PSCOPE__V1__HEADER__INIT;
    hr.id = 2;
    hr.method = PSCOPE__V1__METHOD__PULL;
    hr.n_tensors = 2;
    hr.tensors = tds;

    Pscope__V1__ShapeSpec ss = PSCOPE__V1__SHAPE_SPEC__INIT;
    int64_t sd[2] = {-1, 64};
    ss.n_dims = 2;
    ss.dims = sd;
    Pscope__V1__Initializer init = PSCOPE__V1__INITIALIZER__INIT;
    init.kind = PSCOPE__V1__INIT_KIND__INIT_GLOROT_UNIFORM;
    Pscope__V1__GetVariableRequest gv = PSCOPE__V1__GET_VARIABLE_REQUEST__INIT;
    gv.name = ps_pb_bytes("conv1/weights");
    gv.mode = PSCOPE__V1__LOOKUP_MODE__CREATE_OR_ATTACH;
    gv.dtype = PSCOPE__V1__DTYPE__DT_FLOAT;
    gv.shape = &ss;
    gv.initializer = &init;
    Pscope__V1__Header hg = PSCOPE__V1__HEADER__INIT;
    hg.id = 3;
    hg.method = PSCOPE__V1__METHOD__GET_VARIABLE;
    hg.body_case = PSCOPE__V1__HEADER__BODY_GET_VARIABLE;
    hg.get_variable = &gv;

    static const uint8_t whole[] = {0x00};
    static const uint8_t bytewise[] = {0x01, 0x00};
    static const uint8_t odd[] = {0x23, 2, 0, 6}; /* window reads, chunks 3, 1, 7 */
    static const uint8_t small[] = {0x12, 15, 4}; /* small limits, chunks 16, 5 */
    static const uint8_t skipping[] = {0x41, 9};  /* skip payloads, chunks of 10 */
    static const uint8_t oom[] = {0x81, 1, 4};    /* 2nd allocation fails, chunks of 5 */

    n = append_frame(s, &hp, NULL, 0);
    write_seed(argv[1], "ping", whole, sizeof whole, s, n);
    write_seed(argv[1], "ping-bytewise", bytewise, sizeof bytewise, s, n);

    n = append_frame(s, &hr, vals, sizeof vals);
    write_seed(argv[1], "pull-reply", whole, sizeof whole, s, n);
    write_seed(argv[1], "pull-reply-window", odd, sizeof odd, s, n);

    n = append_frame(s, &hg, NULL, 0);
    write_seed(argv[1], "get-variable", whole, sizeof whole, s, n);

    n = 0;
    n += append_frame(s + n, &hp, NULL, 0);
    n += append_frame(s + n, &hr, vals, sizeof vals);
    n += append_frame(s + n, &hg, NULL, 0);
    n += append_frame(s + n, &hr, vals, sizeof vals);
    write_seed(argv[1], "stream", odd, sizeof odd, s, n);
    write_seed(argv[1], "stream-small-limits", small, sizeof small, s, n);
    write_seed(argv[1], "stream-skip", skipping, sizeof skipping, s, n);
    write_seed(argv[1], "stream-oom", oom, sizeof oom, s, n);
    return 0;
}
