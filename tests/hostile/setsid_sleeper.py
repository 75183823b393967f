# A child escapes the process group with setsid and burns CPU after the main program exits.
import os
if os.fork() == 0:
    os.setsid()
    while True:
        pass
print("parent done")
