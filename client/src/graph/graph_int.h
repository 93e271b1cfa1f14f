/* Private layout of the graph, variable-scope objects, custom-getter records and variable handles,
 * shared by graph.c, scope.c and variable.c; and the client calls those make to psd. */
#ifndef PSC_GRAPH_INT_H
#define PSC_GRAPH_INT_H

#include <stddef.h>
#include <stdint.h>

#include <ps/client.h>

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
    psc_vec_t own_getters; /* nodes made by ps_variable_scope_set_custom_getter (owned) */
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
    int created;
    int plain; /* tf.Variable */
    uint64_t version;
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

int psc_client_pull(ps_client_t *c, psc_item_t *items, size_t n, ps_error_t *err);
int psc_client_update(ps_client_t *c, psc_item_t *items, size_t n, ps_error_t *err);

#endif /* PSC_GRAPH_INT_H */
