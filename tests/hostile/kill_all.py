# kill(-1) signals every process the caller may signal. Only run when contained.
import os, signal
try:
    os.kill(-1, signal.SIGKILL)
except OSError as exc:
    print("kill failed:", exc.errno)
print("alive")
