/* The model-building graph: its lifetime, the case-insensitive unique-name table (TensorFlow's
 * Graph.unique_name and Graph.name_scope), the frame stack shared by name and variable scopes, the
 * get_variable store keys it holds and its collections (insertion order, re.match filtering). */
#include <ctype.h>
#include <regex.h>
#include <stdio.h>
#include <string.h>

#include <ps/client.h>
#include <ps/internal/alloc.h>
#include <ps/internal/names.h>

#include "graph_int.h"

int ps_graph_new(ps_client_t *client, ps_graph_t **out, ps_error_t *err)
{
    ps_graph_t *g = ps_calloc(1, sizeof *g);
    if (!g)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory creating a graph");
    g->client = client;
    psc_strmap_init(&g->used);
    psc_strmap_init(&g->scope_counts);
    psc_strmap_init(&g->store);
    psc_strmap_init(&g->collections);
    psc_vec_init(&g->scopes);
    psc_vec_init(&g->getters);
    psc_vec_init(&g->vars);
    psc_vec_init(&g->store_keys);
    psc_vec_init(&g->collection_keys);
    psc_strmap_init(&g->partitioned);
    psc_vec_init(&g->pvs);
    g->name_stack = ps_strdup("");
    g->root = psc_scope_new_root();
    if (!g->name_stack || !g->root || psc_vec_push(&g->scopes, g->root) != 0) {
        if (g->root && (g->scopes.len == 0))
            psc_scope_free(g->root);
        g->root = NULL;
        ps_graph_free(g);
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory creating a graph");
    }
    g->current = g->root;
    *out = g;
    return 0;
}

void psc_frame_deinit(psc_frame_t *f)
{
    ps_free(f->saved_name_stack);
    ps_free(f->new_name);
    psc_strmap_deinit(&f->saved_counts);
    f->saved_name_stack = NULL;
    f->new_name = NULL;
}

void psc_variable_free(ps_variable_t *v)
{
    if (!v)
        return;
    ps_free(v->name);
    ps_free(v->op_name);
    ps_free(v->store_name);
    ps_free(v->caching_device);
    ps_free(v->cache);
    ps_free(v);
}

void ps_graph_free(ps_graph_t *g)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->nframes; i++)
        psc_frame_deinit(&g->frames[i]);
    ps_free(g->frames);
    for (size_t i = 0; i < g->scopes.len; i++)
        psc_scope_free(g->scopes.items[i]);
    for (size_t i = 0; i < g->getters.len; i++)
        ps_free(g->getters.items[i]);
    for (size_t i = 0; i < g->vars.len; i++)
        psc_variable_free(g->vars.items[i]);
    for (size_t i = 0; i < g->collections.cap; i++) {
        psc_vec_t *v = g->collections.slots[i].ptr;
        if (g->collections.slots[i].key && v) {
            psc_vec_deinit(v);
            ps_free(v);
        }
    }
    for (size_t i = 0; i < g->pvs.len; i++)
        psc_partitioned_free(g->pvs.items[i]);
    psc_vec_deinit(&g->pvs);
    psc_strmap_deinit(&g->partitioned);
    psc_placer_deinit(&g->placer);
    psc_vec_deinit(&g->scopes);
    psc_vec_deinit(&g->getters);
    psc_vec_deinit(&g->vars);
    psc_vec_deinit(&g->store_keys);
    psc_vec_deinit(&g->collection_keys);
    psc_strmap_deinit(&g->used);
    psc_strmap_deinit(&g->scope_counts);
    psc_strmap_deinit(&g->store);
    psc_strmap_deinit(&g->collections);
    ps_free(g->name_stack);
    ps_free(g);
}

ps_client_t *ps_graph_client(const ps_graph_t *g)
{
    return g->client;
}

static char *lower_dup(const char *s)
{
    char *d = ps_strdup(s);
    if (d) {
        for (char *p = d; *p; p++)
            *p = (char) tolower((unsigned char) *p);
    }
    return d;
}

