"""Serving and generating at scale on Ray: ``fastgen serve`` (Ray Serve: replicas, dynamic batching, HTTP) and
``fastgen sample --ray`` (Ray Data: shards of a large sample over an actor pool).

fastgen grows no server or scheduler of its own: Ray runs the replicas, queues and batches the requests, restarts
what dies and spreads work over a cluster. What fastgen adds is the model behind it, and per-row seeds
(:func:`fastgen.api.sample_rows`), which make every image the same whatever it was batched with. Ray is an extra
(``pip install 'fastgen[serve]'``); :mod:`fastgen.serve.protocol` and :class:`Client` need only the standard library
and NumPy.
"""

from fastgen.serve.client import Client
from fastgen.serve.protocol import GenerateRequest, RequestError, parse_generate

__all__ = ["Client", "GenerateRequest", "RequestError", "parse_generate"]
