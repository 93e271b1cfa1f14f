/* psd's variable store: an open-addressing hash table of variables keyed by full name (linear
 * probing, backward-shift deletion), a lazily rebuilt sorted index for list, interned creator and
 * collection strings, the four lookup modes with TensorFlow's messages, copy-on-write updates that
 * are validated in full before any is applied, and the per-client table that deduplicates retried
 * updates. Everything runs on psd's one loop thread, so each call is atomic. */
#include "store.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include <ps/dtype.h>
#include <ps/internal/alloc.h>
#include <ps/internal/names.h>

#include "constraint.h"

struct psd_istr {
    struct psd_istr *next;
    uint64_t hash;
    uint32_t refs;
    uint32_t len;
    char s[];
};

struct psd_store {
    psd_store_limits_t lim;
    /* Variables. */
    psd_var_t **slots;
    size_t cap; /* power of two, or 0 */
    size_t count;
    uint64_t data_bytes;
    /* Sorted index for list, rebuilt when dirty. */
    psd_var_t **sorted;
    size_t nsorted;
    int sorted_dirty;    /* rebuild from the table (after deletions) */
    psd_var_t **pending; /* created since the index was built: sorted and merged in on demand */
    size_t npending, cap_pending;
    /* Interned strings. */
    psd_istr_t **istr_buckets;
    size_t istr_nbuckets;
    /* Update deduplication: client_id -> last seq, LRU bounded. */
    psd_dedup_t *dedup;
};

static uint64_t hash_bytes(const void *p, size_t n)
{
    const unsigned char *b = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 1099511628211ull;
    }
    /* Final avalanche (splitmix64) so low bits spread well for the power-of-two tables. */
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    h ^= h >> 31;
    return h;
}

int psd_dtype_check(int dtype, const char *what, ps_error_t *err)
{
    static const struct {
        int v;
        const char *name;
    } tf_names[] = {{4, "uint8"},       {5, "int16"},    {6, "int8"},      {7, "string"},
                    {8, "complex64"},   {10, "bool"},    {14, "bfloat16"}, {17, "uint16"},
                    {18, "complex128"}, {19, "float16"}, {22, "uint32"},   {23, "uint64"}};

    if (ps_dtype_valid(dtype))
        return 0;
    for (size_t i = 0; i < sizeof tf_names / sizeof tf_names[0]; i++) {
        if (tf_names[i].v == dtype)
            return ps_error_set(
                err, PS_ERR_INVALID_ARGUMENT,
                "dtype %s of %s is not supported: psd stores float32, float64, int32 "
                "and int64",
                tf_names[i].name, what);
    }
    return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "unknown dtype %d for %s", dtype, what);
}

/* ---- interned strings ---- */

static psd_istr_t *istr_get(psd_store_t *s, const char *p, size_t len)
{
    if (len > UINT32_MAX)
        return NULL;
    uint64_t h = hash_bytes(p, len);
    size_t b = (size_t) h & (s->istr_nbuckets - 1);
    for (psd_istr_t *e = s->istr_buckets[b]; e; e = e->next) {
        if (e->hash == h && e->len == len && memcmp(e->s, p, len) == 0) {
            e->refs++;
            return e;
        }
    }
    psd_istr_t *e = ps_malloc(sizeof *e + len + 1);
    if (!e)
        return NULL;
    e->hash = h;
    e->refs = 1;
    e->len = (uint32_t) len;
    memcpy(e->s, p, len);
    e->s[len] = '\0';
    e->next = s->istr_buckets[b];
    s->istr_buckets[b] = e;
    return e;
}

static void istr_put(psd_store_t *s, psd_istr_t *e)
{
    if (!e || --e->refs > 0)
        return;
    size_t b = (size_t) e->hash & (s->istr_nbuckets - 1);
    for (psd_istr_t **pp = &s->istr_buckets[b]; *pp; pp = &(*pp)->next) {
        if (*pp == e) {
            *pp = e->next;
            break;
        }
    }
    ps_free(e);
}

/* save_slice_info as interned bytes: rank (8 bytes), full dims, offsets, then the full name. */
static psd_istr_t *slice_intern(psd_store_t *s, const ps_slice_info_t *si)
{
    size_t nl = strlen(si->full_name);
    size_t len = 8 + 16 * (size_t) si->rank + nl;
    char buf[8 + 16 * PS_MAX_RANK + PS_NAME_MAX + 1];
    if (si->rank > PS_MAX_RANK || nl > PS_NAME_MAX)
        return NULL;
    uint64_t r = si->rank;
    memcpy(buf, &r, 8);
    memcpy(buf + 8, si->full_dims, 8 * (size_t) si->rank);
    memcpy(buf + 8 + 8 * (size_t) si->rank, si->offset, 8 * (size_t) si->rank);
    memcpy(buf + 8 + 16 * (size_t) si->rank, si->full_name, nl);
    return istr_get(s, buf, len);
}

