/* tf.variable_scope over the graph's frame stack: opening by name, by captured object and by
 * default name; TensorFlow 1.15's reuse inheritance, implicit (auxiliary) name scopes, default-name
 * counters and their reset on exit, inherited initializer and dtype, and custom-getter composition.
 */
#include <string.h>

#include <ps/client.h>
#include <ps/internal/alloc.h>

#include "graph_int.h"

ps_variable_scope_t *psc_scope_new_root(void)
{
    ps_variable_scope_t *s = ps_calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->name = ps_strdup("");
    s->name_scope = ps_strdup("");
    s->dtype = PS_DTYPE_FLOAT32;
    if (!s->name || !s->name_scope) {
        psc_scope_free(s);
        return NULL;
    }
    return s;
}

void psc_scope_free(ps_variable_scope_t *s)
{
    if (!s)
        return;
    ps_free(s->name);
    ps_free(s->name_scope);
    ps_free(s->caching_device);
    ps_tensor_free(s->init_value);
    for (size_t i = 0; i < s->own_getters.len; i++)
        ps_free(s->own_getters.items[i]);
    psc_vec_deinit(&s->own_getters);
    ps_free(s);
}

int psc_scope_copy_init(ps_variable_scope_t *s, const ps_initializer_t *init, ps_error_t *err)
{
    ps_tensor_t *copy = NULL;
    if (init &&
        (init->kind == PS_INITIALIZER_VALUE || init->kind == PS_INITIALIZER_CONSTANT_LIST)) {
        const ps_tensor_t *v = init->value_tensor;
        if (!v)
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "a value initializer needs a value tensor");
        int rc = ps_tensor_from_data(ps_tensor_dtype(v), ps_tensor_dims(v), ps_tensor_rank(v),
                                     ps_tensor_data(v), ps_tensor_nbytes(v), &copy, err);
        if (rc)
            return rc;
    }
    ps_tensor_free(s->init_value);
    s->init_value = copy;
    s->has_init = init != NULL;
    if (init) {
        s->init = *init;
        s->init.value_tensor = copy;
    }
    return 0;
}

static ps_variable_scope_t *scope_clone(const ps_variable_scope_t *from,
                                        const char *name,
                                        const char *name_scope,
                                        int reuse,
                                        ps_error_t *err)
{
    ps_variable_scope_t *s = ps_calloc(1, sizeof *s);
    if (!s)
        goto oom;
    s->name = ps_strdup(name);
    s->name_scope = ps_strdup(name_scope);
    if (!s->name || !s->name_scope)
        goto oom;
    s->reuse = reuse;
    s->dtype = from->dtype;
    s->getter = from->getter;
    s->has_partitioner = from->has_partitioner;
    s->partitioner = from->partitioner;
    s->has_regularizer = from->has_regularizer;
    s->regularizer = from->regularizer;
    if (from->caching_device && !(s->caching_device = ps_strdup(from->caching_device)))
        goto oom;
    if (from->has_init && psc_scope_copy_init(s, &from->init, err) != 0) {
        psc_scope_free(s);
        return NULL;
    }
    return s;
oom:
    psc_scope_free(s);
    ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory entering a variable scope");
    return NULL;
}

static int64_t scope_count(const ps_graph_t *g, const char *name)
{
    psc_strmap_entry_t *e = psc_strmap_find(&g->scope_counts, name);
    return e ? e->num : 0;
}

static int open_variable_scope(ps_graph_t *g, const char *name)
{
    psc_strmap_entry_t *e = psc_strmap_upsert(&g->scope_counts, name);
    if (!e)
        return -1;
    e->num++;
    return 0;
}

/* _get_unique_variable_scope(prefix) (TF_SEMANTICS §2.5). */
static char *unique_variable_scope(ps_graph_t *g, const char *prefix)
{
    const char *cur = g->current->name;
    char *name = *cur ? psc_strfmt("%s/%s", cur, prefix) : ps_strdup(prefix);
    if (!name)
        return NULL;
    char *res = NULL;
    if (scope_count(g, name) == 0) {
        res = ps_strdup(prefix);
    } else {
        for (long idx = 1;; idx++) {
            char *cand = psc_strfmt("%s_%ld", name, idx);
            if (!cand)
                break;
            int64_t c = scope_count(g, cand);
            ps_free(cand);
            if (c == 0) {
                res = psc_strfmt("%s_%ld", prefix, idx);
                break;
            }
        }
    }
    ps_free(name);
    return res;
}

