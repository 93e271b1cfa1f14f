/* Seed 004, second example: fine-tuning with a Saver over get_variable.
 *
 *   def fine_tune_model(new_model, pretrained_model):
 *     with tf.variable_scope("new_model"):
 *       x = tf.placeholder(tf.float32, [None, 784], name="input")
 *       y = new_model(x)
 *     with tf.variable_scope("pretrained_model"):
 *       saver = tf.train.Saver({"fc_weights": tf.get_variable("fully_connected/fc_weights"),
 *                               "fc_biases": tf.get_variable("fully_connected/fc_biases")})
 *       pretrained_model = saver.restore(pretrained_model)
 *
 * THE SEED IS WRONG (TF_SEMANTICS §9): tf.get_variable("fully_connected/fc_weights") has no shape,
 * so TF 1.15 cannot create it and raises the §1.7 error printed below (the Saver is never built).
 * Also saver.restore is missing its sess argument, and the dict keys must be the names in the
 * checkpoint. The placeholder is named like an op: new_model/input. create_model's body is empty
 * in the seed.
 *
 * After TF's error, the program runs what the seed means, as TF would need it written: the
 * pretrained model (fully_connected/fc_weights, fc_biases) was saved to a checkpoint first; the new
 * model declares its variables with shapes under pretrained_model/, and a Saver whose keys are the
 * checkpoint's names restores them:
 *   saver = tf.train.Saver({"fully_connected/fc_weights": w, "fully_connected/fc_biases": b})
 *   saver.restore(sess, pretrained_checkpoint) */
#include <stdlib.h>
#include <unistd.h>

#include "seed_util.h"

/* The pretrained model: its own graph (another process in practice), constant values, saved. */
static void save_pretrained(const char *path)
{
    ps_graph_t *g0 = NULL;
    seed_die(ps_graph_new(seed_client, &g0, &E), "graph");
    ps_variable_scope_t *sc = NULL;
    seed_die(ps_variable_scope_push(g0, "fully_connected", NULL, &sc, &E), "variable_scope");
    ps_shape_t ws = ps_shape_make(2, (int64_t[]){784, 256}),
               bs = ps_shape_make(1, (int64_t[]){256});
    ps_initializer_t wi = ps_init_constant(0.5), bi = ps_init_constant(0.125);
    ps_get_variable_args_t wa = {.name = "fc_weights", .shape = &ws, .initializer = &wi};
    ps_get_variable_args_t ba = {.name = "fc_biases", .shape = &bs, .initializer = &bi};
    ps_variable_t *w = NULL, *b = NULL;
    seed_die(ps_get_variable(g0, &wa, &w, &E), "get_variable");
    seed_die(ps_get_variable(g0, &ba, &b, &E), "get_variable");
    seed_die(ps_variable_scope_pop(g0, sc, &E), "variable_scope");
    uint64_t nvars = 0;
    seed_die(ps_checkpoint_save(seed_client, path, &nvars, NULL, &E), "save");
    printf("pretrained model saved: %llu variables (fully_connected/fc_weights, "
           "fully_connected/fc_biases)\n",
           (unsigned long long) nvars);
    ps_graph_free(g0);
}

static float first_value(ps_variable_t *v)
{
    float *x = malloc(ps_variable_nbytes(v));
    seed_die(x ? 0 : PS_ERR_RESOURCE_EXHAUSTED, "malloc");
    seed_die(ps_variable_pull(v, x, ps_variable_nbytes(v), &E), "pull");
    float f = x[0];
    free(x);
    return f;
}

int main(int argc, char **argv)
{
    seed_open(argc, argv);
    char dir[] = "/tmp/pscope-seed004-XXXXXX";
    seed_die(mkdtemp(dir) ? 0 : PS_ERR_INTERNAL, "mkdtemp");
    char path[sizeof dir + 32];
    snprintf(path, sizeof path, "%s/pretrained.ckpt", dir);
    save_pretrained(path);

    ps_variable_scope_t *nm = vs_open("new_model", PS_REUSE_INHERIT);
    printf("x: placeholder %s shape=(?, 784)\n", op_name("input"));
    vs_close(nm);
    ps_variable_scope_t *pm = vs_open("pretrained_model", PS_REUSE_INHERIT);
    ps_variable_t *w = NULL;
    int rc = try_get("fully_connected/fc_weights", -1, NULL, NULL, &w);
    if (rc)
        print_error(rc);
    /* With the shapes given, the variables exist under the enclosing scope's prefix. */
    w = get("fully_connected/fc_weights", 2, (int64_t[]){784, 256}, NULL);
    ps_variable_t *b = get("fully_connected/fc_biases", 1, (int64_t[]){256}, NULL);
    vs_close(pm);
    printf("fc_weights -> %s\n", repr(w));
    printf("fc_biases -> %s\n", repr(b));

    /* saver.restore(sess, path) with the checkpoint's names as keys. */
    ps_checkpoint_map_entry_t map[] = {
        {"fully_connected/fc_weights", "pretrained_model/fully_connected/fc_weights"},
        {"fully_connected/fc_biases", "pretrained_model/fully_connected/fc_biases"},
    };
    ps_restore_opts_t ro = {.map = map, .nmap = 2, .style = PS_RESTORE_SAVER};
    uint64_t restored = 0;
    seed_die(ps_checkpoint_restore(seed_client, path, &ro, &restored, NULL, &E), "restore");
    printf("restored %llu variables: fc_weights[0] = %g, fc_biases[0] = %g\n",
           (unsigned long long) restored, first_value(w), first_value(b));
    unlink(path);
    rmdir(dir);
    return seed_close();
}
