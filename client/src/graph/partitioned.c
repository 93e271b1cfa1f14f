/* Partitioned variables in a graph: TensorFlow 1.15's _get_partitioned_variable (the checks of
 * TF_SEMANTICS §7.1 in TF's order and words, parts name/part_i with _iter_slices' geometry, an
 * initializer per part so that the whole is initialized as TF initializes the full shape), the
 * all-or-nothing creation of the parts across psd shards, the PartitionedVariable handle and its
 * accessors, the replica_device_setter setting of the graph, and the expansion of a whole into its
 * parts for batched pulls, updates and optimizer steps. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <ps/client.h>
#include <ps/internal/alloc.h>
#include <ps/internal/init.h>
#include <ps/partition.h>

#include "graph_int.h"

#define TRUNC_STDDEV 0.87962566103423978 /* TF's variance_scaling truncation factor */

void psc_partitioned_free(ps_partitioned_variable_t *pv)
{
    if (!pv)
        return;
    ps_free(pv->name);
    ps_free(pv->parts);
    ps_free(pv->offsets);
    ps_free(pv);
}

ps_partitioned_variable_t *ps_graph_partitioned_lookup(const ps_graph_t *g, const char *name)
{
    psc_strmap_entry_t *e = psc_strmap_find(&g->partitioned, name);
    return e ? e->ptr : NULL;
}

/* TensorShape.merge_with: unknown takes the other; else equal ranks and no conflicting dims. */
static int merge_shape(ps_shape_t *s, const ps_shape_t *other, ps_error_t *err)
{
    if (s->unknown_rank) {
        *s = *other;
        return 0;
    }
    int ok = s->rank == other->rank;
    for (unsigned i = 0; ok && i < s->rank; i++) {
        if (s->dims[i] >= 0 && other->dims[i] >= 0 && s->dims[i] != other->dims[i])
            ok = 0;
    }
    if (!ok) {
        char a[200], b[200];
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "Shapes %s and %s are not compatible",
                            ps_shape_str(s, a, sizeof a), ps_shape_str(other, b, sizeof b));
    }
    for (unsigned i = 0; i < s->rank; i++) {
        if (s->dims[i] < 0)
            s->dims[i] = other->dims[i];
    }
    return 0;
}

static int shapes_compatible(const ps_shape_t *spec, const ps_shape_t *found)
{
    if (spec->unknown_rank)
        return 1;
    if (spec->rank != found->rank)
        return 0;
    for (unsigned i = 0; i < spec->rank; i++) {
        if (spec->dims[i] >= 0 && spec->dims[i] != found->dims[i])
            return 0;
    }
    return 1;
}

/*
 * The initializer of one part. TF calls a callable initializer per part with
 * partition_info(full_shape, offset): zeros, ones, constants and the random kinds are the same per
 * part, while the variance-scaling family (glorot_*, the default for floats) takes its fans from
 * the full shape. psd computes fans from the shape it creates, so those become the uniform or
 * normal initializer with the bounds the full shape gives. A value initializer is sliced.
 */
