"""A local web page: upload an infrared and a visible image (any sizes),
see them registered and fused.

    stdfusion-web                       # http://127.0.0.1:8000/
    stdfusion-web --port 8080 --difn_weights fus_0200.pth

The page and ``POST /api/fuse`` (multipart ``ir``, ``vi``; optional
``register``, ``fuser``, ``color``; answers the fused PNG) are described in
docs/web.md.  One fusion runs at a time; uploads are limited in bytes and
pixels.  Serves on the loopback address unless --host says otherwise.

Installed with the ``[web]`` extra: ``pip install .[web]``; from a clone
``python -m stdfusion_tf.commands.web``.
"""

import os

from absl import flags

from stdfusion_tf.web import service

FLAGS = flags.FLAGS
flags.DEFINE_string("host", "127.0.0.1", "Address to listen on (default: "
                    "this machine only; 0.0.0.0 exposes the page to the "
                    "network, without any authentication).")
flags.DEFINE_integer("port", 8000, "Port to listen on.")
flags.DEFINE_float("max_upload_mb", service.DEFAULT_MAX_UPLOAD_BYTES
                   / service.MIB, "Largest upload (both files together), "
                   "in MB.")
flags.DEFINE_float("max_megapixels", service.DEFAULT_MAX_PIXELS / 1e6,
                   "Largest image (each of the two), in megapixels.")
flags.DEFINE_integer("max_waiting", 2, "Requests that may wait while a "
                     "fusion runs (one runs at a time); more get HTTP 503.")
flags.DEFINE_float("wait_seconds", 120, "How long a waiting request waits "
                   "for its turn before it gets HTTP 503.")
flags.DEFINE_string("difn_weights", None, "DIFN weights (.pth or "
                    ".weights.h5) for the DIFN choice.  Default: the public "
                    "UMF-CMGR retrain, fetched on first use "
                    "($STDFUSION_UMF_MIRROR or ../shared/umf-cmgr when "
                    "present).")
flags.DEFINE_string("mirror", None, "Folder laid out like ../shared/upstream "
                    "to take the STDFusionNet presets from (default: "
                    "$STDFUSION_MIRROR, else ../shared/upstream beside a "
                    "clone, else GitHub).")
flags.DEFINE_string("preload", None, "Load this fuser at start (a preset "
                    "name or 'difn') instead of at its first request.")


def main(argv):
    from stdfusion_tf.errors import InputError

    try:
        import uvicorn

        from stdfusion_tf.web import app as web_app
    except ImportError as exc:
        raise InputError(None, f"{exc.name or exc}: stdfusion-web needs the "
                         "[web] extra (pip install 'stdfusion-tf[web]', or "
                         "starlette, uvicorn and python-multipart)")

    if len(argv) > 1:
        raise flags.UnrecognizedFlagError(argv[1])
    if not 0 < FLAGS.port < 65536:
        raise InputError(None, f"--port {FLAGS.port}: expected 1..65535")
    if FLAGS.max_upload_mb <= 0 or FLAGS.max_megapixels <= 0:
        raise InputError(None, "--max_upload_mb and --max_megapixels must "
                         "be positive")
    if FLAGS.difn_weights and not os.path.isfile(FLAGS.difn_weights):
        raise InputError(FLAGS.difn_weights, "--difn_weights: no such file")
    limits = service.Limits(
        max_upload_bytes=int(FLAGS.max_upload_mb * service.MIB),
        max_pixels=int(FLAGS.max_megapixels * 1e6))
    models = service.Models(difn_weights=FLAGS.difn_weights,
                            mirror=FLAGS.mirror)
    svc = service.FusionService(models, limits)
    check_address(FLAGS.host, FLAGS.port)
    if FLAGS.preload:
        models.get(FLAGS.preload)
    application = web_app.create_app(svc, max_waiting=FLAGS.max_waiting,
                                     wait_seconds=FLAGS.wait_seconds)
    print(f"stdfusion-web: http://{FLAGS.host}:{FLAGS.port}/ "
          "(Ctrl-C stops)", flush=True)
    uvicorn.run(application, host=FLAGS.host, port=FLAGS.port,
                log_level="warning")


def check_address(host, port):
    """One line now, rather than uvicorn's log after the models load, when
    the address cannot be served (port in use, unknown host)."""
    import socket

    from stdfusion_tf.errors import InputError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(infos[0][4])
    except OSError as exc:
        raise InputError(None, f"cannot serve on {host}:{port} "
                         f"({exc.strerror or exc})")


def run():
    """Console script ``stdfusion-web``."""
    from stdfusion_tf import commands

    commands.run(__name__)


if __name__ == "__main__":
    run()
