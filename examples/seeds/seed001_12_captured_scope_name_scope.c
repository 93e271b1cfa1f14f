/* Seed 001's closing note: "if variable_scope() is given a scope object instead of a string, no
 * same-named name scope is created implicitly."
 *
 * THE NOTE IS OUTDATED (SPEC §9, TF_SEMANTICS §2.3): TF 1.15 opens a NEW, uniquified name scope
 * named after the captured scope's last component (foo_1/ here), and original_name_scope keeps
 * the captured value. Only auxiliary_name_scope=False re-enters the current name scope. The article
 * gives no code for the note; this program shows what TensorFlow really does, with the `x = 1.0 +
 * v` of the examples before it in each scope. pscope has no tensor add, so that line cannot be
 * written: at each one the add's name is taken from the graph's unique-name table, as TF's add
 * takes it (op_name). */
#include "seed_util.h"

int main(int argc, char **argv)
{
    seed_open(argc, argv);
    ps_variable_scope_t *foo_scope = vs_open("foo", PS_REUSE_INHERIT);
    /* x = 1.0 + v: no tensor add in pscope; only its name. */
    printf("in foo:            x.op.name = %s\n", op_name("add"));
    vs_close(foo_scope);
    ps_variable_scope_opts_t jump = {.scope = foo_scope};
    ps_variable_scope_t *s = vs_open_opts(NULL, &jump);
    /* x = 1.0 + v: no tensor add in pscope; only its name. */
    printf("in foo_scope:      x.op.name = %s\n", op_name("add"));
    printf("original_name_scope: %s\n", ps_variable_scope_original_name_scope(s));
    vs_close(s);
    ps_variable_scope_opts_t noaux = {.scope = foo_scope, .no_auxiliary_name_scope = 1};
    s = vs_open_opts(NULL, &noaux);
    /* x = 1.0 + v: no tensor add in pscope; only its name. */
    printf("auxiliary off:     x.op.name = %s\n", op_name("add"));
    vs_close(s);
    /* Putting ops back into the original name scope. */
    ns_open(ps_variable_scope_original_name_scope(foo_scope));
    /* x = 1.0 + v: no tensor add in pscope; only its name. */
    printf("name_scope(\"foo/\"): x.op.name = %s\n", op_name("add"));
    ns_close();
    return seed_close();
}