static int part_initializer(const ps_initializer_t *given,
                            int dtype,
                            const ps_shape_t *full,
                            ps_initializer_t *out)
{
    ps_initializer_t in = given ? *given : ps_init_glorot_uniform(0);
    int kind = in.kind;
    if (kind == PS_INITIALIZER_DEFAULT) {
        if (!ps_dtype_is_float(dtype)) {
            *out = ps_init_zeros();
            return 0;
        }
        in = ps_init_glorot_uniform(in.seed);
        kind = in.kind;
    }
    if (!ps_dtype_is_float(dtype) ||
        (kind != PS_INITIALIZER_GLOROT_UNIFORM && kind != PS_INITIALIZER_GLOROT_NORMAL &&
         kind != PS_INITIALIZER_VARIANCE_SCALING)) {
        *out = in;
        return 0;
    }
    double scale = in.scale;
    int mode = in.mode, dist = in.distribution;
    if (kind != PS_INITIALIZER_VARIANCE_SCALING) {
        scale = 1.0;
        mode = PS_MODE_FAN_AVG;
        dist = kind == PS_INITIALIZER_GLOROT_UNIFORM ? PS_DISTRIBUTION_UNIFORM
                                                     : PS_DISTRIBUTION_TRUNCATED_NORMAL;
    }
    if (!(scale > 0.0) || mode < PS_MODE_FAN_IN || mode > PS_MODE_FAN_AVG ||
        dist < PS_DISTRIBUTION_TRUNCATED_NORMAL || dist > PS_DISTRIBUTION_UNIFORM) {
        *out = in; /* psd reports what is wrong with it */
        return 0;
    }
    double fan_in, fan_out;
    ps_init_compute_fans(full->dims, full->rank, &fan_in, &fan_out);
    double n = mode == PS_MODE_FAN_IN    ? fan_in
               : mode == PS_MODE_FAN_OUT ? fan_out
                                         : (fan_in + fan_out) / 2.0;
    scale /= n > 1.0 ? n : 1.0;
    if (dist == PS_DISTRIBUTION_UNIFORM) {
        double limit = sqrt(3.0 * scale);
        *out = ps_init_random_uniform(-limit, limit, in.seed);
    } else if (dist == PS_DISTRIBUTION_TRUNCATED_NORMAL) {
        *out = ps_init_truncated_normal(0.0, sqrt(scale) / TRUNC_STDDEV, in.seed);
    } else {
        *out = ps_init_random_normal(0.0, sqrt(scale), in.seed);
    }
    return 0;
}

/* Rows [off, off+len) along axis of a row-major tensor of shape full: outer blocks of inner. */
static void slice_geometry(
    const ps_shape_t *full, int axis, size_t esize, uint64_t *outer, uint64_t *inner_bytes)
{
    uint64_t o = 1, in = esize;
    for (int d = 0; d < axis; d++)
        o *= (uint64_t) full->dims[d];
    for (unsigned d = (unsigned) axis + 1; d < full->rank; d++)
        in *= (uint64_t) full->dims[d];
    *outer = o;
    *inner_bytes = in;
}

/* Copy rows [off, off+len) along the axis between a full buffer and a compact part buffer. */
static void copy_slice(const ps_shape_t *full,
                       int axis,
                       size_t esize,
                       int64_t off,
                       int64_t len,
                       void *part,
                       void *whole,
                       int to_part)
{
    uint64_t outer, inner;
    slice_geometry(full, axis, esize, &outer, &inner);
    uint64_t full_row = (uint64_t) full->dims[axis] * inner;
    uint64_t part_row = (uint64_t) len * inner;
    for (uint64_t o = 0; o < outer; o++) {
        uint8_t *p = (uint8_t *) part + o * part_row;
        uint8_t *w = (uint8_t *) whole + o * full_row + (uint64_t) off * inner;
        if (to_part)
            memcpy(p, w, part_row);
        else
            memcpy(w, p, part_row);
    }
}

/* A new tensor holding part [off, off+len) of value along axis. */
static int slice_value(const ps_tensor_t *value,
                       int axis,
                       int64_t off,
                       int64_t len,
                       ps_tensor_t **out,
                       ps_error_t *err)
{
    ps_shape_t full = ps_tensor_shape(value);
    int64_t dims[PS_SHAPE_MAX_RANK];
    memcpy(dims, full.dims, sizeof dims);
    dims[axis] = len;
    int rc = ps_tensor_new(ps_tensor_dtype(value), dims, full.rank, out, err);
    if (rc)
        return rc;
    copy_slice(&full, axis, ps_dtype_size(ps_tensor_dtype(value)), off, len, ps_tensor_data(*out),
               (void *) ps_tensor_data(value), 1);
    return 0;
}

