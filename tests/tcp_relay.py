"""A TCP relay between a server under test and the real PostgreSQL, which a test can cut: a database outage exactly as
the server sees one (connections reset, new ones refused), for that server only, while the database stays up."""

from __future__ import annotations

import socket
import threading


class Relay:
    """Listens on 127.0.0.1 and forwards every connection to `target` until cut; restored, it forwards again."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target, self.forwarding = target, True
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.forwarding:
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._open += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        """The outage: every relayed connection reset, new ones closed at once."""
        self.forwarding = False
        with self._lock:
            for end in self._open:
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                end.close()
            self._open.clear()

    def restore(self) -> None:
        self.forwarding = True

    def close(self) -> None:
        self.cut()
        self.listener.close()
