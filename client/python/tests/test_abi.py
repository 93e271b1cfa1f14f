"""The C declarations pscope's ctypes layer mirrors (client/python/pscope/_lib.py) agree with the
headers: the sizes it hard-codes, and the structs whose fields it lists."""
import pathlib
import re

from pscope import _lib

ROOT = pathlib.Path(__file__).resolve().parents[3]


def header(path):
    return (ROOT / path).read_text()


def test_error_message_size_matches_status_h():
    m = re.search(r"#define PS_ERROR_MSG_MAX (\d+)", header("common/include/ps/status.h"))
    assert int(m.group(1)) == _lib.PS_ERROR_MSG_MAX


def fields(text, struct):
    body = re.search(r"typedef struct %s \{(.*?)\} " % struct, text, re.S).group(1)
    body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
    names = []
    for decl in body.split(";"):
        decl = decl.strip()
        if not decl:
            continue
        m = re.search(r"\(\s*\*\s*(\w+)\)", decl) or re.search(r"(\w+)\s*(\[[^]]*\])?$", decl)
        names += [n.strip().lstrip("*") for n in m.group(1).split(",")] if m else []
        if "," in decl and not m.group(0).startswith("("):
            names[-1:] = [n.strip().lstrip("*").split("[")[0] for n in decl.split(None, 1)[1].split(",")]
    return names


def test_struct_fields_match_headers():
    var = header("client/include/ps/variable.h")
    scope = header("client/include/ps/scope.h")
    client = header("client/include/ps/client.h")
    cases = [
        (var, "ps_initializer", _lib.Initializer),
        (var, "ps_get_variable_args", _lib.GetVariableArgs),
        (var, "ps_variable_args", _lib.VariableArgs),
        (var, "ps_update", _lib.Update),
        (scope, "ps_variable_scope_opts", _lib.VariableScopeOpts),
        (client, "ps_client_opts", _lib.ClientOpts),
        (var, "ps_constraint", _lib.Constraint),
        (header("client/include/ps/regularizer.h"), "ps_regularizer", _lib.Regularizer),
    ]
    for text, struct, cls in cases:
        c_fields = fields(text, struct)
        py_fields = [f[0] for f in cls._fields_ if not f[0].startswith("_")]
        assert c_fields == py_fields, struct