/* The "part is missing" / transport errors of a part name it and its shard. */
static int part_error(ps_graph_t *g,
                      const char *name,
                      const char *part,
                      size_t i,
                      int reuse,
                      int rc,
                      const ps_error_t *e,
                      ps_error_t *err)
{
    size_t shard = ps_client_shard_of(g->client, part);
    const char *addr = ps_client_shard_address(g->client, shard);
    if (rc == PS_ERR_NOT_FOUND && reuse == PS_REUSE_TRUE && i == 0)
        return ps_error_set(err, rc,
                            "PartitionedVariable %s does not exist, or was not created with "
                            "tf.get_variable(). Did you mean to set reuse=False or "
                            "reuse=tf.AUTO_REUSE in VarScope?",
                            name);
    if (rc == PS_ERR_NOT_FOUND && reuse == PS_REUSE_TRUE)
        return ps_error_set(err, rc,
                            "partitioned variable %s: part %s is missing on its shard "
                            "/job:ps/task:%zu (%s)",
                            name, part, shard, addr);
    if (rc == PS_ERR_UNAVAILABLE || rc == PS_ERR_DEADLINE_EXCEEDED)
        return ps_error_set(err, rc,
                            "partitioned variable %s: part %s on /job:ps/task:%zu (%s): %s", name,
                            part, shard, addr, e->msg);
    return ps_error_set(err, rc, "%s", e->msg);
}

static int oom(ps_error_t *err)
{
    return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
}

/* The graph's record of a new partitioned variable and the handle standing for the whole. */
static int record(ps_graph_t *g,
                  const char *name,
                  int dtype,
                  const ps_shape_t *shape,
                  const int64_t *partitions,
                  int axis,
                  ps_variable_t **parts,
                  size_t nparts,
                  ps_variable_t **out,
                  ps_error_t *err)
{
    ps_partitioned_variable_t *pv = ps_calloc(1, sizeof *pv);
    ps_variable_t *w = ps_calloc(1, sizeof *w);
    if (!pv || !w)
        goto fail;
    pv->g = g;
    pv->name = ps_strdup(name);
    pv->dtype = dtype;
    pv->shape = *shape;
    memcpy(pv->partitions, partitions, shape->rank * sizeof *partitions);
    pv->axis = axis;
    pv->nparts = nparts;
    pv->parts = ps_calloc(nparts, sizeof *pv->parts);
    pv->offsets = ps_calloc(nparts, sizeof *pv->offsets);
    if (!pv->name || !pv->parts || !pv->offsets)
        goto fail;
    int64_t off = 0;
    for (size_t i = 0; i < nparts; i++) {
        pv->parts[i] = parts[i];
        parts[i]->parent = pv;
        pv->offsets[i] = off;
        off += parts[i]->dims[axis];
    }
    w->g = g;
    w->name = ps_strdup(name);
    w->op_name = ps_strdup(name);
    w->store_name = ps_strdup(name);
    w->dtype = dtype;
    w->rank = shape->rank;
    w->nelems = 1;
    for (unsigned i = 0; i < shape->rank; i++) {
        w->dims[i] = shape->dims[i];
        w->nelems *= (uint64_t) shape->dims[i];
    }
    w->nbytes = (size_t) (w->nelems * ps_dtype_size(dtype));
    w->trainable = parts[0]->trainable;
    for (size_t i = 0; i < nparts; i++)
        w->created |= parts[i]->created;
    w->task = -1;
    w->pv = pv;
    pv->whole = w;
    if (!w->name || !w->op_name || !w->store_name)
        goto fail;
    if (psc_graph_adopt_var(g, w) != 0)
        goto fail;
    w = NULL;
    if (psc_vec_push(&g->pvs, pv) != 0) {
        psc_partitioned_free(pv);
        return oom(err);
    }
    psc_strmap_entry_t *e = psc_strmap_upsert(&g->partitioned, name);
    if (!e)
        return oom(err);
    e->ptr = pv;
    psc_partitioned_sync_versions(&pv->whole, 1);
    *out = pv->whole;
    return 0;
fail:
    if (w && w->pv)
        w->pv = NULL;
    psc_variable_free(w);
    psc_partitioned_free(pv);
    return oom(err);
}

