/* Seed 003, last example: get_variable variables live in the graph's variable store
 * (('__variable_store',)), Variable ones do not.
 *
 *   embedding_1 = tf.Variable(tf.constant(1.0, shape=[30522, 1024]), name="word_embeddings_1",
 *                             dtype=tf.float32)
 *   embedding_2 = tf.get_variable("word_embeddings_2", shape=[30522, 1024])
 *   for c in graph.collections:
 *       stores = ops.get_collection(c)
 *       print('collection %s: ' % str(c))
 *       for k, store in enumerate(stores):
 *           try: print('\t%d: %s' % (k, str(store._vars)))
 *           except: print('\t%d: %s' % (k, str(store)))
 *       print('')
 *
 * The article shows only one line of it. What TF 1.15 prints, and this program with it:
 * - graph.collections is list(graph._collections), a dict in insertion order. tf.Variable's creator
 *   reads the current variable scope (use_resource), which creates ('__varscope',) first; then
 *   RefVariable adds itself to GLOBAL_VARIABLES and TRAINABLE_VARIABLES, creating 'variables' and
 *   'trainable_variables'; then get_variable creates ('__variable_store',). So four keys, the store
 *   last. pscope keeps the two tuple keys apart from its string-keyed collections
 *   (ps_graph_store_key; there is no object for ('__varscope',)), so the order below is this
 *   program's, written to follow TF's.
 * - Differs, 1: TF adds to the two string collections through add_to_collections, which iterates a
 *   Python set: 'variables' and 'trainable_variables' come in either order from one Python process
 *   to the next (string hashing is randomized). This program prints one of the two.
 * - Differs, 2: the ('__varscope',) item has no _vars, so TF prints str() of a Python object,
 *   "<tensorflow.python.ops.variable_scope._VariableScopeStore object at 0x7f...>" with a memory
 *   address; pscope has no such object and prints its current variable scope instead.
 * - Differs, 3: variables print as <ps.Variable ...> where TF prints <tf.Variable ...> (pscope's
 *   repr, as in every seed); the rest of each line, tabs and the blank lines are TF's.
 * - Differs, 4: the last line is not the article's: it pulls embedding_1 back to show that the
 *   constant's bytes reached psd (they travel once, SPEC §4). */
#include "seed_util.h"

int main(int argc, char **argv)
{
    seed_open(argc, argv);
    static const int64_t dims[] = {30522, 1024};
    ps_tensor_t *ones = NULL;
    seed_die(ps_tensor_new(PS_DTYPE_FLOAT32, dims, 2, &ones, &E), "tensor");
    float *p = ps_tensor_data(ones);
    for (uint64_t i = 0; i < ps_tensor_nelems(ones); i++)
        p[i] = 1.0f;
    ps_variable_t *embedding_1 = variable(ones, "word_embeddings_1");
    ps_tensor_free(ones);
    ps_variable_t *embedding_2 = get("word_embeddings_2", 2, dims, NULL);
    (void) embedding_1;
    (void) embedding_2;
    /* ('__varscope',): created first, by tf.Variable's creator (see the header: differs, 2). */
    printf("collection ('__varscope',): \n");
    printf("\t0: <variable scope store: current scope '%s'>\n",
           ps_variable_scope_name(ps_get_variable_scope(G)));
    printf("\n");
    /* 'variables' and 'trainable_variables', in the graph's creation order (differs, 1). */
    for (size_t k = 0; k < ps_graph_collection_count(G); k++) {
        const char *key = ps_graph_collection_key(G, k);
        ps_variable_t *items[8];
        size_t n = 0;
        seed_die(ps_graph_get_collection(G, key, NULL, items, 8, &n, &E), "get_collection");
        printf("collection %s: \n", key);
        for (size_t i = 0; i < n && i < 8; i++)
            printf("\t%zu: %s\n", i, repr(items[i]));
        printf("\n");
    }
    /* ('__variable_store',): one _VariableStore, whose _vars dict prints on one line. */
    printf("collection ('__variable_store',): \n");
    printf("\t0: {");
    for (size_t i = 0; i < ps_graph_store_count(G); i++) {
        const char *key = ps_graph_store_key(G, i);
        printf("%s'%s': %s", i ? ", " : "", key, repr(ps_graph_store_lookup(G, key)));
    }
    printf("}\n");
    printf("\n");
    /* Pull the whole embedding back (one request) into a caller buffer. */
    ps_tensor_t *back = NULL;
    seed_die(ps_tensor_new(PS_DTYPE_FLOAT32, dims, 2, &back, &E), "tensor");
    seed_die(ps_variable_pull(embedding_1, ps_tensor_data(back), ps_tensor_nbytes(back), &E),
             "pull");
    const float *b = ps_tensor_data(back);
    printf("embedding_1[0][0] = %.1f, embedding_1[30521][1023] = %.1f\n", (double) b[0],
           (double) b[ps_tensor_nelems(back) - 1]);
    ps_tensor_free(back);
    return seed_close();
}
