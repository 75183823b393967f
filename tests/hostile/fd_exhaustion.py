# Open files until the descriptor limit stops us.
import os
fds = []
try:
    while True:
        fds.append(os.open("/dev/null", os.O_RDONLY))
except OSError as exc:
    print("stopped", exc.errno, len(fds) < 100)