int psc_get_partitioned(ps_graph_t *g,
                        const ps_get_variable_args_t *a,
                        const ps_partitioner_t *p,
                        ps_variable_t **out,
                        ps_error_t *err)
{
    const char *name = a->name;
    char s1[200], s2[200];
    int rc;
    if (ps_graph_store_lookup(g, name))
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "A partitioner was provided, but an unpartitioned version of the "
                            "variable was found: %s.  Perhaps a variable of the same name was "
                            "already created without partitioning?",
                            name);
    const ps_initializer_t *init = a->initializer;
    const ps_tensor_t *value =
        init && init->kind == PS_INITIALIZER_VALUE ? init->value_tensor : NULL;
    if (init && init->kind == PS_INITIALIZER_VALUE && !value)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "a value initializer needs a value tensor");
    ps_shape_t shape = a->shape ? *a->shape : ps_shape_unknown();
    if (!shape.unknown_rank) {
        if (shape.rank > PS_SHAPE_MAX_RANK)
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "rank %u exceeds maximum %d",
                                shape.rank, PS_SHAPE_MAX_RANK);
        for (unsigned i = 0; i < shape.rank; i++) {
            if (shape.dims[i] < 0 && shape.dims[i] != PS_DIM_UNKNOWN)
                return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "Dimension %lld must be >= 0",
                                    (long long) shape.dims[i]);
        }
    }
    if (value) {
        ps_shape_t vs = ps_tensor_shape(value);
        if ((rc = merge_shape(&shape, &vs, err)) != 0)
            return rc;
    }
    int dtype = a->dtype ? a->dtype : PS_DTYPE_FLOAT32;
    if (!ps_dtype_valid(dtype))
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "dtype %d is not one psd stores (float32, float64, int32, int64)",
                            dtype);
    int64_t parts[PS_SHAPE_MAX_RANK];
    int have_parts = p != NULL; /* TF: `if not reuse or partitioner` (p is NULL only on reuse) */
    if (have_parts && (rc = ps_partitioner_partitions(p, &shape, dtype, parts, err)) != 0)
        return rc;

    ps_partitioned_variable_t *found = ps_graph_partitioned_lookup(g, name);
    if (found) {
        if (a->reuse == PS_REUSE_FALSE)
            return ps_error_set(err, PS_ERR_ALREADY_EXISTS,
                                "Partitioned variable with name %s already exists. Did you mean "
                                "to set reuse=True or reuse=tf.AUTO_REUSE in VarScope?",
                                name);
        if (!shapes_compatible(&shape, &found->shape))
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "Trying to reuse partitioned variable %s, but specified shape %s "
                                "and found shape %s.",
                                name, ps_shape_str(&shape, s1, sizeof s1),
                                ps_shape_str(&found->shape, s2, sizeof s2));
        if (dtype != found->dtype)
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "Trying to reuse partitioned variable %s, but specified dtype %s "
                                "and found dtype %s.",
                                name, ps_dtype_name(dtype), ps_dtype_name(found->dtype));
        if (have_parts && memcmp(parts, found->partitions, found->shape.rank * sizeof *parts) != 0)
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "Trying to reuse partitioned variable %s, but specified "
                                "partitions %s and found partitions %s.",
                                name, ps_partitions_str(parts, shape.rank, s1, sizeof s1),
                                ps_partitions_str(found->partitions, shape.rank, s2, sizeof s2));
        *out = found->whole;
        return 0;
    }
    if (!have_parts)
        return ps_error_set(err, PS_ERR_NOT_FOUND,
                            "PartitionedVariable %s does not exist, or was not created with "
                            "tf.get_variable(). Did you mean to set reuse=False or "
                            "reuse=tf.AUTO_REUSE in VarScope?",
                            name);
    if (!g->client)
        return ps_error_set(err, PS_ERR_FAILED_PRECONDITION,
                            "graph has no client: cannot look up variable %s in psd", name);

    int axis;
    size_t n;
    int64_t off, len;
    if ((rc = ps_partition_slice(&shape, parts, 0, &axis, &n, &off, &len, err)) != 0)
        return rc;
    char *part0 = psc_strfmt("%s/part_0", name);
    char *last = psc_strfmt("%s/part_%zu", name, n - 1);
    char *extra = psc_strfmt("%s/part_%zu", name, n);
    if (!part0 || !last || !extra) {
        rc = oom(err);
        goto out_names;
    }
    int extra_found = 0;
    if (ps_graph_store_lookup(g, part0)) {
        if (!ps_graph_store_lookup(g, last)) {
            rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                              "Partitioner returned a different partitioning than what was "
                              "already found.  Partitioner returned %zu shards, and shard "
                              "%s/part_0 was found, but %s was not.",
                              n, name, last);
            goto out_names;
        }
        extra_found = ps_graph_store_lookup(g, extra) != NULL;
    } else if (a->reuse != PS_REUSE_TRUE) {
        /* What other workers made at psd: an unpartitioned variable of the name, or more parts
         * than this partitioning has. */
        int r = psc_client_exists(g->client, name, err);
        if (r == 1)
            rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                              "A partitioner was provided, but an unpartitioned version of the "
                              "variable was found: %s.  Perhaps a variable of the same name was "
                              "already created without partitioning?",
                              name);
        else if (r < 0)
            rc = -r;
        else if ((r = psc_client_exists(g->client, extra, err)) < 0)
            rc = -r;
        else
            extra_found = r;
        if (rc)
            goto out_names;
    }
    if (extra_found) {
        rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                          "Partitioner returned a different partitioning than what was already "
                          "found.  Partitioner returned %zu shards, and shard %s/part_0 was "
                          "found, but so was the extra shard %s.",
                          n, name, extra);
        goto out_names;
    }

    /* Phase 1: every part's lookup at psd; nothing is recorded in the graph yet. */
    psc_single_t *st = ps_calloc(n, sizeof *st);
    char **names = ps_calloc(n, sizeof *names);
    ps_variable_t **vars = ps_calloc(n, sizeof *vars);
    size_t done = 0;
    if (!st || !names || !vars) {
        rc = oom(err);
        goto out_parts;
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        if ((rc = ps_partition_slice(&shape, parts, i, &axis, &n, &off, &len, err)) != 0)
            break;
        if (!(names[i] = psc_strfmt("%s/part_%zu", name, i))) {
            rc = oom(err);
            break;
        }
        ps_shape_t ps = shape;
        ps.dims[axis] = len;
        ps_initializer_t pinit;
        ps_tensor_t *slice = NULL;
        if (value) {
            if ((rc = slice_value(value, axis, off, len, &slice, err)) != 0)
                break;
            pinit = ps_init_value(slice);
        } else {
            part_initializer(init, dtype, &shape, &pinit);
        }
        ps_get_variable_args_t pa = *a;
        pa.name = names[i];
        pa.shape = value ? NULL : &ps;
        pa.dtype = value ? ps_tensor_dtype(value) : dtype;
        pa.initializer = &pinit;
        pa.partitioner = NULL;
        /* TensorFlow's SaveSliceInfo of the part, kept at psd with it. */
        ps_slice_info_t si = {.full_name = name, .rank = shape.rank};
        memcpy(si.full_dims, shape.dims, shape.rank * sizeof *si.full_dims);
        si.offset[axis] = off;
        ps_error_t e;
        int r = psc_single_lookup(g, &pa, &si, &st[i], &e);
        ps_tensor_free(slice);
        if (r)
            rc = part_error(g, name, names[i], i, a->reuse, r, &e, err);
        else
            done = i + 1;
    }
    if (rc) {
        /* Undo: delete what this call created at psd, release every placement. */
        const char **created = ps_calloc(done ? done : 1, sizeof *created);
        size_t nc = 0;
        for (size_t i = 0; i < done; i++) {
            if (!st[i].found && st[i].vi.created && created)
                created[nc++] = st[i].psd_name;
        }
        ps_error_t e;
        if (nc)
            psc_client_delete(g->client, created, nc, &e);
        for (size_t i = done; i-- > 0;)
            psc_single_release(g, &st[i]);
        ps_free(created);
        goto out_parts;
    }
    /* Phase 2: record the parts and the whole. */
    for (size_t i = 0; i < n && rc == 0; i++) {
        ps_get_variable_args_t pa = *a;
        pa.name = names[i];
        rc = psc_single_commit(g, &pa, &st[i], &vars[i], err);
    }
    for (size_t i = 0; i < n; i++)
        psc_single_release(g, &st[i]);
    if (rc == 0)
        rc = record(g, name, value ? ps_tensor_dtype(value) : dtype, &shape, parts, axis, vars, n,
                    out, err);
