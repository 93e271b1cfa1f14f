/* Partitioned variables as TensorFlow 1.15 makes them: the partitioners (fixed_size,
 * variable_axis_size, min_max_variable, or a user callback) with TensorFlow's checks and messages,
 * the PartitionedVariable handle (its parts, full shape, pull and update of the whole), and
 * replica_device_setter-style placement of variables on psd shards (ps tasks). */
#ifndef PS_PARTITION_H
#define PS_PARTITION_H

#include <stddef.h>
#include <stdint.h>

#include <ps/export.h>
#include <ps/graph.h>
#include <ps/status.h>
#include <ps/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Most entries a partitioner callback may write (more than the rank is reported as TF does). */
#define PS_PARTITIONS_MAX 16

/**
 * A user partitioner (TensorFlow's partitioner callable): shape (fully defined, rank >= 1) and
 * dtype in; writes a partition count per axis into partitions[0..*n) (*n <= PS_PARTITIONS_MAX) and
 * returns 0, or returns a nonzero code with err filled (propagated to get_variable's caller).
 */
typedef int (*ps_partitioner_cb)(const ps_shape_t *shape,
                                 int dtype,
                                 void *data,
                                 int64_t *partitions,
                                 size_t *n,
                                 ps_error_t *err);

typedef enum {
    PS_PARTITIONER_NONE = 0,
    PS_PARTITIONER_FIXED_SIZE = 1,
    PS_PARTITIONER_VARIABLE_AXIS_SIZE = 2,
    PS_PARTITIONER_MIN_MAX = 3,
    PS_PARTITIONER_CALLBACK = 4,
} ps_partitioner_kind_t;

/**
 * A partitioner: a value struct built by the constructors below (all-zero is "no partitioner").
 * Passed by pointer to get_variable and scopes, which copy it.
 */
typedef struct ps_partitioner {
    int kind; /* PS_PARTITIONER_* */
    int axis;
    int64_t num_shards;               /* FIXED_SIZE */
    int64_t max_shard_bytes;          /* VARIABLE_AXIS_SIZE */
    int64_t max_shards;               /* VARIABLE_AXIS_SIZE; 0: no limit (None) */
    int64_t max_partitions;           /* MIN_MAX */
    int64_t min_slice_size;           /* MIN_MAX */
    int64_t bytes_per_string_element; /* VARIABLE_AXIS_SIZE, MIN_MAX (psd stores no strings) */
    ps_partitioner_cb cb;             /* CALLBACK */
    void *data;                       /* CALLBACK, borrowed */
} ps_partitioner_t;

/** tf.fixed_size_partitioner(num_shards, axis=0): partitions[axis] = min(num_shards, dim). */
PS_EXTERN ps_partitioner_t ps_fixed_size_partitioner(int64_t num_shards, int axis);

/**
 * tf.variable_axis_size_partitioner(max_shard_bytes, axis=0, bytes_per_string_element=16,
 * max_shards=None); max_shards 0 means None. Returns 0, or INVALID_ARGUMENT with TF's text "Both
 * max_shard_bytes and bytes_per_string_element must be positive." / "max_shards must be positive.".
 */
PS_EXTERN int ps_variable_axis_size_partitioner(int64_t max_shard_bytes,
                                                int axis,
                                                int64_t bytes_per_string_element,
                                                int64_t max_shards,
                                                ps_partitioner_t *out,
                                                ps_error_t *err);

/** tf.min_max_variable_partitioner(max_partitions=1, axis=0, min_slice_size=256<<10,
 * bytes_per_string_element=16). */
PS_EXTERN ps_partitioner_t ps_min_max_variable_partitioner(int64_t max_partitions,
                                                           int axis,
                                                           int64_t min_slice_size,
                                                           int64_t bytes_per_string_element);

/** A user callback partitioner (data borrowed: it must outlive every use). */
PS_EXTERN ps_partitioner_t ps_partitioner_callback(ps_partitioner_cb cb, void *data);

