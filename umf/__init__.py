"""UMF-CMGR's programs from a clone, named after upstream's ``Test/`` and
``Trainer/`` scripts: ``python -m umf.test_reg``, ``umf.test_fuse``,
``umf.test_reg_fusion``, ``umf.evaluate_reg``, ``umf.make_misaligned``,
``umf.make_svs_maps``, ``umf.train_reg``, ``umf.train_fuse``,
``umf.train_cpstn``.

A shim, not installed: the programs are ``stdfusion_tf/commands/umf/<name>.py``
(installed: ``stdfusion-umf <name>``).  This package's search path is that
folder, so ``python -m umf.<name>`` runs the same file with the same flags.
"""

from stdfusion_tf.commands import umf as _programs

__path__ = list(_programs.__path__)
