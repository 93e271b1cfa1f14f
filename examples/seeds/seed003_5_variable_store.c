/* Seed 003, last example: get_variable variables live in the graph's variable store
 * (('__variable_store',)), Variable ones do not.
 *
 *   embedding_1 = tf.Variable(tf.constant(1.0, shape=[30522, 1024]), name="word_embeddings_1",
 *                             dtype=tf.float32)
 *   embedding_2 = tf.get_variable("word_embeddings_2", shape=[30522, 1024])
 *   for c in graph.collections: ... print(store._vars) or the items
 *
 * Seed output: collection ('__variable_store',): 0: {'word_embeddings_2': <tf.Variable
 * 'word_embeddings_2:0' shape=(30522, 1024) dtype=float32_ref>}. True in TF 1.15. pscope's graph
 * keeps the store keys apart from its collections (ps_graph_store_key), and lists its string-keyed
 * collections in creation order. The constant's bytes travel once to psd (SPEC §4). */
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
    printf("collection ('__variable_store',): ");
    for (size_t i = 0; i < ps_graph_store_count(G); i++) {
        const char *key = ps_graph_store_key(G, i);
        printf("%zu: {'%s': %s}\n", i, key, repr(ps_graph_store_lookup(G, key)));
    }
    for (size_t k = 0; k < ps_graph_collection_count(G); k++) {
        const char *key = ps_graph_collection_key(G, k);
        ps_variable_t *items[8];
        size_t n = 0;
        seed_die(ps_graph_get_collection(G, key, NULL, items, 8, &n, &E), "get_collection");
        printf("collection %s:", key);
        for (size_t i = 0; i < n && i < 8; i++)
            printf(" %zu: %s", i, repr(items[i]));
        printf("\n");
    }
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