/**
 * Call p as get_variable does (TensorFlow's _call_partitioner): writes shape->rank counts into
 * partitions. INVALID_ARGUMENT with TF's texts: "Shape of a new partitioned variable must be fully
 * defined, but instead was <unknown>.", "A partitioned Variable must have rank at least 1, shape:
 * ()", "Partitioner returned a partition list that does not match the Variable's rank: [2] vs. (4,
 * 5)", "Partitioner returned zero partitions for some axes: [0, 1]", "Can only slice a variable
 * along one dimension: shape: (4, 5), partitioning: [2, 2]", "Can not partition variable along
 * axis 2 when shape is only (4, 5)"; and pscope's own for what TF would not catch: more parts than
 * rows along the axis (TF would make empty parts), a dimension of 0 for the size-based
 * partitioners (TF divides by it), a kind it does not know.
 */
PS_EXTERN int ps_partitioner_partitions(const ps_partitioner_t *p,
                                        const ps_shape_t *shape,
                                        int dtype,
                                        int64_t *partitions,
                                        ps_error_t *err);

/**
 * Print a partition list as Python prints TF's ("[2, 1]") into out (cap bytes, always
 * NUL-terminated when cap > 0); returns out.
 */
PS_EXTERN char *ps_partitions_str(const int64_t *partitions, size_t n, char *out, size_t cap);

/**
 * The slice geometry of TensorFlow's _iter_slices: the axis with a count above 1 (axis 0 when all
 * are 1) is cut into n = partitions[axis] parts, the first dim % n of them one row longer. Part i
 * starts at *offset along *axis and spans *len rows. Returns 0, or INVALID_ARGUMENT for i >= n.
 */
PS_EXTERN int ps_partition_slice(const ps_shape_t *full,
                                 const int64_t *partitions,
                                 size_t i,
                                 int *axis,
                                 size_t *nparts,
                                 int64_t *offset,
                                 int64_t *len,
                                 ps_error_t *err);

/**
 * Part i's SaveSliceInfo spec as TensorFlow writes it: the full dims, then offset,length per
 * dimension ("20 43 0,20:22,21"), into out (cap bytes, NUL-terminated); "" when i is out of range.
 * Returns out.
 */
PS_EXTERN char *ps_partition_slice_spec(
    const ps_shape_t *full, const int64_t *partitions, size_t i, char *out, size_t cap);

/* ---- placement: tf.train.replica_device_setter(ps_tasks, ps_strategy) ---- */

typedef enum {
    /** Default: a stable hash of each variable's (each part's) full name over the shards. */
    PS_PLACEMENT_HASH = 0,
    /** TensorFlow's _RoundRobinStrategy: tasks 0, 1, ..., n-1, 0, ... in creation order. */
    PS_PLACEMENT_ROUND_ROBIN = 1,
    /** GreedyLoadBalancingStrategy(ps_tasks, byte_size_load_fn): the least loaded task (ties go to
     * the lowest), then its load grows by the variable's bytes. */
    PS_PLACEMENT_GREEDY_BYTES = 2,
} ps_placement_kind_t;

typedef struct ps_device_setter {
    /** Number of ps tasks; task N is the client's shard N. 0 turns the setter off (hash). */
    size_t ps_tasks;
    int strategy; /* PS_PLACEMENT_ROUND_ROBIN or PS_PLACEMENT_GREEDY_BYTES */
} ps_device_setter_t;

/**
 * Place the variables this graph makes from now on as replica_device_setter(ps_tasks=..,
 * ps_strategy=..) would: every new variable handle of the graph (a get_variable variable, each part
 * of a partitioned variable, a Variable) takes the strategy's next task in creation order; handles
 * already made keep theirs. Like a new device function, the strategy starts from scratch (counter
 * 0, loads 0). Every worker running the same model code computes the same placement. Returns 0, or
 * INVALID_ARGUMENT (an unknown strategy, more tasks than the client has shards, a graph with no
 * client).
 */
PS_EXTERN int
ps_graph_set_device_setter(ps_graph_t *g, const ps_device_setter_t *setter, ps_error_t *err);

/**
 * The shard the default placement (SPEC §8: a stable hash of the full name) puts name on among
 * nshards shards, as every client computes it; 0 when nshards <= 1.
 */