int psd_var_slice(const psd_var_t *v, ps_slice_info_t *out)
{
    memset(out, 0, sizeof *out);
    if (!v->slice)
        return 0;
    uint64_t r;
    memcpy(&r, v->slice->s, 8);
    out->rank = (unsigned) r;
    memcpy(out->full_dims, v->slice->s + 8, 8 * (size_t) r);
    memcpy(out->offset, v->slice->s + 8 + 8 * r, 8 * (size_t) r);
    out->full_name = v->slice->s + 8 + 16 * r; /* NUL-terminated by istr_get */
    return 1;
}

void psd_var_init_spec(const psd_var_t *v, ps_init_spec_t *out)
{
    memcpy(out, v->init->s, sizeof *out);
}

const ps_constraint_spec_t *psd_var_constraint(const psd_var_t *v)
{
    return v->constraint ? (const ps_constraint_spec_t *) (const void *) v->constraint->s : NULL;
}

const char *psd_var_creator(const psd_var_t *v)
{
    return v->creator ? v->creator->s : "";
}

const char *psd_var_collection(const psd_var_t *v, size_t i)
{
    const char *p = v->collections->s;
    while (i-- > 0)
        p += strlen(p) + 1;
    return p;
}

int psd_var_in_collection(const psd_var_t *v, const char *coll)
{
    for (size_t i = 0; i < v->ncollections; i++) {
        if (strcmp(psd_var_collection(v, i), coll) == 0)
            return 1;
    }
    return 0;
}

size_t psd_var_meta_bytes(const psd_var_t *v)
{
    /* The struct with dims and name, the blob header, two allocation headers (16 bytes each in
     * ps_alloc) and one table slot at a load factor of at least 3/8 (cap <= 8/3 count). Interned
     * strings (creator, collections, initializer) are shared and not counted; a part's
     * save_slice_info is its own. */
    return sizeof(psd_var_t) + v->rank * sizeof(int64_t) + v->name_len + 1u + sizeof(psd_blob_t) +
           2 * 16 + (8 * 8) / 3 + (v->slice ? sizeof(psd_istr_t) + v->slice->len + 1u + 16 : 0);
}

/* ---- the table ---- */

psd_store_t *psd_store_new(const psd_store_limits_t *limits)
{
    psd_store_t *s = ps_calloc(1, sizeof *s);
    if (!s)
        return NULL;
    if (limits)
        s->lim = *limits;
    s->istr_nbuckets = 256;
    s->istr_buckets = ps_calloc(s->istr_nbuckets, sizeof *s->istr_buckets);
    s->dedup = psd_dedup_new(s->lim.dedup_max_clients);
    if (!s->istr_buckets || !s->dedup) {
        psd_store_free(s);
        return NULL;
    }
    s->sorted_dirty = 1;
    return s;
}

static void var_free(psd_store_t *s, psd_var_t *v)
{
    psd_blob_unref(v->data);
    istr_put(s, v->creator);
    istr_put(s, v->collections);
    istr_put(s, v->init);
    istr_put(s, v->constraint);
    istr_put(s, v->slice);
    ps_free(v);
}

void psd_store_free(psd_store_t *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->cap; i++) {
        if (s->slots[i])
            var_free(s, s->slots[i]);
    }
    ps_free(s->slots);
    ps_free(s->sorted);
    ps_free(s->pending);
    psd_dedup_free(s->dedup);
    if (s->istr_buckets) {
        for (size_t b = 0; b < s->istr_nbuckets; b++) {
            for (psd_istr_t *e = s->istr_buckets[b], *n; e; e = n) {
                n = e->next;
                ps_free(e);
            }
        }
    }
    ps_free(s->istr_buckets);
    ps_free(s);
}

void psd_store_set_max_memory(psd_store_t *s, uint64_t max_memory)
{
    s->lim.max_memory = max_memory;
}

size_t psd_store_count(const psd_store_t *s)
{
    return s->count;
}

uint64_t psd_store_data_bytes(const psd_store_t *s)
{
    return s->data_bytes;
}

static size_t table_find_slot(const psd_store_t *s, const char *name, uint64_t h)
{
    size_t mask = s->cap - 1;
    size_t i = (size_t) h & mask;
    while (s->slots[i]) {
        if (s->slots[i]->hash == h && strcmp(psd_var_name(s->slots[i]), name) == 0)
            return i;
        i = (i + 1) & mask;
    }
    return i; /* an empty slot */
}

psd_var_t *psd_store_find(const psd_store_t *s, const char *name)
{
    if (!s->cap)
        return NULL;
    return s->slots[table_find_slot(s, name, hash_bytes(name, strlen(name)))];
}

static int table_grow(psd_store_t *s)
{
    size_t ncap = s->cap ? s->cap * 2 : 64;
    psd_var_t **ns = ps_calloc(ncap, sizeof *ns);
    if (!ns)
        return -1;
    for (size_t i = 0; i < s->cap; i++) {
        psd_var_t *v = s->slots[i];
        if (!v)
            continue;
        size_t j = (size_t) v->hash & (ncap - 1);
        while (ns[j])
            j = (j + 1) & (ncap - 1);
        ns[j] = v;
    }
    ps_free(s->slots);
    s->slots = ns;
    s->cap = ncap;
    return 0;
}

