"""UMF-CMGR command lines, named after upstream's ``Test/`` and ``Trainer/``
scripts: ``python -m umf.test_reg``, ``umf.test_fuse``, ``umf.test_reg_fusion``,
``umf.evaluate_reg``, ..."""
