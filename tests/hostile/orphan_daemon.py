# Double-fork a daemon in its own session that keeps stdout/stderr open and outlives the job.
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(60)
        os.write(1, b"daemon still here\n")
    os._exit(0)
print("parent done")