/* Insert v, whose name is known to be absent. Returns 0 or -1 when out of memory. */
static int table_insert(psd_store_t *s, psd_var_t *v)
{
    if ((s->count + 1) * 4 > s->cap * 3 && table_grow(s) != 0)
        return -1;
    size_t i = table_find_slot(s, psd_var_name(v), v->hash);
    s->slots[i] = v;
    s->count++;
    s->data_bytes += v->data->len;
    if (!s->sorted_dirty) {
        /* Creations only append here, so a list after them merges instead of sorting everything. */
        if (s->npending == s->cap_pending) {
            size_t ncap = s->cap_pending ? s->cap_pending * 2 : 64;
            psd_var_t **np = ps_realloc(s->pending, ncap * sizeof *np);
            if (np) {
                s->pending = np;
                s->cap_pending = ncap;
            }
        }
        if (s->npending < s->cap_pending)
            s->pending[s->npending++] = v;
        else
            s->sorted_dirty = 1;
    }
    return 0;
}

static void table_remove_at(psd_store_t *s, size_t i)
{
    size_t mask = s->cap - 1;
    psd_var_t *v = s->slots[i];
    s->count--;
    s->data_bytes -= v->data->len;
    s->sorted_dirty = 1;
    /* Backward-shift deletion keeps probe chains intact without tombstones. */
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (!s->slots[j])
            break;
        size_t k = (size_t) s->slots[j]->hash & mask;
        int movable = (j > i) ? (k <= i || k > j) : (k <= i && k > j);
        if (movable) {
            s->slots[i] = s->slots[j];
            i = j;
        }
    }
    s->slots[i] = NULL;
    var_free(s, v);
}

/* ---- lookup ---- */

static int memory_ok(const psd_store_t *s, uint64_t more)
{
    if (!s->lim.max_memory)
        return 1;
    uint64_t used = ps_alloc_used();
    return used <= s->lim.max_memory && more <= s->lim.max_memory - used;
}

/* Intern the collection set ("a\0b\0", first occurrence order, duplicates dropped). */
static int intern_collections(psd_store_t *s,
                              const char *const *colls,
                              size_t n,
                              psd_istr_t **out,
                              uint16_t *count,
                              ps_error_t *err)
{
    *out = NULL;
    *count = 0;
    if (n == 0)
        return 0;
    if (n > UINT16_MAX)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "too many collections (%zu)", n);
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += strlen(colls[i]) + 1;
    char *buf = ps_malloc(total ? total : 1);
    if (!buf)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    size_t len = 0;
    uint16_t c = 0;
    for (size_t i = 0; i < n; i++) {
        int dup = 0;
        for (size_t j = 0; j < i && !dup; j++)
            dup = strcmp(colls[i], colls[j]) == 0;
        if (dup)
            continue;
        size_t l = strlen(colls[i]) + 1;
        memcpy(buf + len, colls[i], l);
        len += l;
        c++;
    }
    *out = istr_get(s, buf, len);
    ps_free(buf);
    if (!*out)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    *count = c;
    return 0;
}

/* The creation-only extras: TensorFlow's validate_synchronization_aggregation_trainable messages
 * and the constraint's check (canonical copy in *cons; kind NONE when there is none). */
static int check_extra(const ps_constraint_spec_t *c,
                       int synchronization,
                       int aggregation,
                       const char *name,
                       int dtype,
                       unsigned rank,
                       ps_constraint_spec_t *cons,
                       ps_error_t *err)
{
    if (aggregation < 0 || aggregation > PS_AGGREGATION_MAX)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "Invalid variable aggregation mode: %d for variable: %s", aggregation,
                            name);
    if (synchronization < 0 || synchronization > PS_SYNCHRONIZATION_MAX)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "Invalid variable synchronization mode: %d for variable: %s",
                            synchronization, name);
    if (!c) {
        memset(cons, 0, sizeof *cons);
        return 0;
    }
    return psd_constraint_check(c, name, dtype, rank, cons, err);
}

static int check_existing(const psd_getvar_args_t *a,
                          const psd_var_t *v,
                          const ps_shape_spec_t *spec,
                          int dtype,
                          ps_error_t *err)
{
    char s1[128], s2[128];
    if (a->mode == PSD_LOOKUP_CREATE_EXCLUSIVE)
        return ps_error_set(
            err, PS_ERR_ALREADY_EXISTS,
            "Variable %s already exists, disallowed. Did you mean to set reuse=True "
            "or reuse=tf.AUTO_REUSE in VarScope?",
            a->name);
    if (a->mode == PSD_LOOKUP_MUST_EXIST && v->kind == PSD_KIND_VARIABLE)
        return ps_error_set(
            err, PS_ERR_NOT_FOUND,
            "Variable %s does not exist, or was not created with tf.get_variable(). "
            "Did you mean to set reuse=tf.AUTO_REUSE in VarScope?",
            a->name);
    if (!ps_shape_compatible(spec, v->dims, v->rank))
        return ps_error_set(
            err, PS_ERR_INVALID_ARGUMENT,
            "Trying to share variable %s, but specified shape %s and found shape %s.", a->name,
            ps_shape_spec_format(spec, s1, sizeof s1),
            ps_shape_format(v->dims, v->rank, s2, sizeof s2));
    if (dtype != v->dtype)
        return ps_error_set(
            err, PS_ERR_INVALID_ARGUMENT,
            "Trying to share variable %s, but specified dtype %s and found dtype %s.", a->name,
            ps_dtype_name(dtype), ps_dtype_ref_name(v->dtype));
    return 0;
}

