"""HTTP/1.1 message framing behind one small sans-IO interface (``ServerParser``), with two
implementations: h11 (the reference, pure Python) and httptools (llhttp, C, optional).

The HTTP layer (http/) drives a parser and never imports either library; everything above
framing (limits, deadlines, the app, streaming, shutdown) is shared by both.
"""
