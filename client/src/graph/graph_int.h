/* Private layout of the graph, variable-scope objects, custom-getter records and variable handles,
 * shared by graph.c, scope.c and variable.c; and the client calls those make to psd. */
#ifndef PSC_GRAPH_INT_H
#define PSC_GRAPH_INT_H

#include <stddef.h>
#include <stdint.h>

#include <ps/client.h>
#include <ps/internal/slice.h>
#include <ps/regularizer.h>

#include "placement.h"
#include "strmap.h"

/* One composed custom getter: cb wraps outer (the enclosing scope's composition), TensorFlow's
 * _maybe_wrap_custom_getter. Owned by the graph. */
typedef struct psc_getter_node {
    ps_custom_getter_cb cb;
    void *data;
    const struct psc_getter_node *outer;
} psc_getter_node_t;

struct ps_getter {
    ps_graph_t *g;
    const psc_getter_node_t *next; /* NULL: the true getter */
};

struct ps_variable_scope {
    char *name;       /* "foo/bar", "" at the root */
    char *name_scope; /* original_name_scope */
    int reuse;        /* PS_REUSE_FALSE / TRUE / AUTO */
    int dtype;
    int has_init;
    ps_initializer_t init;
    ps_tensor_t *init_value; /* owned copy behind init.value_tensor */
    const psc_getter_node_t *getter;
    int has_partitioner;
    ps_partitioner_t partitioner;
    psc_vec_t own_getters; /* nodes made by ps_variable_scope_set_custom_getter (owned) */
    int has_constraint;    /* only what was passed to this scope (never inherited) */
    ps_constraint_t constraint;
    int has_regularizer; /* inherited */
    ps_regularizer_t regularizer;
    char *caching_device; /* inherited; NULL: none, "" overrides to none */
};

typedef enum {
    PSC_FRAME_NAME = 0,
    PSC_FRAME_VAR = 1
} psc_frame_kind_t;

/* One open scope of either kind; pop restores what it saved. */
typedef struct psc_frame {
    psc_frame_kind_t kind;
    char *saved_name_stack;
    ps_variable_scope_t *saved_scope;
    ps_variable_scope_t *entered;
    int by_object;
    char *new_name;            /* string / default-name scopes: counters under it reset on pop */
    psc_strmap_t saved_counts; /* object scopes: counters restored on pop */
} psc_frame_t;

struct ps_variable {
    ps_graph_t *g;
    char *name; /* op name + ":0" */
    char *op_name;
    char *store_name; /* psd's name */
    int dtype;
    unsigned rank;
    int64_t dims[PS_SHAPE_MAX_RANK];
    uint64_t nelems;
    size_t nbytes;
    int trainable;
    int synchronization;        /* PS_SYNC_* */
    int aggregation;            /* PS_AGG_* */
    ps_constraint_t constraint; /* kind PS_CONSTRAINT_NONE: none (psd's record) */
    int created;
    int plain; /* tf.Variable */
    uint64_t version;
    long task;                         /* shard index; -1 for a partitioned whole */
    ps_partitioned_variable_t *pv;     /* set on the handle standing for a partitioned whole */
    ps_partitioned_variable_t *parent; /* set on a part: its SaveSliceInfo's full variable */
    ps_value_fn value_fn;              /* set on a tensor handle (not a stored variable) */
    void *value_data;
    int has_regularizer; /* the regularizer this graph ran at creation */
    ps_regularizer_t regularizer;
    /* caching_device: a worker-side copy read once per graph step (ps_graph_new_step) */
    char *caching_device; /* NULL: not cached */
    void *cache;
    uint64_t cache_step; /* the graph step the cache holds; valid when cache != NULL */
};

/* TensorFlow's PartitionedVariable: parts along one axis, each a variable of the graph. */
struct ps_partitioned_variable {
    ps_graph_t *g;
    char *name; /* full name, no ":0" */
    int dtype;
    ps_shape_t shape;
    int64_t partitions[PS_SHAPE_MAX_RANK];
    int axis;
    size_t nparts;
    ps_variable_t **parts;
    int64_t *offsets; /* along axis */
    ps_variable_t *whole;
};

struct ps_graph {
    ps_client_t *client;
    psc_strmap_t used;         /* unique-name table: lower(name) -> count */
    psc_strmap_t scope_counts; /* variable_scopes_count */
    char *name_stack;          /* current name scope, "" at the root */
    ps_variable_scope_t *root;
    ps_variable_scope_t *current;
    psc_frame_t *frames;
    size_t nframes, frames_cap;
    psc_vec_t scopes;   /* every scope object (owned) */
    psc_vec_t getters;  /* every getter node (owned) */
    psc_vec_t vars;     /* every variable handle (owned) */
    psc_strmap_t store; /* store key -> ps_variable_t* */
    psc_vec_t store_keys;
    psc_strmap_t collections; /* key -> psc_vec_t* */
    psc_vec_t collection_keys;
    psc_strmap_t partitioned; /* full name -> ps_partitioned_variable_t* (_partitioned_vars) */
    psc_vec_t pvs;            /* every partitioned variable (owned) */
    psc_placer_t placer;      /* replica_device_setter; ntasks 0: hash placement */
    uint64_t step;            /* ps_graph_new_step's counter (caching_device reads) */
};