int psd_store_get_variable(
    psd_store_t *s, const psd_getvar_args_t *a, psd_var_t **out, int *created, ps_error_t *err)
{
    *out = NULL;
    *created = 0;
    int rc = ps_name_check_full(a->name, strlen(a->name), err);
    if (rc)
        return rc;
    if (a->mode < PSD_LOOKUP_CREATE_OR_ATTACH || a->mode > PSD_LOOKUP_CREATE_EXCLUSIVE)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "unknown lookup mode %d for %s", a->mode,
                            a->name);
    if (a->kind != PSD_KIND_GET_VARIABLE && a->kind != PSD_KIND_VARIABLE)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "unknown variable kind %d for %s",
                            a->kind, a->name);

    /* The effective dtype and shape spec: from the request, or from the value for INIT_FROM_VALUE.
     */
    int from_value = a->init.kind == PS_INIT_FROM_VALUE;
    int dtype = a->dtype;
    ps_shape_spec_t spec = a->shape;
    if (from_value) {
        if (!a->value)
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "initializer from value for %s needs the value as payload tensor 0",
                                a->name);
        if ((rc = psd_dtype_check(a->value_dtype, a->name, err)) != 0)
            return rc;
        if (dtype == PS_DTYPE_INVALID) {
            dtype = a->value_dtype;
        } else if (dtype != a->value_dtype) {
            return ps_error_set(
                err, PS_ERR_INVALID_ARGUMENT,
                "Initializer type '<dtype: '%s'>' and explicit dtype '<dtype: '%s'>' "
                "don't match.",
                ps_dtype_name(a->value_dtype), ps_dtype_name(dtype));
        }
        if (a->value_rank > PS_MAX_RANK)
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "rank %zu of %s exceeds maximum %d",
                                a->value_rank, a->name, PS_MAX_RANK);
        if (!spec.unknown_rank && !ps_shape_compatible(&spec, a->value_dims, a->value_rank))
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "If initializer is a constant, do not specify shape.");
        spec.unknown_rank = 0;
        spec.rank = (unsigned) a->value_rank;
        for (size_t i = 0; i < a->value_rank; i++)
            spec.dims[i] = a->value_dims[i];
    }
    if ((rc = psd_dtype_check(dtype, a->name, err)) != 0)
        return rc;
    if ((rc = ps_shape_spec_check(&spec, a->name, err)) != 0)
        return rc;

    psd_var_t *v = psd_store_find(s, a->name);
    if (v) {
        if ((rc = check_existing(a, v, &spec, dtype, err)) != 0)
            return rc;
        *out = v;
        return 0;
    }
    if (a->mode == PSD_LOOKUP_MUST_EXIST)
        return ps_error_set(
            err, PS_ERR_NOT_FOUND,
            "Variable %s does not exist, or was not created with tf.get_variable(). "
            "Did you mean to set reuse=tf.AUTO_REUSE in VarScope?",
            a->name);

    /* Create. */
    if (!ps_shape_spec_fully_defined(&spec))
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "The initializer passed is not valid. It should be a callable with no "
                            "arguments and the shape should not be provided or an instance of "
                            "`tf.keras.initializers.*' and `shape` should be fully defined.");
    uint64_t nelems = 0, nbytes = 0;
    uint64_t maxb = s->lim.max_var_bytes ? s->lim.max_var_bytes : UINT64_MAX;
    if ((rc = ps_shape_check(spec.dims, spec.rank, ps_dtype_size(dtype), maxb, a->name, &nelems,
                             &nbytes, err)) != 0)
        return rc;
    if (!from_value && (rc = ps_init_check(&a->init, dtype, err)) != 0)
        return rc;
    ps_constraint_spec_t cons;
    if ((rc = check_extra(a->constraint, a->synchronization, a->aggregation, a->name, dtype,
                          spec.rank, &cons, err)) != 0)
        return rc;
    if (from_value && a->value->len != nbytes)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "initial value of %s has %llu bytes, its shape needs %llu", a->name,
                            (unsigned long long) a->value->len, (unsigned long long) nbytes);
    if (a->slice && (rc = ps_slice_check(a->slice, a->name, spec.dims, spec.rank, err)) != 0)
        return rc;
    size_t name_len = strlen(a->name);
    size_t vsize = sizeof(psd_var_t) + spec.rank * sizeof(int64_t) + name_len + 1;
    if (!from_value && !memory_ok(s, nbytes + vsize))
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED,
                            "creating %s (%llu bytes) would exceed the memory limit of %llu bytes",
                            a->name, (unsigned long long) nbytes,
                            (unsigned long long) s->lim.max_memory);

    v = ps_calloc(1, vsize);
    if (!v)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory creating %s", a->name);
    v->rank = (uint8_t) spec.rank;
    memcpy(v->dims, spec.dims, spec.rank * sizeof(int64_t));
    memcpy((char *) psd_var_name(v), a->name, name_len + 1);
    v->name_len = (uint16_t) name_len;
    v->hash = hash_bytes(a->name, name_len);
    v->dtype = (uint8_t) dtype;
    v->kind = (uint8_t) a->kind;
    v->trainable = a->trainable ? 1 : 0;
    v->version = 1;
    v->created_ms = a->now_ms;
    /* Canonical bytes (padding zeroed) so equal specs intern to one entry. */
    ps_init_spec_t is;
    memset(&is, 0, sizeof is);
    is.kind = a->init.kind;
    is.value = a->init.value;
    is.mean = a->init.mean;
    is.stddev = a->init.stddev;
    is.minval = a->init.minval;
    is.maxval = a->init.maxval;
    is.scale = a->init.scale;
    is.mode = a->init.mode;
    is.distribution = a->init.distribution;
    is.seed = a->init.seed;
    v->init = istr_get(s, (const char *) &is, sizeof is);
    if (!v->init) {
        var_free(s, v);
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory creating %s", a->name);
    }
    v->synchronization = (uint8_t) a->synchronization;
    v->aggregation = (uint8_t) a->aggregation;
    if (cons.kind != PS_CKIND_NONE &&
        !(v->constraint = istr_get(s, (const char *) &cons, sizeof cons))) {
        var_free(s, v);
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory creating %s", a->name);
    }
    if (a->slice && !(v->slice = slice_intern(s, a->slice))) {
        var_free(s, v);
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory creating %s", a->name);
    }
    if (a->creator && a->creator[0]) {
        v->creator = istr_get(s, a->creator, strlen(a->creator));
        if (!v->creator) {
            var_free(s, v);
            return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory creating %s",
                                a->name);
        }
    }
    if ((rc = intern_collections(s, a->collections, a->ncollections, &v->collections,
                                 &v->ncollections, err)) != 0) {
        var_free(s, v);
        return rc;
    }
    if (from_value) {
        v->data = psd_blob_ref(a->value);
    } else {
        v->data = psd_blob_new(nbytes);
        if (!v->data) {
            var_free(s, v);
            return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory creating %s",
                                a->name);
        }
        if ((rc = ps_init_fill(&a->init, a->name, v->dims, v->rank, dtype, v->data->data, nelems,
                               err)) != 0) {
            var_free(s, v);
            return rc;
        }
    }
    if (table_insert(s, v) != 0) {
        var_free(s, v);
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory creating %s", a->name);
    }
    *out = v;
    *created = 1;
    return 0;
}