static const char *last_component(const char *name)
{
    const char *s = strrchr(name, '/');
    return s ? s + 1 : name;
}

int ps_variable_scope_push(ps_graph_t *g,
                           const char *name,
                           const ps_variable_scope_opts_t *opts,
                           ps_variable_scope_t **out,
                           ps_error_t *err)
{
    static const ps_variable_scope_opts_t zero_opts;
    const ps_variable_scope_opts_t *o = opts ? opts : &zero_opts;
    if (name && o->scope)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "VariableScope: name_or_scope must be a string or VariableScope.");
    if (!name && !o->scope && !o->default_name)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "If default_name is None then name_or_scope is required");
    if (o->reuse != PS_REUSE_INHERIT && o->reuse != PS_REUSE_TRUE && o->reuse != PS_REUSE_AUTO)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "The reuse parameter must be True or False or None.");
    if (o->dtype && !ps_dtype_valid(o->dtype))
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "dtype %d is not one psd stores (float32, float64, int32, int64)",
                            o->dtype);
    if (o->partitioner && (o->partitioner->kind < PS_PARTITIONER_NONE ||
                           o->partitioner->kind > PS_PARTITIONER_CALLBACK))
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "Partitioner must be callable, but received: kind %d",
                            o->partitioner->kind);
    if (o->initializer &&
        (o->initializer->kind == PS_INITIALIZER_VALUE ||
         o->initializer->kind == PS_INITIALIZER_CONSTANT_LIST) &&
        !o->initializer->value_tensor)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "a value initializer needs a value tensor");
    int by_name = name != NULL || o->scope != NULL;
    if (!by_name && o->reuse)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "reuse=True cannot be used without a name_or_scope");

    int aux = !o->no_auxiliary_name_scope;
    char *new_stack = NULL; /* the name stack inside the scope */
    char *yielded = NULL;   /* what the name scope yields ("foo_1/"), NULL when none opened */
    char *pure_name = NULL; /* string or unique default name */
    ps_variable_scope_t *s = NULL;
    psc_getter_node_t *node = NULL;
    int rc = 0;

    const char *ns_name = name ? name : o->scope ? last_component(o->scope->name) : o->default_name;
    if (!aux) {
        /* Re-enter the current name scope ("cur/" or the root). */
        new_stack = ps_strdup(g->name_stack);
        yielded = *g->name_stack ? psc_strfmt("%s/", g->name_stack) : ps_strdup("");
        if (!new_stack || !yielded)
            goto oom;
    } else if (*ns_name || !by_name) {
        rc = psc_graph_name_scope_resolve(g, ns_name, &new_stack, err);
        if (rc)
            goto fail;
        yielded = *new_stack ? psc_strfmt("%s/", new_stack) : ps_strdup("");
        if (!yielded)
            goto oom;
    }

    if (!by_name) {
        pure_name = unique_variable_scope(g, o->default_name);
        if (!pure_name)
            goto oom;
    }

    psc_frame_t f = {.kind = PSC_FRAME_VAR, .saved_scope = g->current};
    psc_strmap_init(&f.saved_counts);
    const ps_variable_scope_t *base;
    if (o->scope) {
        base = o->scope;
        s = scope_clone(base, base->name, base->name_scope, o->reuse ? o->reuse : base->reuse, err);
        if (!s) {
            rc = err ? err->code : PS_ERR_RESOURCE_EXHAUSTED;
            goto fail;
        }
        f.by_object = 1;
    } else {
        base = g->current;
        const char *sn = name ? name : pure_name;
        char *full = *base->name ? psc_strfmt("%s/%s", base->name, sn) : ps_strdup(sn);
        if (!full)
            goto oom;
        s = scope_clone(base, full, yielded ? yielded : sn, o->reuse ? o->reuse : base->reuse, err);
        f.new_name = full;
        if (!s) {
            rc = err ? err->code : PS_ERR_RESOURCE_EXHAUSTED;
            goto fail_frame;
        }
    }
    if (o->initializer && (rc = psc_scope_copy_init(s, o->initializer, err)) != 0)
        goto fail_frame;
    if (o->dtype)
        s->dtype = o->dtype;
    if (o->partitioner) {
        s->has_partitioner = 1;
        s->partitioner = *o->partitioner;
    }
    if (o->regularizer && o->regularizer->kind != PS_REGULARIZER_NONE) {
        s->has_regularizer = 1;
        s->regularizer = *o->regularizer;
    }
    if (o->caching_device) {
        ps_free(s->caching_device);
        if (!(s->caching_device = ps_strdup(o->caching_device)))
            goto oom_frame;
    }
    if (o->constraint && o->constraint->kind != PS_CONSTRAINT_NONE) {
        s->has_constraint = 1;
        s->constraint = *o->constraint;
    }
    if (o->custom_getter) {
        node = ps_calloc(1, sizeof *node);
        if (!node || psc_vec_push(&g->getters, node) != 0) {
            ps_free(node);
            goto oom_frame;
        }
        node->cb = o->custom_getter;
        node->data = o->custom_getter_data;
        node->outer = base->getter;
        s->getter = node;
    }
    if (psc_vec_push(&g->scopes, s) != 0)
        goto oom_frame;
    ps_variable_scope_t *entered = s;
    s = NULL; /* owned by the graph now */
    if (open_variable_scope(g, entered->name) != 0)
        goto oom_frame;
    if (f.by_object && psc_strmap_copy(&f.saved_counts, &g->scope_counts) != 0)
        goto oom_frame;
    f.entered = entered;
    f.saved_name_stack = g->name_stack;
    if ((rc = psc_graph_push_frame(g, &f, err)) != 0) {
        f.saved_name_stack = NULL;
        goto fail_frame;
    }
    if (new_stack)
        g->name_stack = new_stack;
    else if (!(g->name_stack = ps_strdup(f.saved_name_stack))) {
        /* Cannot happen without OOM; undo the frame so the stack stays consistent. */
        g->name_stack = f.saved_name_stack;
        g->frames[--g->nframes].saved_name_stack = NULL;
        psc_frame_deinit(&g->frames[g->nframes]);
        goto oom_nostack;
    }
    g->current = entered;
    ps_free(yielded);
    ps_free(pure_name);
    if (out)
        *out = entered;
    return 0;