PS_EXTERN size_t ps_placement_hash_shard(const char *name, size_t nshards);

/** The task (= shard index) a variable or part lives on. A partitioned whole has none: -1. */
PS_EXTERN long ps_variable_task(const ps_variable_t *v);

/**
 * Where a variable or part lives as TensorFlow prints a device ("/job:ps/task:1"), into out (cap
 * bytes, NUL-terminated); "" for a partitioned whole. Returns out.
 */
PS_EXTERN char *ps_variable_device(const ps_variable_t *v, char *out, size_t cap);

/** The address of the shard holding a variable or part ("127.0.0.1:7001"), NULL for a whole. */
PS_EXTERN const char *ps_variable_shard_address(const ps_variable_t *v);

/* ---- PartitionedVariable ---- */

/**
 * A partitioned variable (TensorFlow's PartitionedVariable). Owned by its graph. The ps_variable_t
 * that get_variable returns for it (ps_partitioned_variable_whole) stands for the whole: pull,
 * update and ps_optimizer_apply_gradients on it act on every part; its name has no ":0".
 */
typedef struct ps_partitioned_variable ps_partitioned_variable_t;

/** The partitioned variable behind v, or NULL when v is a single variable (or a part). */
PS_EXTERN ps_partitioned_variable_t *ps_variable_partitioned(const ps_variable_t *v);

/**
 * The partitioned variable v is a part of (TensorFlow's SaveSliceInfo.full_name), or NULL. A Saver
 * keys a part by its whole's full name and saves the whole as one tensor of the full shape.
 */
PS_EXTERN ps_partitioned_variable_t *ps_variable_partition_parent(const ps_variable_t *v);

/** The handle standing for the whole (what get_variable returned). */
PS_EXTERN ps_variable_t *ps_partitioned_variable_whole(const ps_partitioned_variable_t *pv);

/** .name: the full name without ":0" ("scope/p"). Borrowed. */
PS_EXTERN const char *ps_partitioned_variable_name(const ps_partitioned_variable_t *pv);
PS_EXTERN int ps_partitioned_variable_dtype(const ps_partitioned_variable_t *pv);
/** get_shape(): the full shape. */
PS_EXTERN ps_shape_t ps_partitioned_variable_shape(const ps_partitioned_variable_t *pv);
/** Bytes of the whole. */
PS_EXTERN size_t ps_partitioned_variable_nbytes(const ps_partitioned_variable_t *pv);
/** _get_partitions(): writes rank counts into partitions (PS_SHAPE_MAX_RANK entries). */
PS_EXTERN void ps_partitioned_variable_partitions(const ps_partitioned_variable_t *pv,
                                                  int64_t *partitions);
/** The sliced axis. */
PS_EXTERN int ps_partitioned_variable_axis(const ps_partitioned_variable_t *pv);
/** len(list(pv)) and list(pv)[i] (the part "scope/p/part_i"; NULL when out of range). */
PS_EXTERN size_t ps_partitioned_variable_num_parts(const ps_partitioned_variable_t *pv);
PS_EXTERN ps_variable_t *ps_partitioned_variable_part(const ps_partitioned_variable_t *pv,
                                                      size_t i);
/** Part i's offset along the axis (SaveSliceInfo.var_offset[axis]); -1 when out of range. */
PS_EXTERN int64_t ps_partitioned_variable_part_offset(const ps_partitioned_variable_t *pv,
                                                      size_t i);
/**
 * Part i's SaveSliceInfo spec as TensorFlow writes it ("4 5 0,2:0,5": the full dims, then
 * offset,length per dimension) into out; returns out ("" when out of range).
 */
PS_EXTERN char *ps_partitioned_variable_slice_spec(const ps_partitioned_variable_t *pv,
                                                   size_t i,
                                                   char *out,
                                                   size_t cap);

/** The partitioned variable this graph holds under full name (_partitioned_vars), or NULL. */
PS_EXTERN ps_partitioned_variable_t *ps_graph_partitioned_lookup(const ps_graph_t *g,
                                                                 const char *name);

#ifdef __cplusplus
}
#endif

#endif /* PS_PARTITION_H */
