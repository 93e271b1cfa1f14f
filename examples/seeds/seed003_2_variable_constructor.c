/* Seed 003: the Variable constructor needs an initial value; the name is optional.
 *
 *   W = tf.Variable(<initial-value>, name=<optional-name>)
 *
 * Shown with a value and a name, without a name (TF names it "Variable"), and without a value
 * (TF raises "initial_value must be specified."). */
#include "seed_util.h"

int main(int argc, char **argv)
{
    seed_open(argc, argv);
    float init[3] = {1.0f, 2.0f, 3.0f};
    ps_tensor_t *t = NULL;
    seed_die(ps_tensor_from_data(PS_DTYPE_FLOAT32, (int64_t[]){3}, 1, init, sizeof init, &t, &E),
             "tensor");
    ps_variable_t *w = variable(t, "W");
    ps_variable_t *anon = variable(t, NULL);
    ps_tensor_free(t);
    printf("W: %s = [%.1f, ...]\n", repr(w), (double) pull1(w));
    printf("unnamed: %s\n", repr(anon));
    ps_variable_args_t none = {.name = "W"};
    ps_variable_t *x = NULL;
    int rc = ps_variable_new(G, &none, &x, &E);
    if (rc)
        print_error(rc);
    return seed_close();
}
