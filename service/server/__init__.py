"""The HTTP server layer under the app: uvicorn's httptools protocol with limits on request heads.

uvicorn's parser has no setting for the size of a request's head, the number of its header
fields, or the time a client may take to send them (uvicorn issue #157); :mod:`.protocol`
adds all three, and ``xent serve`` hands its factory to uvicorn as ``http=``.
"""

from service.server.protocol import HeaderLimitedProtocol, HeaderLimits, http_protocol

__all__ = ["HeaderLimitedProtocol", "HeaderLimits", "http_protocol"]
