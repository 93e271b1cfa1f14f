/* Helpers shared by the seed programs: connect to psd (address from argv[1] or $PS_SERVER), one
 * graph, and short wrappers that print what the Python seeds print (repr, names, True/False, and
 * errors as "ValueError (CODE): message"). Any unexpected failure exits 1 with the reason. */
#ifndef PS_SEED_UTIL_H
#define PS_SEED_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ps/client.h>

static ps_client_t *seed_client;
static ps_graph_t *G;
static ps_error_t E;

static inline void seed_die(int rc, const char *what)
{
    if (rc) {
        printf("unexpected error in %s: %s: %s\n", what, ps_code_name(rc), E.msg);
        exit(1);
    }
}

static inline void seed_open(int argc, char **argv)
{
    const char *addr = ps_client_address_from_args(argc, argv);
    if (!addr) {
        fprintf(stderr, "usage: %s HOST:PORT (or set PS_SERVER)\n", argv[0]);
        exit(2);
    }
    seed_die(ps_client_connect(addr, NULL, &seed_client, &E), "connect");
    seed_die(ps_graph_new(seed_client, &G, &E), "graph");
}

static inline int seed_close(void)
{
    ps_graph_free(G);
    ps_client_free(seed_client);
    return 0;
}

static inline ps_variable_scope_t *vs_open(const char *name, int reuse)
{
    ps_variable_scope_t *s = NULL;
    ps_variable_scope_opts_t o = {.reuse = reuse};
    seed_die(ps_variable_scope_push(G, name, &o, &s, &E), "variable_scope");
    return s;
}

static inline ps_variable_scope_t *vs_open_opts(const char *name, const ps_variable_scope_opts_t *o)
{
    ps_variable_scope_t *s = NULL;
    seed_die(ps_variable_scope_push(G, name, o, &s, &E), "variable_scope");
    return s;
}

static inline void vs_close(ps_variable_scope_t *s)
{
    seed_die(ps_variable_scope_pop(G, s, &E), "variable_scope exit");
}

static inline void ns_open(const char *name)
{
    seed_die(ps_name_scope_push(G, name, NULL, 0, &E), "name_scope");
}

static inline void ns_close(void)
{
    seed_die(ps_name_scope_pop(G, &E), "name_scope exit");
}

/* get_variable(name, shape) with shape given as rank + dims (rank -1: shape omitted). */
static inline int try_get(const char *name,
                          int rank,
                          const int64_t *dims,
                          const ps_initializer_t *init,
                          ps_variable_t **out)
{
    ps_shape_t s = ps_shape_make(rank < 0 ? 0 : (unsigned) rank, dims);
    ps_get_variable_args_t a = {.name = name, .shape = rank < 0 ? NULL : &s, .initializer = init};
    return ps_get_variable(G, &a, out, &E);
}

static inline ps_variable_t *
get(const char *name, int rank, const int64_t *dims, const ps_initializer_t *init)
{
    ps_variable_t *v = NULL;
    seed_die(try_get(name, rank, dims, init, &v), "get_variable");
    return v;
}

static inline ps_variable_t *variable(const ps_tensor_t *value, const char *name)
{
    ps_variable_args_t a = {.initial_value = value, .name = name};
    ps_variable_t *v = NULL;
    seed_die(ps_variable_new(G, &a, &v, &E), "Variable");
    return v;
}

static inline const char *repr(const ps_variable_t *v)
{
    static char buf[4][256];
    static int i;
    i = (i + 1) % 4;
    return ps_variable_repr(v, buf[i], sizeof buf[i]);
}

static inline const char *py_bool(int b)
{
    return b ? "True" : "False";
}

static inline void print_error(int rc)
{
    printf("ValueError (%s): %s\n", ps_code_name(rc), E.msg);
}

/* The op name TensorFlow would give an op of this type created now (x.op.name). */
static inline const char *op_name(const char *type)
{
    static char buf[256];
    seed_die(ps_graph_unique_name(G, type, 1, buf, sizeof buf, &E), "unique_name");
    return buf;
}

static inline float pull1(ps_variable_t *v)
{
    float x[64];
    seed_die(ps_variable_nbytes(v) > sizeof x ? PS_ERR_OUT_OF_RANGE : 0, "pull (too big)");
    seed_die(ps_variable_pull(v, x, ps_variable_nbytes(v), &E), "pull");
    return x[0];
}

#endif /* PS_SEED_UTIL_H */