int psd_store_pull(
    psd_store_t *s, const char *const *names, size_t n, psd_var_t **out, ps_error_t *err)
{
    for (size_t i = 0; i < n; i++) {
        out[i] = psd_store_find(s, names[i]);
        if (!out[i])
            return ps_error_set(err, PS_ERR_NOT_FOUND, "Variable %s does not exist", names[i]);
    }
    for (size_t i = 0; i < n; i++)
        out[i]->reads++;
    return 0;
}

/* ---- updates ---- */

static int shapes_equal(const int64_t *a, size_t ra, const int64_t *b, size_t rb)
{
    if (ra != rb)
        return 0;
    for (size_t i = 0; i < ra; i++) {
        if (a[i] != b[i])
            return 0;
    }
    return 1;
}

static int cmp_ptr_idx(const void *a, const void *b)
{
    const psd_var_t *const *x = a, *const *y = b;
    return (*x > *y) - (*x < *y);
}

static int
validate_item(const psd_store_t *s, const psd_update_item_t *it, psd_var_t **vout, ps_error_t *err)
{
    char s1[128], s2[128];
    psd_var_t *v = psd_store_find(s, it->name);
    if (!v)
        return ps_error_set(err, PS_ERR_NOT_FOUND, "Variable %s does not exist", it->name);
    if (it->op < PSD_UPDATE_ASSIGN || it->op > PSD_UPDATE_SCALED_ADD)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "unknown update op %d for %s", it->op,
                            it->name);
    if (it->dtype != v->dtype)
        return ps_error_set(
            err, PS_ERR_INVALID_ARGUMENT,
            "Cannot update variable %s: value dtype %s does not match variable dtype "
            "%s (value shape %s, variable shape %s)",
            it->name, ps_dtype_name(it->dtype), ps_dtype_name(v->dtype),
            ps_shape_format(it->dims, it->rank, s1, sizeof s1),
            ps_shape_format(v->dims, v->rank, s2, sizeof s2));
    if (!shapes_equal(it->dims, it->rank, v->dims, v->rank))
        return ps_error_set(
            err, PS_ERR_INVALID_ARGUMENT,
            "Cannot update variable %s: value shape %s does not match variable shape "
            "%s",
            it->name, ps_shape_format(it->dims, it->rank, s1, sizeof s1),
            ps_shape_format(v->dims, v->rank, s2, sizeof s2));
    if (!it->x || it->x->len != v->data->len)
        return ps_error_set(
            err, PS_ERR_INVALID_ARGUMENT,
            "Cannot update variable %s: value has %llu bytes, variable shape %s needs "
            "%llu",
            it->name, (unsigned long long) (it->x ? it->x->len : 0),
            ps_shape_format(v->dims, v->rank, s2, sizeof s2), (unsigned long long) v->data->len);
    if (it->op == PSD_UPDATE_SCALED_ADD && !ps_dtype_is_float(v->dtype)) {
        double lim = v->dtype == PS_DTYPE_INT32 ? 2147483648.0 : 9223372036854775808.0;
        if (!isfinite(it->alpha) || it->alpha != floor(it->alpha) || it->alpha >= lim ||
            it->alpha < -lim)
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "Cannot update variable %s: scaled_add alpha %g is not a %s value",
                                it->name, it->alpha, ps_dtype_name(v->dtype));
    }
    if (it->op == PSD_UPDATE_SCALED_ADD && v->dtype == PS_DTYPE_FLOAT32 && isfinite(it->alpha) &&
        fabs(it->alpha) > 3.4028234663852886e38)
        return ps_error_set(
            err, PS_ERR_INVALID_ARGUMENT,
            "Cannot update variable %s: scaled_add alpha %g is out of float32 range", it->name,
            it->alpha);
    *vout = v;
    return 0;
}

