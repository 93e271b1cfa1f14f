/* Seed 001's closing note: "if variable_scope() is given a scope object instead of a string, no
 * same-named name scope is created implicitly."
 *
 * THE NOTE IS OUTDATED (SPEC §9, TF_SEMANTICS §2.3): TF 1.15 opens a NEW, uniquified name scope
 * named after the captured scope's last component (foo_1/ here), and original_name_scope keeps
 * the captured value. Only auxiliary_name_scope=False re-enters the current name scope. This
 * program shows what TensorFlow really does. */
#include "seed_util.h"

int main(int argc, char **argv)
{
    seed_open(argc, argv);
    ps_variable_scope_t *foo_scope = vs_open("foo", PS_REUSE_INHERIT);
    printf("in foo:            x.op.name = %s\n", op_name("add"));
    vs_close(foo_scope);
    ps_variable_scope_opts_t jump = {.scope = foo_scope};
    ps_variable_scope_t *s = vs_open_opts(NULL, &jump);
    printf("in foo_scope:      x.op.name = %s\n", op_name("add"));
    printf("original_name_scope: %s\n", ps_variable_scope_original_name_scope(s));
    vs_close(s);
    ps_variable_scope_opts_t noaux = {.scope = foo_scope, .no_auxiliary_name_scope = 1};
    s = vs_open_opts(NULL, &noaux);
    printf("auxiliary off:     x.op.name = %s\n", op_name("add"));
    vs_close(s);
    /* Putting ops back into the original name scope. */
    ns_open(ps_variable_scope_original_name_scope(foo_scope));
    printf("name_scope(\"foo/\"): x.op.name = %s\n", op_name("add"));
    ns_close();
    return seed_close();
}
