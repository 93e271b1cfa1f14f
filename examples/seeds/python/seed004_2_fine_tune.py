# Seed 004, second program. Import line changed. The article's create_model has no body (a syntax
# error): 'pass' is added; and the last line (added) calls fine_tune_model. Under TensorFlow,
# get_variable("fully_connected/fc_weights") with no shape cannot create the variable and raises
# the initializer ValueError before the Saver is built (SPEC §9); the C seed goes on to restore.
import pscope.compat.v1 as tf  # was: import tensorflow as tf

def create_model(x):
    # 定义新的模型
    pass  # pscope: added, the article leaves the body empty
    
def fine_tune_model(new_model, pretrained_model):
    with tf.variable_scope("new_model"):
        x = tf.placeholder(tf.float32, [None, 784], name="input")
        y = new_model(x)
    
    with tf.variable_scope("pretrained_model"):
        # 加载已经训练好的参数
        saver = tf.train.Saver({"fc_weights": tf.get_variable("fully_connected/fc_weights"),
                               "fc_biases": tf.get_variable("fully_connected/fc_biases")})
        pretrained_model = saver.restore(pretrained_model)
        
    with tf.variable_scope("new_model"):
        # 继续训练新的模型
        # ...
        pass  # pscope: added, the article's block has only comments

fine_tune_model(create_model, "pretrained_model")  # pscope: added, the article never calls it
