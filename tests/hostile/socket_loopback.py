# Connect to a server the test runs on 127.0.0.1 (only loopback is ever tried).
import json, socket, sys
ctx = json.load(sys.stdin)
try:
    socket.create_connection(("127.0.0.1", ctx["port"]), timeout=1).close()
    print("connected")
except OSError as exc:
    print("blocked", type(exc).__name__)