oom_frame:
    rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory entering a variable scope");
fail_frame:
    psc_frame_deinit(&f);
    goto fail;
oom_nostack:
oom:
    rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory entering a variable scope");
fail:
    psc_scope_free(s);
    ps_free(new_stack);
    ps_free(yielded);
    ps_free(pure_name);
    return rc;
}

int ps_variable_scope_pop(ps_graph_t *g, const ps_variable_scope_t *scope, ps_error_t *err)
{
    if (g->nframes == 0 || g->frames[g->nframes - 1].kind != PSC_FRAME_VAR ||
        g->frames[g->nframes - 1].entered != scope || g->current != scope)
        return ps_error_set(err, PS_ERR_FAILED_PRECONDITION, "Improper nesting of variable_scope.");
    psc_frame_t *f = &g->frames[--g->nframes];
    if (f->by_object) {
        psc_strmap_deinit(&g->scope_counts);
        g->scope_counts = f->saved_counts;
        psc_strmap_init(&f->saved_counts);
    } else {
        size_t n = strlen(f->new_name);
        for (size_t i = 0; i < g->scope_counts.cap; i++) {
            psc_strmap_entry_t *e = &g->scope_counts.slots[i];
            if (e->key && strncmp(e->key, f->new_name, n) == 0 && e->key[n] == '/')
                e->num = 0;
        }
    }
    g->current = f->saved_scope;
    ps_free(g->name_stack);
    g->name_stack = f->saved_name_stack;
    f->saved_name_stack = NULL;
    psc_frame_deinit(f);
    return 0;
}

ps_variable_scope_t *ps_get_variable_scope(const ps_graph_t *g)
{
    return g->current;
}

void ps_variable_scope_reuse_variables(ps_variable_scope_t *scope)
{
    scope->reuse = PS_REUSE_TRUE;
}

