# Buffered output is lost with os._exit; the exit status says success.
import os
print("you will not see this")
os._exit(0)
