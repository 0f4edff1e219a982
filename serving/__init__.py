"""Online scoring: the model bundle and the scoring code of the batch pipeline, over HTTP.

``aeflow api --config FILE`` serves the champion (or a pinned version) of the config's dataset:

- :mod:`serving.rules` -- the input contract: which columns, types, levels and nulls a request may
  carry, checked into the Arrow record batch that batch scoring would have read;
- :mod:`serving.codecs` -- request and response bodies: JSON records, Arrow IPC, Parquet;
- :mod:`serving.operations` -- score, encode, explain, reconstruct, decode on one served model;
- :mod:`serving.model_holder` -- the served model and its atomic hot swap on promotion/rollback;
- :mod:`serving.guards` -- bearer token, body and row limits, request logs without row values;
- :mod:`serving.app` -- the FastAPI application that wires them.

Dependencies point serving -> tasks -> models, like flows.
"""