out_parts:
    for (size_t i = 0; names && i < n; i++)
        ps_free(names[i]);
    ps_free(names);
    ps_free(vars);
    ps_free(st);
out_names:
    ps_free(part0);
    ps_free(last);
    ps_free(extra);
    return rc;
}

/* ---- expansion of wholes into parts ---- */

void psc_expand_free(psc_expand_t *x)
{
    for (size_t i = 0; i < x->ncopies; i++)
        ps_free(x->copies[i].tmp);
    ps_free(x->copies);
    ps_free(x->vars);
    ps_free(x->bufs);
    ps_free(x->lens);
    ps_free(x->origin);
    memset(x, 0, sizeof *x);
}

int psc_expand(ps_variable_t *const *vars,
               void *const *bufs,
               const size_t *lens,
               size_t n,
               int gather,
               psc_expand_t *x,
               ps_error_t *err)
{
    memset(x, 0, sizeof *x);
    size_t total = 0, ncopies = 0;
    for (size_t i = 0; i < n; i++) {
        const ps_partitioned_variable_t *pv = vars[i]->pv;
        if (!pv) {
            total++;
            continue;
        }
        total += pv->nparts;
        uint64_t outer, inner;
        slice_geometry(&pv->shape, pv->axis, ps_dtype_size(pv->dtype), &outer, &inner);
        if (outer > 1)
            ncopies += pv->nparts;
    }
    x->vars = ps_calloc(total ? total : 1, sizeof *x->vars);
    x->bufs = ps_calloc(total ? total : 1, sizeof *x->bufs);
    x->lens = ps_calloc(total ? total : 1, sizeof *x->lens);
    x->origin = ps_calloc(total ? total : 1, sizeof *x->origin);
    x->copies = ps_calloc(ncopies ? ncopies : 1, sizeof *x->copies);
    if (!x->vars || !x->bufs || !x->lens || !x->origin || !x->copies) {
        psc_expand_free(x);
        return oom(err);
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        ps_partitioned_variable_t *pv = vars[i]->pv;
        if (!pv) {
            x->vars[k] = vars[i];
            x->bufs[k] = bufs[i];
            x->lens[k] = lens ? lens[i] : vars[i]->nbytes;
            x->origin[k++] = i;
            continue;
        }
        size_t esize = ps_dtype_size(pv->dtype);
        uint64_t outer, inner;
        slice_geometry(&pv->shape, pv->axis, esize, &outer, &inner);
        for (size_t j = 0; j < pv->nparts; j++) {
            ps_variable_t *part = pv->parts[j];
            x->vars[k] = part;
            x->lens[k] = part->nbytes;
            x->origin[k] = i;
            if (outer == 1) {
                x->bufs[k] = (uint8_t *) bufs[i] + (uint64_t) pv->offsets[j] * inner;
            } else {
                psc_expand_copy_t *c = &x->copies[x->ncopies];
                c->pv = pv;
                c->part = j;
                c->full = bufs[i];
                c->tmp = ps_malloc(part->nbytes ? part->nbytes : 1);
                if (!c->tmp) {
                    psc_expand_free(x);
                    return oom(err);
                }
                x->ncopies++;
                if (gather)
                    copy_slice(&pv->shape, pv->axis, esize, pv->offsets[j], part->dims[pv->axis],
                               c->tmp, c->full, 1);
                x->bufs[k] = c->tmp;
            }
            k++;
        }
    }
    x->n = k;
    return 0;
}

