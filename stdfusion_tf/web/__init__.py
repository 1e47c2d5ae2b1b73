"""The local web page: upload an infrared and a visible image, see them
registered and fused.

* ``service``: the work, without any web framework -- decoding uploads
  within limits, registration (``stdfusion_tf.registration``), fusion with
  an STDFusionNet preset or DIFN (models loaded once, lazily), the pictures
  (checkerboard and colour overlays, the flow picture) and the PNG files;
* ``app``: the Starlette application (the page, ``POST /api/fuse``, results
  for download), one fusion at a time, upload limits;
* ``page.html``: the page itself (plain HTML and JavaScript).

``stdfusion-web`` (``stdfusion_tf/commands/web.py``) starts it with uvicorn.
"""
