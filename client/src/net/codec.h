/* Client-private: the one place where libpsclient's requests and replies are translated between its
 * own structs and the pscope.v1 protobuf messages. */
#ifndef PSC_CODEC_H
#define PSC_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "conn.h"
#include "graph_int.h"

#define PSC_CODEC_MAX_COLLECTIONS 64

/* Storage for one GetVariable request (no heap). */
typedef struct psc_getvar_msg {
    Pscope__V1__Header h;
    Pscope__V1__GetVariableRequest g;
    Pscope__V1__ShapeSpec shape;
    Pscope__V1__Initializer init;
    Pscope__V1__Constraint cons;
    int32_t axes[PS_CONSTRAINT_MAX_AXES];
    ProtobufCBinaryData cols[PSC_CODEC_MAX_COLLECTIONS];
    Pscope__V1__TensorDesc td;
    Pscope__V1__TensorDesc *tds[1];
    int64_t dims[PS_SHAPE_MAX_RANK];
    int64_t vdims[PS_SHAPE_MAX_RANK];
    Pscope__V1__SaveSliceInfo slice;
    int64_t slice_nums[2 * PS_SHAPE_MAX_RANK];
    ps_frame_seg_t payload;
} psc_getvar_msg_t;

/** Fill m for req; the call's request and payload point into m. 0 or INVALID_ARGUMENT. */
int psc_codec_getvar(psc_getvar_msg_t *m,
                     const psc_lookup_t *req,
                     const char *creator,
                     psc_call_t *call,
                     ps_error_t *err);

/** Read a GetVariable reply into info (heap copies of collections). */
int psc_codec_getvar_reply(const Pscope__V1__Header *h, psc_varinfo_t *info, ps_error_t *err);

/* A pull or update request over items[0..n) (heap-backed). */
typedef struct psc_batch_msg {
    Pscope__V1__Header h;
    Pscope__V1__PullRequest pull;
    Pscope__V1__UpdateRequest upd;
    ProtobufCBinaryData *names;
    Pscope__V1__TensorDesc *td;
    Pscope__V1__TensorDesc **tds;
    Pscope__V1__UpdateItem *ui;
    Pscope__V1__UpdateItem **uis;
    ps_frame_seg_t *segs;
    psc_item_t *items; /* borrowed */
    size_t n;
} psc_batch_msg_t;

/** Build a PULL of items; replies land in items[i].buf with versions. 0 or RESOURCE_EXHAUSTED. */
int psc_codec_pull(
    psc_batch_msg_t *m, psc_item_t *items, size_t n, psc_call_t *call, ps_error_t *err);

/** Build an UPDATE of items with (client_id, seq). */
int psc_codec_update(psc_batch_msg_t *m,
                     psc_item_t *items,
                     size_t n,
                     uint64_t client_id,
                     uint64_t seq,
                     psc_call_t *call,
                     ps_error_t *err);

/** Read an UPDATE reply's versions into the items. */
int psc_codec_update_reply(const Pscope__V1__Header *h,
                           psc_item_t *items,
                           size_t n,
                           ps_error_t *err);

void psc_batch_msg_deinit(psc_batch_msg_t *m);

/** Build a PING into h. */
void psc_codec_ping(Pscope__V1__Header *h, Pscope__V1__PingRequest *p, psc_call_t *call);

#endif /* PSC_CODEC_H */
