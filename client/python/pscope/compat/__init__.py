"""pscope.compat: TensorFlow-compatible namespaces (`import pscope.compat.v1 as tf`)."""
