from stdfusion_tf.commands.umf import run

run()
