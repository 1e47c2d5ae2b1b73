"""The command lines, one module each: flags and ``main`` live here, once.

Installed (console scripts) and, in parentheses, the same program from a
clone:

* ``stdfusion-fuse`` (``python test.py``): ``commands.fuse``;
* ``stdfusion-train`` (``python train.py``): ``commands.train``;
* ``stdfusion-evaluate`` (``python evaluate.py``): ``commands.evaluate``;
* ``stdfusion-convert from_tf1 | to_tf1 | from_torch`` (``python -m
  convert.from_tf1`` ...): ``commands.convert`` dispatching to
  ``commands.from_tf1``, ``to_tf1``, ``from_torch``;
* ``stdfusion-umf test_reg | test_fuse | test_reg_fusion | evaluate_reg |
  make_misaligned | make_svs_maps | train_reg | train_fuse | train_cpstn``
  (``python -m umf.test_reg`` ...): ``commands.umf`` dispatching to
  ``commands.umf.<name>``;
* ``stdfusion-masks`` (``python make_masks.py``): ``commands.masks``;
* ``stdfusion-assets`` (fetch pinned upstream files): ``commands.assets``.

``test.py``, ``train.py``, ``evaluate.py``, ``make_masks.py``, ``convert/`` and
``umf/`` are thin shims that run these modules, so the installed package
carries no generic top-level names and no flag is defined twice.  Each
module can also be run as ``python -m stdfusion_tf.commands.X``.  The
library never imports this package.
"""

import importlib
import os
import sys

# Helper modules whose flags are part of the commands that use them (shown
# under --help, not only --helpfull).
FLAG_HELPERS = ("stdfusion_tf.commands.umf._common",)


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
    doc = module.__doc__ or ""
    if os.path.basename(sys.argv[0]).startswith("stdfusion-"):
        # installed: the usage names the console script only
        doc = "\n\n".join(p for p in doc.split("\n\n")
                          if not p.lstrip().startswith("From a clone:"))
    main_module.__doc__ = doc
    if main_module is not module:
        for flag in flags.FLAGS.get_key_flags_for_module(module):
            flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    for helper in FLAG_HELPERS:
        if helper in sys.modules:
            for flag in flags.FLAGS.get_flags_for_module(helper):
                flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    cli.run(module.main)


def dispatch(package, subcommands, doc, argv=None):
    """``<prog> SUBCOMMAND [flags]``: import ``<package>.<SUBCOMMAND>`` (only
    that one, since subcommands share flag names that absl allows to be
    defined once) and call its ``run()``, with ``sys.argv[0]`` set to
    ``"<prog> SUBCOMMAND"`` so that usage and one-line errors name both.
    ``subcommands``: {name: one-line description}."""
    argv = list(sys.argv if argv is None else argv)
    prog = os.path.basename(argv[0])
    if len(argv) < 2 or argv[1] in ("-h", "--help", "help", "-help",
                                    "--helpfull"):
        lines = [doc.strip(), "",
                 f"usage: {prog} SUBCOMMAND [flags]   "
                 f"({prog} SUBCOMMAND --help lists its flags)",
                 "", "subcommands:"]
        width = max(map(len, subcommands))
        lines += [f"  {name:<{width}}  {what}"
                  for name, what in subcommands.items()]
        try:
            print("\n".join(lines), flush=True)
        except BrokenPipeError:  # | head
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0 if len(argv) >= 2 else 1)
    name = argv[1].replace("-", "_")
    if name not in subcommands:
        print(f"{prog}: error: unknown subcommand {argv[1]!r} (one of: "
              f"{', '.join(subcommands)})", file=sys.stderr)
        sys.exit(1)
    sys.argv = [f"{argv[0]} {name}"] + argv[2:]
    try:
        module = importlib.import_module(f"{package}.{name}")
    except KeyboardInterrupt:  # Ctrl-C while starting: no traceback
        print(f"{prog} {name}: interrupted (SIGINT): 0 output file(s) "
              "written", file=sys.stderr)
        sys.exit(128 + 2)
    module.run()
