# Seed 003, last program: get_variable variables live in the graph's variable store; Variable ones
# do not. Only the two import lines are changed. pscope lists the store first, then the string
# collections in creation order (TensorFlow also lists its internal ('__varscope',)).
import pscope.compat.v1 as tf  # was: import tensorflow as tf
from pscope.compat.v1 import ops  # was: from tensorflow.python.framework import ops

embedding_1 = tf.Variable(tf.constant(1.0, shape=[30522, 1024]), name="word_embeddings_1", dtype=tf.float32) 
embedding_2 = tf.get_variable("word_embeddings_2", shape=[30522, 1024])

graph = tf.get_default_graph()
collections = graph.collections

for c in collections:
    stores = ops.get_collection(c)
    print('collection %s: ' % str(c))
    for k, store in enumerate(stores):
        try:
            print('\t%d: %s' % (k, str(store._vars)))
        except:
            print('\t%d: %s' % (k, str(store)))
    print('')
