"""``cnn-tracker serve``: a trained model behind an HTTP API and a draw-a-digit page.

``model`` turns a SOURCE (a checkpoint file, a W&B artifact reference, or a sweep / project whose
best run is looked up like ``best``) into a :class:`~cnn_tracker.serve.model.ServedModel`;
``images`` decodes uploaded bytes with ``predict``'s own preprocessing, refusing bad input with
an HTTP status; ``batcher`` runs concurrent requests as one batch on the device; ``app`` is the
FastAPI application (``/v1/predict``, ``/v1/model``, ``/healthz``, ``/readyz``, the page at
``/``) and ``server`` binds the socket and runs uvicorn. Needs the ``serve`` extra.
"""
