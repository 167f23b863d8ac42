"""The upstream HTTP client: sync-looking calls from handlers (http_client.py) over a lean pool
of trio connections (upstream.py) speaking a sans-IO wire format (protocol.py)."""