static void axpy_f32(uint64_t n, float alpha, const float *x, float *y)
{
    while (n > 0) {
        int chunk = n > (uint64_t) INT_MAX ? INT_MAX : (int) n;
        cblas_saxpy(chunk, alpha, x, 1, y, 1);
        x += chunk;
        y += chunk;
        n -= (uint64_t) chunk;
    }
}

static void axpy_f64(uint64_t n, double alpha, const double *x, double *y)
{
    while (n > 0) {
        int chunk = n > (uint64_t) INT_MAX ? INT_MAX : (int) n;
        cblas_daxpy(chunk, alpha, x, 1, y, 1);
        x += chunk;
        y += chunk;
        n -= (uint64_t) chunk;
    }
}

/* Integer arithmetic wraps (two's complement, as TensorFlow's kernels do) through unsigned types.
 */
static void axpy_i32(uint64_t n, int64_t alpha, const int32_t *x, int32_t *y)
{
    uint32_t a = (uint32_t) alpha;
    for (uint64_t i = 0; i < n; i++)
        y[i] = (int32_t) ((uint32_t) y[i] + a * (uint32_t) x[i]);
}

static void axpy_i64(uint64_t n, int64_t alpha, const int64_t *x, int64_t *y)
{
    uint64_t a = (uint64_t) alpha;
    for (uint64_t i = 0; i < n; i++)
        y[i] = (int64_t) ((uint64_t) y[i] + a * (uint64_t) x[i]);
}

static void apply_item(const psd_update_item_t *it, psd_var_t *v)
{
    double alpha = it->op == PSD_UPDATE_ASSIGN_ADD   ? 1.0
                   : it->op == PSD_UPDATE_ASSIGN_SUB ? -1.0
                                                     : it->alpha;
    uint64_t n = v->data->len / ps_dtype_size(v->dtype);
    switch (v->dtype) {
    case PS_DTYPE_FLOAT32:
        axpy_f32(n, (float) alpha, (const float *) it->x->data, (float *) v->data->data);
        break;
    case PS_DTYPE_FLOAT64:
        axpy_f64(n, alpha, (const double *) it->x->data, (double *) v->data->data);
        break;
    case PS_DTYPE_INT32:
        axpy_i32(n, (int64_t) alpha, (const int32_t *) it->x->data, (int32_t *) v->data->data);
        break;
    default:
        axpy_i64(n, (int64_t) alpha, (const int64_t *) it->x->data, (int64_t *) v->data->data);
        break;
    }
}