/* Graph.unique_name, exactly as TF 1.15's ops.py (TF_SEMANTICS §3.2). */
char *psc_graph_unique_name_in(ps_graph_t *g, const char *stack, const char *name, int mark)
{
    char *full = stack && *stack ? psc_strfmt("%s/%s", stack, name) : ps_strdup(name);
    char *key = full ? lower_dup(full) : NULL;
    char *result = NULL;
    if (!key)
        goto out;
    psc_strmap_entry_t *e = psc_strmap_find(&g->used, key);
    int64_t i = e ? e->num : 0;
    if (mark) {
        if (!e && !(e = psc_strmap_upsert(&g->used, key)))
            goto out;
        e->num = i + 1;
    }
    if (i > 0) {
        char *cand = NULL;
        for (;;) {
            ps_free(cand);
            cand = psc_strfmt("%s_%lld", key, (long long) i);
            if (!cand)
                goto out;
            i++;
            if (!psc_strmap_find(&g->used, cand))
                break;
        }
        if (mark) {
            psc_strmap_entry_t *ce = psc_strmap_upsert(&g->used, cand);
            if (!ce) {
                ps_free(cand);
                goto out;
            }
            ce->num = 1;
        }
        ps_free(cand);
        result = psc_strfmt("%s_%lld", full, (long long) (i - 1));
    } else {
        result = full;
        full = NULL;
    }
out:
    ps_free(full);
    ps_free(key);
    return result;
}

int ps_graph_unique_name(
    ps_graph_t *g, const char *name, int mark, char *out, size_t cap, ps_error_t *err)
{
    if (!name || !*name)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "unique_name needs a non-empty name");
    /* Compute without marking first so that a result that does not fit marks nothing. */
    char *r = psc_graph_unique_name_in(g, g->name_stack, name, 0);
    if (r && mark && out && strlen(r) + 1 <= cap) {
        ps_free(r);
        r = psc_graph_unique_name_in(g, g->name_stack, name, 1);
    }
    if (!r)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory in unique_name");
    size_t n = strlen(r);
    if (!out || n + 1 > cap) {
        ps_free(r);
        return ps_error_set(err, PS_ERR_OUT_OF_RANGE,
                            "unique name of %zu bytes does not fit in %zu", n, cap);
    }
    memcpy(out, r, n + 1);
    ps_free(r);
    return 0;
}

int psc_graph_name_scope_resolve(ps_graph_t *g, const char *name, char **out, ps_error_t *err)
{
    if (name && *name) {
        int rc = ps_name_check_scope(name, g->name_stack[0] == '\0', err);
        if (rc)
            return rc;
    }
    char *ns;
    if (!name || !*name)
        ns = ps_strdup("");
    else if (name[strlen(name) - 1] == '/')
        ns = ps_strndup(name, strlen(name) - 1);
    else
        ns = psc_graph_unique_name_in(g, g->name_stack, name, 1);
    if (!ns)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory entering name scope");
    *out = ns;
    return 0;
}

int psc_graph_push_frame(ps_graph_t *g, const psc_frame_t *f, ps_error_t *err)
{
    if (g->nframes == g->frames_cap) {
        size_t ncap = g->frames_cap ? g->frames_cap * 2 : 16;
        psc_frame_t *n = ps_realloc(g->frames, ncap * sizeof *n);
        if (!n)
            return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory entering a scope");
        g->frames = n;
        g->frames_cap = ncap;
    }
    g->frames[g->nframes++] = *f;
    return 0;
}

int ps_name_scope_push(ps_graph_t *g, const char *name, char *out, size_t cap, ps_error_t *err)
{
    char *ns = NULL;
    int rc = psc_graph_name_scope_resolve(g, name, &ns, err);
    if (rc)
        return rc;
    size_t n = strlen(ns);
    if (out && (n + 2 > cap)) {
        ps_free(ns);
        return ps_error_set(err, PS_ERR_OUT_OF_RANGE, "name scope '%s/' does not fit in %zu bytes",
                            ns, cap);
    }
    psc_frame_t f = {.kind = PSC_FRAME_NAME, .saved_name_stack = g->name_stack};
    psc_strmap_init(&f.saved_counts);
    rc = psc_graph_push_frame(g, &f, err);
    if (rc) {
        ps_free(ns);
        return rc;
    }
    g->name_stack = ns;
    if (out) {
        if (n)
            snprintf(out, cap, "%s/", ns);
        else
            out[0] = '\0';
    }
    return 0;
}

