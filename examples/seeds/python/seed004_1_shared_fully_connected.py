# Seed 004, first program. Import line changed. The article defines model() but never calls it;
# the last line (added) calls it on a 2x784 batch, as the C seed does. Under TensorFlow
# reuse_variables() in the new scope fully_connected_2 raises "does not exist" (SPEC §9).
import pscope.compat.v1 as tf  # was: import tensorflow as tf

def model(x):
    with tf.variable_scope("fully_connected_1"):
        W = tf.get_variable("weights", shape=[784, 256], initializer=tf.random_normal_initializer())
        b = tf.get_variable("biases", shape=[256], initializer=tf.zeros_initializer())
        fc1 = tf.nn.relu(tf.matmul(x, W) + b)
    
    with tf.variable_scope("fully_connected_2"):
        # 使用共享的参数
        tf.get_variable_scope().reuse_variables()
        W = tf.get_variable("weights")
        b = tf.get_variable("biases")
        fc2 = tf.matmul(fc1, W) + b
    
    return fc2

model(tf.ones([2, 784]))  # pscope: added, the article never calls model()