int psd_store_update(psd_store_t *s,
                     const psd_update_item_t *items,
                     size_t n,
                     uint64_t client_id,
                     uint64_t seq,
                     uint64_t *versions,
                     int *duplicate,
                     ps_error_t *err)
{
    *duplicate = 0;
    if (seq > 0) {
        const psd_dedup_entry_t *repeat;
        int rc = psd_dedup_check(s->dedup, "update", "items", client_id, seq, n, &repeat, err);
        if (rc)
            return rc;
        if (repeat) {
            if (n)
                memcpy(versions, repeat->versions, n * sizeof *versions);
            *duplicate = 1;
            return 0;
        }
    }
    if (n == 0) {
        /* An empty update still records its seq, so a retry of it is recognised. */
        if (seq > 0)
            psd_dedup_record(s->dedup, client_id, seq, 0, NULL, 0);
        return 0;
    }

    /* Phase 1: validate every item and make every allocation; nothing is changed yet. */
    psd_var_t **vars = ps_calloc(n, sizeof *vars);
    psd_blob_t **fresh = ps_calloc(n, sizeof *fresh);
    psd_var_t **byptr = ps_calloc(n, sizeof *byptr);
    int rc = 0;
    if (!vars || !fresh || !byptr) {
        rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED,
                          "out of memory for an update of %zu items", n);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if ((rc = validate_item(s, &items[i], &vars[i], err)) != 0)
            goto out;
    }
    memcpy(byptr, vars, n * sizeof *byptr);
    qsort(byptr, n, sizeof *byptr, cmp_ptr_idx);
    for (size_t i = 1; i < n; i++) {
        if (byptr[i] == byptr[i - 1]) {
            rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                              "variable %s appears twice in one update", psd_var_name(byptr[i]));
            goto out;
        }
    }
    for (size_t i = 0; i < n; i++) {
        /* Copy-on-write: a blob a reply still references is never written in place. */
        if (items[i].op != PSD_UPDATE_ASSIGN && vars[i]->data->refs > 1) {
            if (!memory_ok(s, vars[i]->data->len) || !(fresh[i] = psd_blob_dup(vars[i]->data))) {
                rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED,
                                  "no memory to copy %s (%llu bytes) for an update",
                                  psd_var_name(vars[i]), (unsigned long long) vars[i]->data->len);
                goto out;
            }
        }
    }
    if (seq > 0 && psd_dedup_reserve(s->dedup, client_id, n) != 0) {
        rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory for an update");
        goto out;
    }

    /* Phase 2: apply; nothing below can fail. */
    for (size_t i = 0; i < n; i++) {
        psd_var_t *v = vars[i];
        if (items[i].op == PSD_UPDATE_ASSIGN) {
            /* The value blob is exactly the new data: install it instead of copying. */
            if (items[i].x->refs == 1 || v->data->refs > 1) {
                psd_blob_unref(v->data);
                v->data = psd_blob_ref(items[i].x);
            } else if (v->data->len) {
                memcpy(v->data->data, items[i].x->data, (size_t) v->data->len);
            }
        } else {
            if (fresh[i]) {
                psd_blob_unref(v->data);
                v->data = fresh[i];
                fresh[i] = NULL;
            }
            apply_item(&items[i], v);
        }
        v->version++;
        v->writes++;
        versions[i] = v->version;
    }
    if (seq > 0)
        psd_dedup_record(s->dedup, client_id, seq, 0, versions, n); /* reserved: cannot fail */
out:
    if (fresh) {
        for (size_t i = 0; i < n; i++)
            psd_blob_unref(fresh[i]);
    }
    ps_free(fresh);
    ps_free(byptr);
    ps_free(vars);
    return rc;
}

/* ---- delete and list ---- */

int psd_store_delete(psd_store_t *s,
                     const char *const *names,
                     size_t n,
                     const char *prefix,
                     uint64_t *deleted,
                     ps_error_t *err)
{
    *deleted = 0;
    size_t plen = prefix ? strlen(prefix) : 0;
    if (n == 0 && plen == 0)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "delete needs variable names or a non-empty prefix");
    for (size_t i = 0; i < n; i++) {
        if (!psd_store_find(s, names[i]))
            return ps_error_set(err, PS_ERR_NOT_FOUND, "Variable %s does not exist", names[i]);
    }
    for (size_t i = 0; i < n; i++) {
        /* A name given twice is deleted once. */
        if (!s->cap)
            break;
        size_t slot = table_find_slot(s, names[i], hash_bytes(names[i], strlen(names[i])));
        if (s->slots[slot]) {
            table_remove_at(s, slot);
            (*deleted)++;
        }
    }
    if (plen) {
        /* Removal shifts later entries back into slot i, so only advance when i stays put. */
        for (size_t i = 0; i < s->cap;) {
            psd_var_t *v = s->slots[i];
            if (v && strncmp(psd_var_name(v), prefix, plen) == 0) {
                table_remove_at(s, i);
                (*deleted)++;
            } else {
                i++;
            }
        }
    }
    return 0;
}

static int cmp_var_name(const void *a, const void *b)
{
    const psd_var_t *const *x = a, *const *y = b;
    return strcmp(psd_var_name(*x), psd_var_name(*y));
}

static int sorted_rebuild(psd_store_t *s)
{
    psd_var_t **arr = NULL;
    if (s->count) {
        arr = ps_malloc(s->count * sizeof *arr);
        if (!arr)
            return -1;
    }
    size_t k = 0;
    for (size_t i = 0; i < s->cap; i++) {
        if (s->slots[i])
            arr[k++] = s->slots[i];
    }
    if (k > 1)
        qsort(arr, k, sizeof *arr, cmp_var_name);
    ps_free(s->sorted);
    s->sorted = arr;
    s->nsorted = k;
    s->npending = 0;
    s->sorted_dirty = 0;
    return 0;
}

/* Bring the sorted index up to date: a full sort after deletions, else sort only the variables
 * created since and merge them in (O(n + k log k) instead of O(n log n) at a million variables). */
static int sorted_refresh(psd_store_t *s)
{
    if (s->sorted_dirty)
        return sorted_rebuild(s);
    if (s->npending == 0)
        return 0;
    size_t total = s->nsorted + s->npending;
    psd_var_t **arr = ps_malloc(total * sizeof *arr);
    if (!arr)
        return -1;
    if (s->npending > 1)
        qsort(s->pending, s->npending, sizeof *s->pending, cmp_var_name);
    size_t i = 0, j = 0, k = 0;
    while (i < s->nsorted && j < s->npending) {
        if (strcmp(psd_var_name(s->sorted[i]), psd_var_name(s->pending[j])) < 0)
            arr[k++] = s->sorted[i++];
        else
            arr[k++] = s->pending[j++];
    }
    while (i < s->nsorted)
        arr[k++] = s->sorted[i++];
    while (j < s->npending)
        arr[k++] = s->pending[j++];
    ps_free(s->sorted);
    s->sorted = arr;
    s->nsorted = total;
    s->npending = 0;
    return 0;
}