void psc_expand_scatter(const psc_expand_t *x)
{
    for (size_t i = 0; i < x->ncopies; i++) {
        const psc_expand_copy_t *c = &x->copies[i];
        const ps_partitioned_variable_t *pv = c->pv;
        copy_slice(&pv->shape, pv->axis, ps_dtype_size(pv->dtype), pv->offsets[c->part],
                   pv->parts[c->part]->dims[pv->axis], c->tmp, c->full, 0);
    }
}

void psc_partitioned_sync_versions(ps_variable_t *const *vars, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        ps_partitioned_variable_t *pv = vars[i]->pv;
        if (!pv)
            continue;
        uint64_t v = 0;
        for (size_t j = 0; j < pv->nparts; j++)
            v = pv->parts[j]->version > v ? pv->parts[j]->version : v;
        vars[i]->version = v;
    }
}

/* ---- the device setter ---- */

int ps_graph_set_device_setter(ps_graph_t *g, const ps_device_setter_t *setter, ps_error_t *err)
{
    size_t tasks = setter ? setter->ps_tasks : 0;
    int kind = setter ? setter->strategy : PS_PLACEMENT_HASH;
    if (tasks && kind != PS_PLACEMENT_ROUND_ROBIN && kind != PS_PLACEMENT_GREEDY_BYTES)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "ps_strategy %d is not round-robin (%d) or greedy-by-bytes (%d)", kind,
                            PS_PLACEMENT_ROUND_ROBIN, PS_PLACEMENT_GREEDY_BYTES);
    if (tasks && !g->client)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "a device setter needs a graph with a client (its shards are the ps "
                            "tasks)");
    if (tasks && tasks > ps_client_shard_count(g->client))
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "ps_tasks %zu is more than the client's %zu shards", tasks,
                            ps_client_shard_count(g->client));
    psc_placer_t p;
    if (psc_placer_init(&p, kind, tasks) != 0)
        return oom(err);
    psc_placer_deinit(&g->placer);
    g->placer = p;
    return 0;
}