void ps_graph_reuse_variables(ps_graph_t *g)
{
    ps_variable_scope_reuse_variables(g->current);
}

const char *ps_variable_scope_name(const ps_variable_scope_t *scope)
{
    return scope->name;
}

const char *ps_variable_scope_original_name_scope(const ps_variable_scope_t *scope)
{
    return scope->name_scope;
}

int ps_variable_scope_reuse(const ps_variable_scope_t *scope)
{
    return scope->reuse;
}

int ps_variable_scope_dtype(const ps_variable_scope_t *scope)
{
    return scope->dtype;
}

int ps_variable_scope_set_dtype(ps_variable_scope_t *scope, int dtype, ps_error_t *err)
{
    if (!ps_dtype_valid(dtype))
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "dtype %d is not one psd stores (float32, float64, int32, int64)",
                            dtype);
    scope->dtype = dtype;
    return 0;
}

int ps_variable_scope_set_initializer(ps_variable_scope_t *scope,
                                      const ps_initializer_t *init,
                                      ps_error_t *err)
{
    return psc_scope_copy_init(scope, init, err);
}

const ps_initializer_t *ps_variable_scope_initializer(const ps_variable_scope_t *scope)
{
    return scope->has_init ? &scope->init : NULL;
}

int ps_variable_scope_get_collection(const ps_graph_t *g,
                                     const ps_variable_scope_t *scope,
                                     const char *key,
                                     ps_variable_t **out,
                                     size_t cap,
                                     size_t *n,
                                     ps_error_t *err)
{
    /* TensorFlow: scope = self._name + "/" if self._name else "": the root scope (name "") filters
     * nothing and returns every member. */
    if (scope->name[0] == '\0')
        return ps_graph_get_collection(g, key, NULL, out, cap, n, err);
    char *prefix = psc_strfmt("%s/", scope->name);
    if (!prefix)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    int rc = ps_graph_get_collection(g, key, prefix, out, cap, n, err);
    ps_free(prefix);
    return rc;
}

int ps_variable_scope_set_custom_getter(ps_variable_scope_t *scope,
                                        ps_custom_getter_cb cb,
                                        void *data,
                                        ps_error_t *err)
{
    if (!cb) {
        scope->getter = NULL;
        return 0;
    }
    /* Earlier nodes may still be the outer getter of scopes opened inside this one, so every node
     * lives as long as the scope (and so the graph). */
    psc_getter_node_t *node = ps_calloc(1, sizeof *node);
    if (!node || psc_vec_push(&scope->own_getters, node) != 0) {
        ps_free(node);
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    }
    node->cb = cb;
    node->data = data;
    scope->getter = node;
    return 0;
}

int ps_variable_scope_set_partitioner(ps_variable_scope_t *scope,
                                      const ps_partitioner_t *p,
                                      ps_error_t *err)
{
    if (p && (p->kind < PS_PARTITIONER_NONE || p->kind > PS_PARTITIONER_CALLBACK))
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "Partitioner must be callable, but received: kind %d", p->kind);
    scope->has_partitioner = p != NULL && p->kind != PS_PARTITIONER_NONE;
    if (scope->has_partitioner)
        scope->partitioner = *p;
    return 0;
}

const ps_partitioner_t *ps_variable_scope_partitioner(const ps_variable_scope_t *scope)
{
    return scope->has_partitioner ? &scope->partitioner : NULL;
}

void ps_variable_scope_set_regularizer(ps_variable_scope_t *scope, const ps_regularizer_t *r)
{
    scope->has_regularizer = r != NULL && r->kind != PS_REGULARIZER_NONE;
    if (scope->has_regularizer)
        scope->regularizer = *r;
}

const ps_regularizer_t *ps_variable_scope_regularizer(const ps_variable_scope_t *scope)
{
    return scope->has_regularizer ? &scope->regularizer : NULL;
}

int ps_variable_scope_set_caching_device(ps_variable_scope_t *scope,
                                         const char *device,
                                         ps_error_t *err)
{
    char *d = NULL;
    if (device && !(d = ps_strdup(device)))
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    ps_free(scope->caching_device);
    scope->caching_device = d;
    return 0;
}

const char *ps_variable_scope_caching_device(const ps_variable_scope_t *scope)
{
    return scope->caching_device;
}
