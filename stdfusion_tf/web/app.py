"""The Starlette application of the web page.

Routes:

* ``GET /``: the page (``page.html``);
* ``GET /api/info``: the fuser choices (with their availability), the
  registration methods and the limits, as JSON;
* ``POST /api/fuse``: multipart ``ir``, ``vi`` (files), optional
  ``register`` (``auto`` | ``none``), ``fuser`` (a preset name or
  ``difn``), ``color`` (``1``/``true``/``on``) -> ``image/png``, the fused
  image in the visible image's frame.  Headers: ``X-Result-Id`` (the other
  pictures are at ``/api/results/<id>/<file>``), ``X-Registration-Method``,
  ``X-Registration-Confidence``, ``X-Registration-Fallback``,
  ``X-Seconds`` (total);
* ``GET /api/results/<id>/<file>``: ``summary.json``, ``fused.png``,
  ``registered.png``, ``checkerboard.png``, ``overlay.png``, ``flow.png``,
  ``flow.npy``, ``transform.json`` of one of the last results
  (``?download=1``: as an attachment).

Errors are ``text/plain``, one line naming the problem: 400 (a bad field),
413 (the upload or an image above the limits), 415 (not an image), 422
(an image that cannot be used: empty, too small, featureless...), 503 (busy:
another fusion is running and the queue is full or the wait too long;
``Retry-After`` given).  The server keeps serving after any of them.

Fusion is heavy and the CPU is shared by the whole request: one runs at a
time (a lock), the next ``max_waiting`` wait up to ``wait_seconds`` for their
turn, anything beyond gets 503 at once.  The request body is limited as it
arrives (``Content-Length`` first, then the bytes actually read).
"""

import json
import pathlib
import threading
import traceback

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ..errors import InputError, one_line
from . import service as service_module

PAGE = pathlib.Path(__file__).with_name("page.html")
# Multipart overhead allowed above the files' own limit (boundaries, the
# small text fields).
FORM_SLACK = 64 * 1024
TRUE = ("1", "true", "on", "yes")
FALSE = ("", "0", "false", "off", "no")


class Busy(Exception):
    pass


class Gate:
    """One holder at a time; at most ``max_waiting`` more wait, each for at
    most ``wait_seconds``.  Used from worker threads."""

    def __init__(self, max_waiting=2, wait_seconds=120.0):
        self.max_waiting = max_waiting
        self.wait_seconds = wait_seconds
        self._lock = threading.Lock()
        self._count = threading.Lock()
        self.waiting = 0

    def __enter__(self):
        if self._lock.acquire(blocking=False):
            return self
        with self._count:
            if self.waiting >= self.max_waiting:
                raise Busy("busy: another fusion is running and "
                           f"{self.waiting} more are waiting; try again "
                           "shortly")
            self.waiting += 1
        try:
            if not self._lock.acquire(timeout=self.wait_seconds):
                raise Busy("busy: another fusion kept the server for more "
                           f"than {self.wait_seconds:.0f} s; try again")
        finally:
            with self._count:
                self.waiting -= 1
        return self

    def __exit__(self, *exc):
        self._lock.release()