/* graph.c */

/** unique_name as TensorFlow's Graph.unique_name with an explicit name stack; heap result. */
char *psc_graph_unique_name_in(ps_graph_t *g, const char *stack, const char *name, int mark);

/**
 * Graph.name_scope(name)'s new stack: validate, then reset ("" / NULL), absolute re-entry (trailing
 * "/"), or uniquify. Returns 0 with the new stack in *out (heap), or INVALID_ARGUMENT.
 */
int psc_graph_name_scope_resolve(ps_graph_t *g, const char *name, char **out, ps_error_t *err);

/** Push a frame (the struct is copied). 0 or RESOURCE_EXHAUSTED. */
int psc_graph_push_frame(ps_graph_t *g, const psc_frame_t *f, ps_error_t *err);

/** Release what a frame holds (not the frame array slot). */
void psc_frame_deinit(psc_frame_t *f);

/** Append var to collection key unless dedupe and already present. 0 or -1 (out of memory). */
int psc_graph_collect(ps_graph_t *g, const char *key, ps_variable_t *var);

/** Record a new variable handle (owned by the graph from now on). 0 or -1. */
int psc_graph_adopt_var(ps_graph_t *g, ps_variable_t *v);

/** Free a variable handle that was never adopted. */
void psc_variable_free(ps_variable_t *v);

/* scope.c */

/** A new root scope object (float32, reuse False); NULL when out of memory. */
ps_variable_scope_t *psc_scope_new_root(void);
void psc_scope_free(ps_variable_scope_t *s);

/** Deep copy of an initializer spec into the scope (value bytes too). */
int psc_scope_copy_init(ps_variable_scope_t *s, const ps_initializer_t *init, ps_error_t *err);

/* regularizer.c */

/** Run r (NULL, NONE or NO: nothing) for the variable v this graph just created: record it on v and
 * collect its non-None loss in REGULARIZATION_LOSSES. 0 or the error. */
int psc_regularize(ps_graph_t *g, ps_variable_t *v, const ps_regularizer_t *r, ps_error_t *err);

/* partitioned.c */

/**
 * The partitioned path of get_variable (TF's _get_partitioned_variable) for full name a->name with
 * partitioner p (NULL: reuse without partitioner). *out is the handle standing for the whole.
 */
int psc_get_partitioned(ps_graph_t *g,
                        const ps_get_variable_args_t *a,
                        const ps_partitioner_t *p,
                        ps_variable_t **out,
                        ps_error_t *err);

/** Free a partitioned variable record (not its parts or whole: the graph owns those). */
void psc_partitioned_free(ps_partitioned_variable_t *pv);

/*
 * Batched pulls, updates and optimizer steps on partitioned wholes: each whole becomes its parts.
 * Parts along axis 0 point into the caller's buffer; along another axis they go through a
 * temporary buffer (gathered now when gather is set, scattered back by psc_expand_scatter).
 */
typedef struct psc_expand_copy {
    const ps_partitioned_variable_t *pv;
    size_t part;
    void *tmp;
    void *full;
} psc_expand_copy_t;

typedef struct psc_expand {
    ps_variable_t **vars;
    void **bufs;
    size_t *lens;
    size_t *origin; /* index of the caller's item each expanded item came from */
    size_t n;
    psc_expand_copy_t *copies;
    size_t ncopies;
} psc_expand_t;

int psc_expand(ps_variable_t *const *vars,
               void *const *bufs,
               const size_t *lens,
               size_t n,
               int gather,
               psc_expand_t *x,
               ps_error_t *err);
void psc_expand_scatter(const psc_expand_t *x);
void psc_expand_free(psc_expand_t *x);

/** After a batch: each whole's version becomes the highest of its parts'. */
void psc_partitioned_sync_versions(ps_variable_t *const *vars, size_t n);

/* client.c: the calls that go to psd. */

enum {
    PSC_LOOKUP_CREATE_OR_ATTACH = 1,
    PSC_LOOKUP_MUST_EXIST = 2,
    PSC_LOOKUP_GET_OR_CREATE = 3
};

typedef struct psc_lookup {
    const char *name;
    int mode;
    int kind; /* 0 get_variable, 1 Variable */
    int dtype;
    const ps_shape_t *shape;      /* NULL: unknown rank */
    const ps_initializer_t *init; /* NULL: INIT_DEFAULT */
    int trainable;
    const char *const *collections;
    size_t ncollections;
    const ps_constraint_t *constraint; /* NULL: none */
    int synchronization;
    int aggregation;
    const ps_slice_info_t *slice; /* a part of a partitioned variable: its save_slice_info */
} psc_lookup_t;