int ps_name_scope_pop(ps_graph_t *g, ps_error_t *err)
{
    if (g->nframes == 0 || g->frames[g->nframes - 1].kind != PSC_FRAME_NAME)
        return ps_error_set(err, PS_ERR_FAILED_PRECONDITION, "Improper nesting of name_scope.");
    psc_frame_t *f = &g->frames[--g->nframes];
    ps_free(g->name_stack);
    g->name_stack = f->saved_name_stack;
    f->saved_name_stack = NULL;
    psc_frame_deinit(f);
    return 0;
}

const char *ps_graph_name_scope(const ps_graph_t *g)
{
    return g->name_stack;
}

int psc_graph_adopt_var(ps_graph_t *g, ps_variable_t *v)
{
    return psc_vec_push(&g->vars, v);
}

int psc_graph_collect(ps_graph_t *g, const char *key, ps_variable_t *var)
{
    psc_strmap_entry_t *e = psc_strmap_find(&g->collections, key);
    if (!e) {
        psc_vec_t *v = ps_calloc(1, sizeof *v);
        if (!v)
            return -1;
        e = psc_strmap_upsert(&g->collections, key);
        if (!e) {
            ps_free(v);
            return -1;
        }
        e->ptr = v;
        if (psc_vec_push(&g->collection_keys, e->key) != 0)
            return -1;
    }
    return psc_vec_push(e->ptr, var);
}

int ps_graph_add_to_collection(ps_graph_t *g, const char *key, ps_variable_t *var, ps_error_t *err)
{
    if (!key || !var || var->g != g)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "add_to_collection needs a key and a variable of this graph");
    if (psc_graph_collect(g, key, var) != 0)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory adding to '%s'", key);
    return 0;
}

int ps_graph_get_collection(const ps_graph_t *g,
                            const char *key,
                            const char *scope,
                            ps_variable_t **out,
                            size_t cap,
                            size_t *n,
                            ps_error_t *err)
{
    *n = 0;
    psc_strmap_entry_t *e = key ? psc_strmap_find(&g->collections, key) : NULL;
    regex_t re;
    int use_re = scope && *scope;
    if (use_re) {
        char *pat = psc_strfmt("^(%s)", scope);
        if (!pat)
            return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
        int rc = regcomp(&re, pat, REG_EXTENDED | REG_NOSUB);
        ps_free(pat);
        if (rc != 0)
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "scope '%s' is not a valid regular expression", scope);
    }
    if (e) {
        psc_vec_t *v = e->ptr;
        for (size_t i = 0; i < v->len; i++) {
            ps_variable_t *var = v->items[i];
            if (use_re && regexec(&re, var->name, 0, NULL, 0) != 0)
                continue;
            if (*n < cap && out)
                out[*n] = var;
            (*n)++;
        }
    }
    if (use_re)
        regfree(&re);
    return 0;
}

size_t ps_graph_collection_count(const ps_graph_t *g)
{
    return g->collection_keys.len;
}

const char *ps_graph_collection_key(const ps_graph_t *g, size_t i)
{
    return i < g->collection_keys.len ? g->collection_keys.items[i] : NULL;
}

ps_variable_t *ps_graph_store_lookup(const ps_graph_t *g, const char *key)
{
    psc_strmap_entry_t *e = key ? psc_strmap_find(&g->store, key) : NULL;
    return e ? e->ptr : NULL;
}

size_t ps_graph_store_count(const ps_graph_t *g)
{
    return g->store_keys.len;
}

const char *ps_graph_store_key(const ps_graph_t *g, size_t i)
{
    return i < g->store_keys.len ? g->store_keys.items[i] : NULL;
}