/* ---- accessors ---- */

ps_partitioned_variable_t *ps_variable_partitioned(const ps_variable_t *v)
{
    return v->pv;
}

ps_partitioned_variable_t *ps_variable_partition_parent(const ps_variable_t *v)
{
    return v->parent;
}

ps_variable_t *ps_partitioned_variable_whole(const ps_partitioned_variable_t *pv)
{
    return pv->whole;
}

const char *ps_partitioned_variable_name(const ps_partitioned_variable_t *pv)
{
    return pv->name;
}

int ps_partitioned_variable_dtype(const ps_partitioned_variable_t *pv)
{
    return pv->dtype;
}

ps_shape_t ps_partitioned_variable_shape(const ps_partitioned_variable_t *pv)
{
    return pv->shape;
}

size_t ps_partitioned_variable_nbytes(const ps_partitioned_variable_t *pv)
{
    return pv->whole->nbytes;
}

void ps_partitioned_variable_partitions(const ps_partitioned_variable_t *pv, int64_t *partitions)
{
    memcpy(partitions, pv->partitions, pv->shape.rank * sizeof *partitions);
}

int ps_partitioned_variable_axis(const ps_partitioned_variable_t *pv)
{
    return pv->axis;
}

size_t ps_partitioned_variable_num_parts(const ps_partitioned_variable_t *pv)
{
    return pv->nparts;
}

ps_variable_t *ps_partitioned_variable_part(const ps_partitioned_variable_t *pv, size_t i)
{
    return i < pv->nparts ? pv->parts[i] : NULL;
}

int64_t ps_partitioned_variable_part_offset(const ps_partitioned_variable_t *pv, size_t i)
{
    return i < pv->nparts ? pv->offsets[i] : -1;
}

char *ps_partitioned_variable_slice_spec(const ps_partitioned_variable_t *pv,
                                         size_t i,
                                         char *out,
                                         size_t cap)
{
    return ps_partition_slice_spec(&pv->shape, pv->partitions, i, out, cap);
}
