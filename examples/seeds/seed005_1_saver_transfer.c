/* Save a model with tf.train.Saver, restore it into a differently scoped graph through a var_list
 * map, and continue training (pscope's own example of TF_SEMANTICS §6.1-§6.2, in the seeds' style):
 *
 *   with tf.variable_scope("model"): w = get_variable("w", [], zeros); b = get_variable("b", ...)
 *   ... 20 SGD steps on y = 3x + 1 ...
 *   saver = tf.train.Saver(max_to_keep=2); saver.save(sess, ckpt_dir + "/model.ckpt",
 * global_step=20)
 *
 *   # a new graph, another scope
 *   with tf.variable_scope("finetune"): w2 = get_variable("w", ...); b2 = ...
 *   restorer = tf.train.Saver({"model/w": w2, "model/b": b2})
 *   restorer.restore(sess, tf.train.latest_checkpoint(ckpt_dir))
 *   ... 20 more steps; restorer.save(sess, ckpt_dir + "/model.ckpt", global_step=40) ...
 *
 * The checkpoint is written by this program in a temporary directory; paths print as basenames.
 * A restore with a key the checkpoint lacks shows TensorFlow's two-part message, newlines kept. */
#include <stdlib.h>
#include <unistd.h>

#include "seed_util.h"

static const float X[4] = {0, 1, 2, 3}, Y[4] = {1, 4, 7, 10};

/* One SGD step on the mean squared error of y = w * x + b; returns the loss before the step. */
static double sgd_step(ps_variable_t *w, ps_variable_t *b, float lr)
{
    float wv = pull1(w), bv = pull1(b);
    double loss = 0, gw = 0, gb = 0;
    for (int i = 0; i < 4; i++) {
        double d = wv * X[i] + bv - Y[i];
        loss += d * d / 4;
        gw += 2 * d * X[i] / 4;
        gb += 2 * d / 4;
    }
    float dw = (float) (lr * gw), db = (float) (lr * gb);
    seed_die(ps_variable_assign_sub(w, &dw, sizeof dw, &E), "assign_sub");
    seed_die(ps_variable_assign_sub(b, &db, sizeof db, &E), "assign_sub");
    return loss;
}

static void train(ps_variable_t *w, ps_variable_t *b, int from, int to)
{
    for (int step = from; step < to; step++) {
        double loss = sgd_step(w, b, 0.05f);
        if (step % 10 == 0)
            printf("step %d: loss %.4f\n", step, loss);
    }
    printf("after step %d: w = %.4f, b = %.4f\n", to, (double) pull1(w), (double) pull1(b));
}

static const char *base(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

int main(int argc, char **argv)
{
    seed_open(argc, argv);
    char dir[] = "/tmp/pscope-seed005-XXXXXX";
    if (!mkdtemp(dir)) {
        printf("cannot make a temporary directory\n");
        return 1;
    }
    char prefix[128], out[256];
    snprintf(prefix, sizeof prefix, "%s/model.ckpt", dir);
    ps_initializer_t zeros = ps_init_zeros();

    /* The first model, trained and saved. */
    ps_variable_scope_t *m = vs_open("model", PS_REUSE_INHERIT);
    ps_variable_t *w = get("w", 0, NULL, &zeros), *b = get("b", 0, NULL, &zeros);
    vs_close(m);
    train(w, b, 0, 20);
    ps_saver_t *saver = NULL;
    ps_saver_opts_t so = {.has_max_to_keep = 1, .max_to_keep = 2};
    seed_die(ps_saver_new(G, &so, &saver, &E), "Saver");
    printf("saver keys:");
    for (size_t i = 0; i < ps_saver_count(saver); i++)
        printf(" %s", ps_saver_key(saver, i));
    printf("\n");
    seed_die(ps_saver_save(saver, prefix, 20, out, sizeof out, &E), "save");
    printf("saved %s\n", base(out));
    ps_saver_free(saver);

    /* A new graph with another scope: restore through a map, then keep training. */
    ps_graph_free(G);
    seed_die(ps_graph_new(seed_client, &G, &E), "graph");
    ps_variable_scope_t *f = vs_open("finetune", PS_REUSE_INHERIT);
    ps_variable_t *w2 = get("w", 0, NULL, &zeros), *b2 = get("b", 0, NULL, &zeros);
    vs_close(f);
    printf("%s starts at %.4f\n", repr(w2), (double) pull1(w2));
    int found = 0;
    char latest[256];
    seed_die(ps_latest_checkpoint(dir, latest, sizeof latest, &found, &E), "latest_checkpoint");
    printf("latest_checkpoint: %s\n", found ? base(latest) : "None");
    ps_saver_entry_t map[] = {{"model/w", ps_saveable_variable(w2)},
                              {"model/b", ps_saveable_variable(b2)}};
    ps_saver_opts_t ro = {.var_list_kind = PS_VAR_LIST_MAP, .map = map, .nmap = 2};
    ps_saver_t *restorer = NULL;
    seed_die(ps_saver_new(G, &ro, &restorer, &E), "Saver(map)");
    seed_die(ps_saver_restore(restorer, latest, &E), "restore");
    printf("restored: w = %.4f, b = %.4f\n", (double) pull1(w2), (double) pull1(b2));
    train(w2, b2, 20, 40);
    seed_die(ps_saver_save(restorer, prefix, 40, out, sizeof out, &E), "save");
    printf("saved %s\n", base(out));

    /* What the checkpoint holds (tf.train.list_variables): the map's keys, not the new names. */
    ps_checkpoint_reader_t *r = NULL;
    seed_die(ps_checkpoint_reader_open(dir, &r, &E), "load_checkpoint");
    printf("list_variables(%s):", base(ps_checkpoint_reader_path(r)));
    for (size_t i = 0; i < ps_checkpoint_reader_count(r); i++) {
        ps_checkpoint_entry_t e;
        seed_die(ps_checkpoint_reader_entry(r, i, &e, &E), "list_variables");
        char shape[64];
        printf(" (%s, %s)", e.name, ps_shape_str(&e.shape, shape, sizeof shape));
    }
    printf("\n");
    ps_checkpoint_reader_free(r);

    /* A key the checkpoint lacks: TensorFlow's NotFoundError, its newlines kept. */
    ps_saver_entry_t bad[] = {{"model/v2", ps_saveable_variable(w2)}};
    ps_saver_opts_t bo = {.var_list_kind = PS_VAR_LIST_MAP, .map = bad, .nmap = 1};
    ps_saver_t *badr = NULL;
    seed_die(ps_saver_new(G, &bo, &badr, &E), "Saver(bad map)");
    int rc = ps_saver_restore(badr, latest, &E);
    printf("NotFoundError (%s): %s\n", ps_code_name(rc), E.msg);
    ps_saver_free(badr);
    ps_saver_free(restorer);

    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        printf("cannot remove %s\n", dir);
    return seed_close();
}
