"""The HTTP protocol the server runs: uvicorn's httptools protocol, answering a request it cannot parse (a URL past
httptools' limits, a malformed request line) with an OGC exception body instead of uvicorn's plain text."""

from __future__ import annotations

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_STATUS_LINE = b"HTTP/1.1 400 Bad Request\r\n"


class OgcHttpToolsProtocol(HttpToolsProtocol):
    """httptools with OGC API error bodies for unparsable requests."""

    def send_400_response(self, msg: str) -> None:
        body = orjson.dumps({"code": "InvalidRequest", "type": "InvalidRequest",
                             "description": f"the request cannot be read: {msg.rstrip('.')} (a URL longer than the "
                                            "server accepts, or a malformed request line or header)"})
        head = [_STATUS_LINE]
        for name, value in self.server_state.default_headers:
            head.extend([name, b": ", value, b"\r\n"])
        head.append(b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body))
        self.transport.write(b"".join(head) + body)
        self.transport.close()
