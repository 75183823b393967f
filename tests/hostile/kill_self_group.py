# kill(0) signals our own process group: only the job's processes may be hit.
import os, signal
try:
    os.kill(0, signal.SIGTERM)
except OSError as exc:
    print("failed", exc.errno)
print("after")