typedef struct psc_varinfo {
    int dtype;
    unsigned rank;
    int64_t dims[PS_SHAPE_MAX_RANK];
    uint64_t version;
    int trainable;
    int created;
    int kind;
    char **collections;
    size_t ncollections;
    ps_constraint_t constraint;
    int synchronization;
    int aggregation;
} psc_varinfo_t;

void psc_varinfo_deinit(psc_varinfo_t *vi);

int psc_client_get_variable(ps_client_t *c,
                            const psc_lookup_t *req,
                            psc_varinfo_t *info,
                            ps_error_t *err);

/* One tensor of a batched pull or update; version is filled from the reply. */
typedef struct psc_item {
    const char *name;
    int dtype;
    unsigned rank;
    const int64_t *dims;
    void *buf;     /* pull: destination */
    const void *x; /* update: source */
    size_t len;
    int op;
    double alpha;
    uint64_t version;
} psc_item_t;

/** The item of a stored variable (name, dtype, shape; buffers unset). */
psc_item_t psc_item_of(ps_variable_t *v);
/** A batch item of client c with len bytes: INVALID_ARGUMENT when not, naming the variable. */
int psc_check_batch_item(const ps_variable_t *v, ps_client_t *c, size_t len, ps_error_t *err);
/** train.c: an optimizer config's checks (INVALID_ARGUMENT with TensorFlow's wording). */
struct ps_optimizer_config;
int psc_optimizer_check_config(const struct ps_optimizer_config *c, ps_error_t *err);
/** The client's retry policy: max_retries (0: none) and backoff in ms. */
void psc_client_retry_policy(const ps_client_t *c, int *max_retries, int *backoff_ms);

int psc_client_pull(ps_client_t *c, psc_item_t *items, size_t n, ps_error_t *err);
int psc_client_update(ps_client_t *c, psc_item_t *items, size_t n, ps_error_t *err);

/**
 * Record that name lives on shard (a device setter's choice), so that every request for it goes
 * there. 0, INVALID_ARGUMENT when the name is already placed elsewhere, or RESOURCE_EXHAUSTED.
 */
int psc_client_place(ps_client_t *c, const char *name, size_t shard, ps_error_t *err);
/** Forget a placement made by psc_client_place (a lookup that failed). */
void psc_client_unplace(ps_client_t *c, const char *name);

/**
 * Whether psd holds a get_variable variable called name (on its shard), whatever its dtype and
 * shape: 1, 0, or minus the error code (err filled).
 */
int psc_client_exists(ps_client_t *c, const char *name, ps_error_t *err);

/** Delete names[0..n) at their shards (undoing parts a failed create made). 0 or the error. */
int psc_client_delete(ps_client_t *c, const char *const *names, size_t n, ps_error_t *err);

/* variable.c: the single-variable path in two phases, so that a partitioned variable does every
 * part's psd lookup before any is recorded in the graph (a failed create then leaves nothing). */

typedef struct psc_single {
    ps_variable_t *found; /* already in this graph: nothing was asked of psd */
    char *psd_name;       /* else what psd answered for, and the op name to mark (heap) */
    int mode;             /* PSC_LOOKUP_* */
    int trainable;
    const char *cols[64];
    size_t ncols;
    long task;            /* the device setter's choice, or -1 (hash) */
    uint64_t place_bytes; /* what the greedy placer was charged */
    size_t place_next;    /* the round-robin counter before this lookup */
    psc_varinfo_t vi;
} psc_single_t;

/* constant_initializer(list) for a variable of shape and dtype: TensorFlow 1.15's checks, then
 * the initial value (a new tensor, *out, caller frees). */
int psc_constant_list_value(const ps_initializer_t *init,
                            const ps_shape_t *shape,
                            int dtype,
                            ps_tensor_t **out,
                            ps_error_t *err);

/** Phase 1 (TF_SEMANTICS §1.2's checks, placement, the psd lookup). a->name is the full name. */
int psc_single_lookup(ps_graph_t *g,
                      const ps_get_variable_args_t *a,
                      const ps_slice_info_t *slice,
                      psc_single_t *s,
                      ps_error_t *err);
/** Phase 2: record the looked-up variable in the graph (store key, collections). */
int psc_single_commit(ps_graph_t *g,
                      const ps_get_variable_args_t *a,
                      psc_single_t *s,
                      ps_variable_t **out,
                      ps_error_t *err);
/** Release phase 1's result without recording it (placement undone; psd is not asked). */
void psc_single_release(ps_graph_t *g, psc_single_t *s);

#endif /* PSC_GRAPH_INT_H */
