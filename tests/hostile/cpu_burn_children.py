# Several processes spin; the job is killed at the wall timeout.
import os
for _ in range(4):
    if os.fork() == 0:
        break
while True:
    pass
