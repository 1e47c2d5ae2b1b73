"""The command lines, one module each: flags and ``main`` live here, once.

* ``commands.fuse``: ``stdfusion-fuse`` installed, ``python test.py`` from a
  clone;
* ``commands.train``: ``stdfusion-train``, ``python train.py``;
* ``commands.evaluate``: ``stdfusion-evaluate``, ``python evaluate.py``;
* ``commands.from_tf1``, ``to_tf1``, ``from_torch``: ``stdfusion-convert
  from_tf1`` (``to_tf1``, ``from_torch``; see ``commands.convert``),
  ``python -m convert.from_tf1`` (...).

``test.py``, ``train.py``, ``evaluate.py`` and ``convert/*.py`` are thin shims
that import these modules, so the installed package carries no top-level
``convert`` (too generic a name for site-packages) and no flag is defined
twice.  Each module can also be run as ``python -m stdfusion_tf.commands.X``.
The library never imports this package.
"""

import sys


def run(module_name):
    """Run the command of ``module_name`` (flags already defined by importing
    it) under ``cli.run``, with absl's ``--help`` showing that module's
    docstring and flags whichever way it was started (script, shim,
    ``-m``, console script): absl prints the docstring of ``__main__`` and
    the flags registered for ``sys.argv[0]``."""
    from absl import flags

    from .. import cli

    module = sys.modules[module_name]
    main_module = sys.modules["__main__"]
    if main_module is not module:
        main_module.__doc__ = module.__doc__
        for flag in flags.FLAGS.get_key_flags_for_module(module):
            flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    cli.run(module.main)