/* First index in the sorted index whose name is > key (strict) or >= key. */
static size_t sorted_lower(const psd_store_t *s, const char *key, int strict)
{
    size_t lo = 0, hi = s->nsorted;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(psd_var_name(s->sorted[mid]), key);
        if (c < 0 || (strict && c == 0))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int psd_store_list(psd_store_t *s,
                   const char *prefix,
                   const char *collection,
                   const char *start_after,
                   size_t limit,
                   psd_var_t ***out,
                   size_t *n,
                   int *truncated,
                   ps_error_t *err)
{
    *out = NULL;
    *n = 0;
    *truncated = 0;
    if (!prefix)
        prefix = "";
    if (collection && !collection[0])
        collection = NULL;
    if (sorted_refresh(s) != 0)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory listing variables");
    size_t plen = strlen(prefix);
    size_t i = sorted_lower(s, prefix, 0);
    if (start_after && start_after[0]) {
        size_t j = sorted_lower(s, start_after, 1);
        if (j > i)
            i = j;
    }
    size_t room = limit < s->nsorted ? limit : s->nsorted;
    psd_var_t **arr = ps_malloc((room ? room : 1) * sizeof *arr);
    if (!arr)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory listing variables");
    size_t k = 0;
    for (; i < s->nsorted; i++) {
        psd_var_t *v = s->sorted[i];
        if (strncmp(psd_var_name(v), prefix, plen) != 0)
            break;
        if (collection && !psd_var_in_collection(v, collection))
            continue;
        if (k == limit) {
            *truncated = 1;
            break;
        }
        arr[k++] = v;
    }
    *out = arr;
    *n = k;
    return 0;
}

/* ---- persistence ---- */

void psd_store_reset_access_counts(psd_store_t *s)
{
    for (size_t i = 0; i < s->cap; i++) {
        if (s->slots[i])
            s->slots[i]->reads = s->slots[i]->writes = 0;
    }
}

static uint64_t accesses(const psd_var_t *v)
{
    return (uint64_t) v->reads + v->writes;
}

/* 1 when a ranks below b (fewer accesses; on a tie, the later name). */
static int busy_less(const psd_var_t *a, const psd_var_t *b)
{
    uint64_t x = accesses(a), y = accesses(b);
    if (x != y)
        return x < y;
    return strcmp(psd_var_name(a), psd_var_name(b)) > 0;
}

static void heap_down(psd_var_t **h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && busy_less(h[l], h[m]))
            m = l;
        if (r < n && busy_less(h[r], h[m]))
            m = r;
        if (m == i)
            return;
        psd_var_t *t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

size_t psd_store_busiest(const psd_store_t *s, psd_var_t **out, size_t n)
{
    size_t k = 0;
    if (!n)
        return 0;
    /* out is a min-heap of the k busiest seen so far: its root is the least busy of them. */
    for (size_t i = 0; i < s->cap; i++) {
        psd_var_t *v = s->slots[i];
        if (!v)
            continue;
        if (k < n) {
            out[k++] = v;
            for (size_t j = k - 1; j > 0;) { /* sift up */
                size_t p = (j - 1) / 2;
                if (!busy_less(out[j], out[p]))
                    break;
                psd_var_t *t = out[j];
                out[j] = out[p];
                out[p] = t;
                j = p;
            }
        } else if (busy_less(out[0], v)) {
            out[0] = v;
            heap_down(out, k, 0);
        }
    }
    /* Heap sort: repeatedly move the least busy to the end, so out ends busiest first. */
    for (size_t m = k; m > 1; m--) {
        psd_var_t *t = out[0];
        out[0] = out[m - 1];
        out[m - 1] = t;
        heap_down(out, m - 1, 0);
    }
    return k;
}

psd_dedup_t *psd_store_dedup(psd_store_t *s)
{
    return s->dedup;
}

int psd_store_var_set_init(psd_store_t *s, psd_var_t *v, const ps_init_spec_t *spec)
{
    ps_init_spec_t is;
    memset(&is, 0, sizeof is); /* canonical bytes, as at creation */
    is.kind = spec->kind;
    is.value = spec->value;
    is.mean = spec->mean;
    is.stddev = spec->stddev;
    is.minval = spec->minval;
    is.maxval = spec->maxval;
    is.scale = spec->scale;
    is.mode = spec->mode;
    is.distribution = spec->distribution;
    is.seed = spec->seed;
    psd_istr_t *n = istr_get(s, (const char *) &is, sizeof is);
    if (!n)
        return PS_ERR_RESOURCE_EXHAUSTED;
    istr_put(s, v->init);
    v->init = n;
    return 0;
}
