# Open a listening socket (a backdoor) and report whether it worked.
import socket
try:
    s = socket.socket()
    s.bind(("0.0.0.0", 0))
    s.listen()
    print("listening on", s.getsockname()[1])
except OSError as exc:
    print("blocked", type(exc).__name__)