class BodyLimit:
    """ASGI middleware: a request body above ``limit`` bytes is refused with
    413 (by its ``Content-Length`` before anything is read, else when the
    bytes read pass the limit)."""

    def __init__(self, app, limit):
        self.app = app
        self.limit = limit

    def message(self):
        return (f"upload is larger than this server's limit of "
                f"{self.limit / service_module.MIB:.0f} MB")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > \
                self.limit + FORM_SLACK:
            response = PlainTextResponse(self.message(), status_code=413,
                                         headers={"Connection": "close"})
            return await response(scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit + FORM_SLACK:
                raise HTTPException(413, self.message())
            return message

        return await self.app(scope, limited, send)


def error(status, message):
    return PlainTextResponse(one_line(message) + "\n", status_code=status)


def create_app(fusion_service=None, max_waiting=2, wait_seconds=120.0):
    """The ASGI application around a ``service.FusionService``."""
    svc = fusion_service or service_module.FusionService()
    gate = Gate(max_waiting, wait_seconds)
    page = PAGE.read_text()

    async def index(request):
        return HTMLResponse(page)

    async def info(request):
        return JSONResponse(svc.info())

    async def fuse(request):
        from starlette.concurrency import run_in_threadpool

        kind = request.headers.get("content-type", "")
        if not kind.startswith("multipart/form-data"):
            return error(400, "expected a multipart/form-data body with "
                         f"files ir and vi, got {kind or 'no content type'}")
        try:
            form = await request.form(max_files=2, max_fields=8)
        except HTTPException:
            raise
        except Exception as exc:  # not multipart, broken multipart
            return error(400, f"expected a multipart form with files ir and "
                         f"vi ({one_line(exc)})")
        try:
            uploads = []
            for field, label in (("ir", "infrared image"),
                                 ("vi", "visible image")):
                part = form.get(field)
                if part is None or isinstance(part, str):
                    return error(400, f"missing file field {field!r} (the "
                                 f"{label})")
                uploads.append(service_module.Upload(
                    label, part.filename or "", await part.read()))
            register = str(form.get("register") or "auto").strip().lower()
            fuser = str(form.get("fuser") or "").strip() or None
            color = str(form.get("color") or "").strip().lower()
            if color not in TRUE + FALSE:
                return error(400, f"color={color!r}: expected 1 or 0")
        finally:
            await form.close()

        def work():
            # refuse bad input before queueing behind another fusion
            svc.check(*uploads, register, fuser, color in TRUE)
            with gate:
                return svc.run(*uploads, register, fuser, color in TRUE)

        try:
            result = await run_in_threadpool(work)
        except Busy as exc:
            return PlainTextResponse(f"{exc}\n", status_code=503,
                                     headers={"Retry-After": "10"})
        except service_module.UploadError as exc:
            return error(exc.status, str(exc))
        except InputError as exc:
            return error(422, str(exc))
        except MemoryError:
            return error(413, "the pair is too large to fuse in this "
                         "server's memory")
        except Exception as exc:
            if type(exc).__name__ == "ResourceExhaustedError":
                return error(413, "the pair is too large to fuse in this "
                             "server's memory")
            traceback.print_exc()  # the server's log keeps the details
            return error(500, f"internal error ({type(exc).__name__}: "
                         f"{one_line(exc)[:200]}); the server still runs")
        reg = result.summary["registration"]
        return Response(result.files["fused.png"], media_type="image/png",
                        headers={
                            "X-Result-Id": result.id,
                            "X-Registration-Method": reg["method"],
                            "X-Registration-Confidence":
                                "n/a" if reg["confidence"] is None
                                else f"{reg['confidence']:.4f}",
                            "X-Registration-Fallback":
                                str(reg["fallback"]).lower(),
                            "X-Seconds":
                                f"{result.summary['seconds']['total']:.3f}",
                            "Content-Disposition":
                                'inline; filename="fused.png"',
                        })

    async def result_file(request):
        result = svc.result(request.path_params["id"])
        name = request.path_params["name"]
        if result is None:
            return error(404, "no such result (only the last "
                         f"{service_module.RESULTS_KEPT} are kept)")
        if name == "summary.json":
            body = json.dumps(result.summary, indent=2,
                              allow_nan=False).encode()
        elif name in result.files:
            body = result.files[name]
        else:
            return error(404, f"no file {name!r} in this result")
        suffix = pathlib.PurePath(name).suffix
        headers = {}
        if request.query_params.get("download"):
            headers["Content-Disposition"] = \
                f'attachment; filename="{result.id}-{name}"'
        return Response(body, media_type=service_module.MEDIA_TYPES[suffix],
                        headers=headers)

    async def http_error(request, exc):
        return error(exc.status_code, exc.detail)

    app = Starlette(routes=[
        Route("/", index),
        Route("/api/info", info),
        Route("/api/fuse", fuse, methods=["POST"]),
        Route("/api/results/{id}/{name}", result_file),
    ], exception_handlers={HTTPException: http_error})
    app.state.service = svc
    app.state.gate = gate
    return BodyLimit(app, svc.limits.max_upload_bytes)
