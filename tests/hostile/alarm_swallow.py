# The classic harness timeout is SIGALRM raising an exception; swallow it forever.
import signal

def handler(signum, frame):
    raise TimeoutError("alarm")

signal.signal(signal.SIGALRM, handler)
signal.alarm(1)
while True:
    try:
        while True:
            pass
    except BaseException:
        signal.alarm(1)
